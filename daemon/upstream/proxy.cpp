#include "daemon/upstream/proxy.hpp"

#include <algorithm>
#include <cctype>

#include "common/encoding.hpp"

namespace rad::upstream {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

bool all_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// percent_decode undoes %XX in proxy user info (curl accepts encoded ':' and '@' there).
std::string percent_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

// split_host_port splits "host", "host:port", "[v6]" or "[v6]:port".
bool split_host_port(std::string_view text, std::string& host, std::string& port) {
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) {
            return false;
        }
        host = std::string(text.substr(1, close - 1));
        const auto rest = text.substr(close + 1);
        if (rest.empty()) {
            port.clear();
            return !host.empty();
        }
        if (rest.front() != ':') {
            return false;
        }
        port = std::string(rest.substr(1));
        return !host.empty() && all_digits(port);
    }
    const auto colon = text.rfind(':');
    if (colon != std::string_view::npos && text.find(':') == colon) {
        host = std::string(text.substr(0, colon));
        port = std::string(text.substr(colon + 1));
        return !host.empty() && all_digits(port);
    }
    host = std::string(text);
    port.clear();
    return !host.empty();
}

std::optional<std::string> first_of(const EnvLookup& env, const char* a, const char* b) {
    // The lowercase form wins when both are set, as in curl.
    if (auto v = env(b); v && !v->empty()) {
        return v;
    }
    if (auto v = env(a); v && !v->empty()) {
        return v;
    }
    return std::nullopt;
}

}  // namespace

Result<ProxySettings> parse_proxy_url(std::string_view text, std::string_view what) {
    std::string_view rest = text;
    if (const auto scheme_end = rest.find("://"); scheme_end != std::string_view::npos) {
        const std::string scheme = lower(rest.substr(0, scheme_end));
        if (scheme != "http" && scheme != "https") {
            return make_error(Errc::usage, std::string(what) + ": proxy scheme \"" + scheme +
                                               "\" is not supported (use http://host:port)");
        }
        rest.remove_prefix(scheme_end + 3);
    }
    if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
        rest = rest.substr(0, slash);
    }
    ProxySettings settings;
    if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
        std::string user_info = percent_decode(rest.substr(0, at));
        std::vector<std::uint8_t> bytes(user_info.begin(), user_info.end());
        settings.authorization.emplace("Basic " + base64_encode(bytes));
        std::fill(bytes.begin(), bytes.end(), 0);
        wipe_string(user_info);
        rest.remove_prefix(at + 1);
    }
    if (!split_host_port(rest, settings.host, settings.port)) {
        return make_error(Errc::usage, std::string(what) + ": not a proxy URL (http://host:port)");
    }
    if (settings.port.empty()) {
        settings.port = "80";
    }
    const long port = std::stol(settings.port);
    if (port < 1 || port > 65535) {
        return make_error(Errc::usage,
                          std::string(what) + ": proxy port " + settings.port + " is out of range");
    }
    return settings;
}

bool no_proxy_matches(std::string_view no_proxy, std::string_view host_in, std::string_view port) {
    std::string host = lower(host_in);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    std::size_t pos = 0;
    while (pos <= no_proxy.size()) {
        auto end = no_proxy.find_first_of(", ", pos);
        if (end == std::string_view::npos) {
            end = no_proxy.size();
        }
        const std::string entry = lower(no_proxy.substr(pos, end - pos));
        pos = end + 1;
        if (entry.empty()) {
            continue;
        }
        if (entry == "*") {
            return true;
        }
        std::string entry_host, entry_port;
        if (!split_host_port(entry, entry_host, entry_port)) {
            continue;
        }
        if (!entry_port.empty() && entry_port != port) {
            continue;
        }
        if (!entry_host.empty() && entry_host.front() == '.') {
            entry_host.erase(0, 1);
        }
        if (host == entry_host) {
            return true;
        }
        if (host.size() > entry_host.size() && host.ends_with(entry_host) &&
            host[host.size() - entry_host.size() - 1] == '.') {
            return true;
        }
    }
    return false;
}

Result<std::optional<ProxySettings>> proxy_for(const signer::Url& target, const EnvLookup& env) {
    const bool https = target.scheme == "https";
    const char* upper_name = https ? "HTTPS_PROXY" : "HTTP_PROXY";
    const char* lower_name = https ? "https_proxy" : "http_proxy";
    auto value = first_of(env, upper_name, lower_name);
    if (!value) {
        return std::optional<ProxySettings>{};
    }
    if (auto exempt = first_of(env, "NO_PROXY", "no_proxy");
        exempt && no_proxy_matches(*exempt, target.host, target.port)) {
        return std::optional<ProxySettings>{};
    }
    auto settings = parse_proxy_url(*value, upper_name);
    if (!settings) {
        return settings.error();
    }
    return std::optional<ProxySettings>(std::move(*settings));
}

}  // namespace rad::upstream
