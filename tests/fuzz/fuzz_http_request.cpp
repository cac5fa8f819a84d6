// Fuzz target: the local HTTP front as the agent runs it, minus the socket. Bytes go through Beast's request
// parser with the server's limits, become a SurfaceRequest by the server's own conversion, pass
// guard_request, and are answered through the servers' own routes (router.hpp: the guard, then the IMDS,
// container-credentials and health handlers) at a fixed clock with a fixed token key. Besides "no crash, no
// leak, no UB", every answer is checked against the promises of imds.hpp, ecs.hpp and request_guard.hpp; the
// main one: the secret access key leaves only in a 200 to a request that passed the guard and proved it holds
// the credential (a valid IMDS token, or the ECS token in exactly one Authorization header).
//
// "@TOKEN@" anywhere in the input is replaced by a valid IMDS token for the fixed key and clock, so that
// seeds (and the mutations of them) can reach the credentials route; the ECS token is the literal kEcsToken.

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/secret.hpp"
#include "daemon/surfaces/ecs.hpp"
#include "daemon/surfaces/health.hpp"
#include "daemon/surfaces/http_request_conversion.hpp"
#include "daemon/surfaces/http_types.hpp"
#include "daemon/surfaces/imds.hpp"
#include "daemon/surfaces/request_guard.hpp"
#include "daemon/surfaces/router.hpp"
#include "pki/hmac.hpp"
#include "signer/credentials.hpp"

namespace {

namespace http = boost::beast::http;
using namespace std::chrono_literals;
using rad::surfaces::SurfaceRequest;
using rad::surfaces::SurfaceResponse;

constexpr std::string_view kTokenMarker = "@TOKEN@";
constexpr std::string_view kEcsToken = "ecs-fuzz-token-0123456789abcdef";
constexpr std::string_view kSecretKey = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYFUZZSECRETKEY";
constexpr std::string_view kSessionToken = "IQoJb3JpZ2luX2VjFUZZSESSIONTOKEN//////////wEaCXVzLWVhc3QtMSJG";
// The same limits as HttpServerLimits' defaults, which the agent uses.
constexpr std::uint32_t kMaxHeaderBytes = 8 * 1024;
constexpr std::uint64_t kMaxBodyBytes = 1024;

const std::chrono::steady_clock::time_point kNow = std::chrono::steady_clock::time_point{} + 100000h;
const std::chrono::system_clock::time_point kWallNow = std::chrono::system_clock::time_point{} + 1795394099s;

[[noreturn]] void fail(const char* what, const SurfaceResponse& response) {
    std::fprintf(stderr, "invariant broken: %s (status %d)\n", what, response.status);
    std::abort();
}

struct Fixture {
    std::shared_ptr<const rad::pki::HmacKey> key = std::make_shared<const rad::pki::HmacKey>(
        rad::pki::HmacKey::from_bytes(std::vector<std::uint8_t>(32, 0x5a)));
    rad::surfaces::ImdsTokens tokens{[k = key](std::string_view message) { return k->sign(message); }};
    rad::signer::Credentials credentials;
    rad::Secret ecs_token{kEcsToken};
    std::string valid_token;

    Fixture() {
        credentials.access_key_id = "ASIAFUZZEXAMPLE00001";
        credentials.secret_access_key = rad::Secret(kSecretKey);
        credentials.session_token = rad::Secret(kSessionToken);
        credentials.expiration = kWallNow + 1h;
        valid_token = tokens.mint(kNow, 21600s);
    }
};

const Fixture& fixture() {
    static const Fixture f;
    return f;
}

// parse runs Beast's parser over the whole input as the server's async_read would, or returns false where
// the server answers 4xx itself or closes the connection.
bool parse(std::string_view wire, SurfaceRequest& out) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(kMaxBodyBytes);
    parser.eager(true);
    boost::beast::error_code ec;
    std::size_t used = 0;
    while (!parser.is_done() && used < wire.size()) {
        const std::size_t n = parser.put(boost::asio::buffer(wire.data() + used, wire.size() - used), ec);
        if (ec == http::error::need_more) {
            ec = {};
            if (n == 0) {
                break;
            }
        } else if (ec) {
            return false;
        }
        used += n;
    }
    if (!parser.is_done()) {
        if (!parser.got_some()) {
            return false;  // the peer sent nothing: the server just closes
        }
        parser.put_eof(ec);
        if (ec || !parser.is_done()) {
            return false;
        }
    }
    out = rad::surfaces::to_surface_request(parser.get());
    return true;
}

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

void check_common(const SurfaceResponse& response) {
    if (response.status < 200 || response.status > 599) {
        fail("status outside 200..599", response);
    }
    for (const auto& [name, value] : response.headers) {
        if (name.empty() || value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
            fail("a response header could split the response", response);
        }
    }
}

bool leaks_credentials(const SurfaceResponse& response) {
    const std::string_view body = response.body.reveal();
    return contains(body, kSecretKey) || contains(body, kSessionToken);
}

void check_refusal(const SurfaceResponse& refusal) {
    check_common(refusal);
    if (refusal.status != 400 && refusal.status != 403 && refusal.status != 431) {
        fail("guard_request refused with a status other than 400, 403 or 431", refusal);
    }
    if (leaks_credentials(refusal)) {
        fail("a refusal carries credentials", refusal);
    }
}

void check_imds(const SurfaceRequest& request,
                const rad::surfaces::ImdsSettings& settings,
                const rad::surfaces::ServedCredentials& served) {
    const Fixture& f = fixture();
    const SurfaceResponse response = rad::surfaces::route_imds(request, settings, f.tokens, kNow, served);
    check_common(response);
    if (leaks_credentials(response)) {
        const std::string* token = request.header("X-aws-ec2-metadata-token");
        const std::size_t token_headers = request.count("X-aws-ec2-metadata-token");
        const bool token_ok = token != nullptr && token_headers == 1 && f.tokens.remaining(*token, kNow);
        const bool v1_ok = settings.allow_imdsv1 && token_headers == 0;
        if (response.status != 200 || !(token_ok || v1_ok) || request.method != "GET") {
            fail("IMDS handed out credentials without a valid token", response);
        }
        if (served.credentials == nullptr) {
            fail("IMDS handed out credentials it was not given", response);
        }
    }
    if (request.method == "PUT" && response.status == 200) {
        const std::string_view minted = response.body.reveal();
        if (!f.tokens.remaining(minted, kNow) || minted.find_first_of("\r\n") != std::string_view::npos) {
            fail("IMDS minted a token that does not verify", response);
        }
    }
    if (response.status == 200 && contains(response.body.reveal(), "\"Code\"") &&
        !contains(response.body.reveal(), "\"Code\":\"Success\"") &&
        !contains(response.body.reveal(), "\"Code\" : \"Success\"")) {
        fail("IMDS answered 200 with an error document", response);
    }
}

void check_ecs(const SurfaceRequest& request, const rad::surfaces::ServedCredentials& served) {
    const Fixture& f = fixture();
    const rad::surfaces::EcsSettings settings{"/credentials/web", &f.ecs_token, "123456789012"};
    const rad::surfaces::EcsLookup lookup =
        [&](std::string_view path) -> std::optional<rad::surfaces::EcsProfile> {
        if (path != settings.path) {
            return std::nullopt;
        }
        return rad::surfaces::EcsProfile{settings, served};
    };
    const SurfaceResponse response = rad::surfaces::route_ecs(request, lookup);
    check_common(response);
    const std::string* content_type = response.header("Content-Type");
    if (content_type == nullptr || *content_type != "application/json") {
        fail("ECS answered without Content-Type: application/json", response);
    }
    if (leaks_credentials(response)) {
        const std::string* authorization = request.header("Authorization");
        if (response.status != 200 || request.count("Authorization") != 1 || authorization == nullptr ||
            *authorization != kEcsToken || request.target != settings.path || request.method != "GET") {
            fail("ECS handed out credentials without the token", response);
        }
    }
}

void check_health(const SurfaceRequest& request) {
    rad::policy::AgentSnapshot snapshot;
    rad::policy::ProfileSnapshot profile;
    profile.name = "web";
    profile.state = "fresh";
    profile.servable = true;
    profile.credentials_seconds_left = 1800.0;
    profile.refreshes["ok"] = 3;
    profile.create_session_seconds.observe(0.2);
    snapshot.profiles.push_back(std::move(profile));
    snapshot.requests[{"imds", 200}] = 7;
    const SurfaceResponse response = rad::surfaces::route_health(request, snapshot);
    check_common(response);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const Fixture& f = fixture();
    std::string wire(reinterpret_cast<const char*>(data), size);
    for (std::size_t at = wire.find(kTokenMarker); at != std::string::npos;
         at = wire.find(kTokenMarker, at + f.valid_token.size())) {
        wire.replace(at, kTokenMarker.size(), f.valid_token);
    }

    SurfaceRequest request;
    if (!parse(wire, request)) {
        return 0;
    }
    if (auto refusal = rad::surfaces::guard_request(request)) {
        check_refusal(*refusal);
        return 0;
    }
    if (request.target.empty() || request.target.front() != '/') {
        std::fprintf(stderr, "invariant broken: guard_request let a target not in origin form through\n");
        std::abort();
    }
    const std::string* content_length = request.header("Content-Length");
    if (request.count("Host") != 1 || request.header("Origin") != nullptr ||
        request.header("X-Forwarded-For") != nullptr || request.header("Transfer-Encoding") != nullptr ||
        (content_length != nullptr && *content_length != "0") ||
        request.headers.size() > rad::surfaces::kMaxRequestHeaderFields) {
        std::fprintf(
            stderr,
            "invariant broken: guard_request let a proxy, browser, body or Host-less request through\n");
        std::abort();
    }

    const rad::surfaces::ServedCredentials served{&f.credentials, {}, kWallNow - 10min};
    const rad::surfaces::ServedCredentials none{
        nullptr, rad::make_error(rad::Errc::upstream_throttled, "no credentials yet"), {}};
    // The role name and the v1 switch vary with the input so both settings are explored.
    const rad::surfaces::ImdsSettings settings{"web-role", (size % 2) == 1};
    check_imds(request, settings, served);
    check_imds(request, settings, none);
    check_ecs(request, served);
    check_ecs(request, none);
    check_health(request);
    return 0;
}
