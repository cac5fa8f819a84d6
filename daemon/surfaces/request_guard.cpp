#include "daemon/surfaces/request_guard.hpp"

#include <array>

namespace rad::surfaces {

namespace {

// Headers a forwarding proxy adds. IMDSv2 issues no token to a request carrying X-Forwarded-For; refusing
// every method also keeps an open reverse proxy on this host from relaying GETs with a stolen token.
constexpr std::array<std::string_view, 5> proxy_headers = {"X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP",
                                                           "Forwarded", "Via"};

bool is_port(std::string_view s) noexcept {
    if (s.empty() || s.size() > 5) {
        return false;
    }
    unsigned value = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    return value <= 65535;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) noexcept {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

SurfaceResponse refusal(int status, std::string_view reason) {
    SurfaceResponse response;
    response.status = status;
    response.set_header("Content-Type", "text/plain");
    response.body = Secret(reason);
    return response;
}

}  // namespace

bool host_allowed(std::string_view host_header) noexcept {
    std::string_view host;
    std::string_view rest;
    if (!host_header.empty() && host_header.front() == '[') {
        const auto close = host_header.find(']');
        if (close == std::string_view::npos) {
            return false;
        }
        host = host_header.substr(0, close + 1);
        rest = host_header.substr(close + 1);
    } else {
        const auto colon = host_header.find(':');
        host = host_header.substr(0, colon);
        rest = colon == std::string_view::npos ? std::string_view() : host_header.substr(colon);
    }
    // Whatever follows the host must be a port: "127.0.0.1:80:81" or "[::1]x" are not an allowed host.
    if (!rest.empty() && (rest.front() != ':' || !is_port(rest.substr(1)))) {
        return false;
    }
    // Literal addresses are compared exactly: a DNS-rebinding page can only send the name it was loaded
    // from, and none of these is a name an attacker controls.
    return host == "127.0.0.1" || host == "169.254.169.254" || host == "169.254.170.2" || host == "[::1]" ||
           iequals(host, "localhost");
}

std::optional<SurfaceResponse> guard_request(const SurfaceRequest& request) {
    if (request.headers.size() > kMaxRequestHeaderFields) {
        return refusal(431, "too many header fields");
    }
    // No surface takes a body. A body on a GET, or chunked framing, is what request smuggling through a
    // front proxy looks like; refusing it (and closing, as the server does after a 400) leaves nothing
    // behind on the connection to be read as a second request.
    if (request.count("Transfer-Encoding") != 0) {
        return refusal(400, "request bodies are refused");
    }
    for (const auto& entry : request.headers) {
        if (iequals(entry.first, "Content-Length") && entry.second != "0") {
            return refusal(400, "request bodies are refused");
        }
    }
    for (std::string_view name : proxy_headers) {
        if (request.count(name) != 0) {
            return refusal(400, "requests through a proxy are refused");
        }
    }
    // Absolute-form ("http://host/...") and asterisk-form targets are what a proxy receives, never a client
    // talking to the agent directly.
    if (request.target.empty() || request.target.front() != '/') {
        return refusal(400, "the request target must be an absolute path");
    }
    const std::size_t hosts = request.count("Host");
    if (hosts != 1) {
        return refusal(400, hosts == 0 ? "the Host header is missing" : "more than one Host header");
    }
    for (const auto& entry : request.headers) {
        if (iequals(entry.first, "Origin") || starts_with_ci(entry.first, "Sec-Fetch-")) {
            return refusal(403, "requests from a browser are refused");
        }
    }
    const std::string* host = request.header("Host");
    if (host == nullptr || !host_allowed(*host)) {
        return refusal(403, "the Host header names a host this agent does not serve");
    }
    return std::nullopt;
}

}  // namespace rad::surfaces
