#include "daemon/surfaces.hpp"

#include <string.h>

#include <algorithm>
#include <initializer_list>

#include "common/encoding.hpp"
#include "common/json_writer.hpp"
#include "common/time_format.hpp"

namespace rad::daemon {

namespace {

using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr std::string_view token_path = "/latest/api/token";
constexpr std::string_view list_path = "/latest/meta-data/iam/security-credentials";
constexpr std::string_view ttl_header = "X-aws-ec2-metadata-token-ttl-seconds";
constexpr std::string_view token_header = "X-aws-ec2-metadata-token";
constexpr int max_ttl = 21600;

// ---- tokens ---------------------------------------------------------------------------------------------

// A token is base64url(expiry || MAC(domain || expiry)) without padding: 8 bytes of big-endian expiry in
// milliseconds of the steady clock, then 32 bytes of HMAC-SHA256. 40 bytes encode to exactly 54 characters.
constexpr std::size_t expiry_size = 8;
constexpr std::size_t mac_size = 32;
constexpr std::size_t token_bytes = expiry_size + mac_size;
constexpr std::size_t token_chars = 54;
// The domain tag keeps a MAC made with this key for anything else from ever passing as a token.
constexpr std::string_view token_domain = "rolesanywhere-agent imds token v1\n";

std::string mac_input(std::span<const std::uint8_t, expiry_size> expiry) {
    std::string input(token_domain);
    input.append(reinterpret_cast<const char*>(expiry.data()), expiry.size());
    return input;
}

// base64url without padding, from the standard alphabet (RFC 4648 §5).
std::string base64url_encode(std::span<const std::uint8_t> bytes) {
    std::string text = base64_encode(bytes);
    while (!text.empty() && text.back() == '=') {
        text.pop_back();
    }
    std::replace(text.begin(), text.end(), '+', '-');
    std::replace(text.begin(), text.end(), '/', '_');
    return text;
}

// decode_token decodes the 54 characters in place, without working copies of the token on the heap.
std::optional<std::array<std::uint8_t, token_bytes>> decode_token(std::string_view token) {
    if (token.size() != token_chars) {
        return std::nullopt;
    }
    std::array<std::uint8_t, token_bytes> raw{};
    std::uint32_t bits = 0;
    int pending = 0;
    std::size_t out = 0;
    for (const char c : token) {
        const int value = base64_digit(c, /*url=*/true);
        if (value < 0) {
            explicit_bzero(raw.data(), raw.size());
            return std::nullopt;
        }
        bits = (bits << 6) | static_cast<std::uint32_t>(value);
        pending += 6;
        if (pending >= 8) {
            pending -= 8;
            raw[out++] = static_cast<std::uint8_t>(bits >> pending);
            bits &= (1u << pending) - 1;
        }
    }
    // 54 characters carry 324 bits: 40 bytes and 4 unused bits in the last character. Only the canonical
    // spelling (those bits zero) is a token, so one token has exactly one textual form.
    if (out != token_bytes || bits != 0) {
        explicit_bzero(raw.data(), raw.size());
        return std::nullopt;
    }
    return raw;
}

// ---- JSON -----------------------------------------------------------------------------------------------

using JsonField = std::pair<std::string_view, std::string_view>;

// json_object renders string fields in order, either compact or in IMDS's pretty style ("Name" : value, two
// spaces of indent, no trailing newline). The buffer is reserved for the worst case first: it never
// reallocates, so no copy of a secret is left behind in freed memory, and it moves into the Secret whole.
// nullopt when a value is not UTF-8 and so cannot be written exactly (common/json_writer.hpp).
std::optional<Secret> json_object(std::initializer_list<JsonField> fields, bool pretty) {
    std::size_t bound = 8;
    for (const auto& [name, value] : fields) {
        bound += json_string_bound(name.size()) + json_string_bound(value.size()) + 8;
    }
    Secret document;
    std::string& out = document.reveal_mutable();
    out.reserve(bound);
    out.push_back('{');
    bool first = true;
    for (const auto& [name, value] : fields) {
        if (!first) {
            out.push_back(',');
        }
        first = false;
        if (pretty) {
            out.append("\n  ");
        }
        if (!append_json_string(out, name)) {
            return std::nullopt;
        }
        out.append(pretty ? " : " : ":");
        if (!append_json_string(out, value)) {
            return std::nullopt;
        }
    }
    if (pretty) {
        out.push_back('\n');
    }
    out.push_back('}');
    return document;
}

// ---- credentials ----------------------------------------------------------------------------------------

// servable returns the credentials a surface may hand out now, or the reason it may not. Besides "none
// cached", keys that are incomplete or already expired are refused here too: SDKs stretch expired IMDS
// credentials ("static stability") and some never look at Code, so only complete, live keys leave.
const signer::Credentials* servable(const ServedCredentials& served,
                                    std::chrono::system_clock::time_point wall_now,
                                    Error& why) {
    const signer::Credentials* c = served.credentials;
    if (c == nullptr) {
        why = served.error;
        if (why.message.empty()) {
            why = make_error(Errc::internal, "no credentials are available");
        }
        return nullptr;
    }
    if (c->access_key_id.empty() || c->secret_access_key.empty() || c->session_token.empty()) {
        why = make_error(Errc::internal, "the cached credentials are incomplete");
        return nullptr;
    }
    if (c->expiration <= wall_now) {
        why = make_error(Errc::internal, "the cached credentials have expired");
        return nullptr;
    }
    return c;
}

// error_json is {"Code":…,"Message":…}. A message names files and flags whose bytes are not ours to choose,
// and is no secret: what is not UTF-8 in it becomes U+FFFD, so that the client still reads what failed.
Secret error_json(std::string_view code, std::string_view message) {
    const std::string code_text = replace_invalid_utf8(code);
    const std::string message_text = replace_invalid_utf8(message);
    auto document = json_object({{"Code", code_text}, {"Message", message_text}}, false);
    return document ? std::move(*document) : Secret();  // never empty: both values are UTF-8 now
}

// kNotUtf8 is the error of credentials that cannot be written exactly (signer::Credentials says they always
// can).
constexpr std::string_view kNotUtf8 = "the cached credentials are not UTF-8 text";

// ---- IMDS -----------------------------------------------------------------------------------------------

SurfaceResponse imds_response(int status, Secret body) {
    SurfaceResponse response;
    response.status = status;
    // Real IMDS labels every document text/plain, the JSON ones included; old tooling looks for "EC2" in
    // Server to detect it.
    response.set_header("Content-Type", "text/plain");
    response.set_header("Server", "EC2ws");
    response.body = std::move(body);
    return response;
}

// imds_json_error is the one IMDS answer whose body is JSON of our own (IMDS itself has no JSON errors): it
// says so, while the documents IMDS defines keep IMDS's text/plain.
SurfaceResponse imds_json_error(int status, std::string_view code, std::string_view message) {
    SurfaceResponse response = imds_response(status, error_json(code, message));
    response.set_header("Content-Type", "application/json");
    return response;
}

SurfaceResponse imds_text(int status, std::string_view text) {
    return imds_response(status, Secret(text));
}

SurfaceResponse imds_not_allowed(std::string_view allow) {
    auto response = imds_text(405, "405 - Method Not Allowed");
    response.set_header("Allow", std::string(allow));
    return response;
}

// parse_ttl accepts only plain decimal digits with a value of 1..21600: no sign, no blanks, no fraction.
std::optional<int> parse_ttl(std::string_view text) noexcept {
    if (text.empty()) {
        return std::nullopt;
    }
    int value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        value = value * 10 + (c - '0');
        if (value > max_ttl) {
            return std::nullopt;
        }
    }
    if (value < 1) {
        return std::nullopt;
    }
    return value;
}

enum class ImdsRoute { token, role_list, credentials, not_found };

ImdsRoute imds_route(std::string_view path, std::string_view role_name) {
    if (path == token_path) {
        return ImdsRoute::token;
    }
    if (!path.starts_with(list_path)) {
        return ImdsRoute::not_found;
    }
    std::string_view rest = path.substr(list_path.size());
    if (rest.empty() || rest == "/") {
        return ImdsRoute::role_list;
    }
    if (rest.front() != '/') {
        return ImdsRoute::not_found;  // e.g. security-credentials-extended
    }
    rest.remove_prefix(1);
    if (rest.ends_with('/')) {
        rest.remove_suffix(1);
    }
    return !role_name.empty() && rest == role_name ? ImdsRoute::credentials : ImdsRoute::not_found;
}

SurfaceResponse imds_credentials(const ServedCredentials& served,
                                 std::chrono::system_clock::time_point wall_now) {
    Error why;
    const signer::Credentials* c = servable(served, wall_now, why);
    if (c == nullptr) {
        return imds_json_error(503, errc_name(why.code), why.message);
    }
    const std::string last_updated = format_iso8601(served.last_updated);
    const std::string expiration = format_iso8601(c->expiration);
    auto document = json_object({{"Code", "Success"},
                                 {"LastUpdated", last_updated},
                                 {"Type", "AWS-HMAC"},
                                 {"AccessKeyId", c->access_key_id},
                                 {"SecretAccessKey", c->secret_access_key.reveal()},
                                 {"Token", c->session_token.reveal()},
                                 {"Expiration", expiration}},
                                true);
    if (!document) {
        return imds_json_error(503, errc_name(Errc::internal), kNotUtf8);
    }
    return imds_response(200, std::move(*document));
}

// ---- ECS ------------------------------------------------------------------------------------------------

SurfaceResponse ecs_response(int status, Secret body) {
    SurfaceResponse response;
    response.status = status;
    // Go's endpointcreds parses an error document only under exactly this Content-Type.
    response.set_header("Content-Type", "application/json");
    response.body = std::move(body);
    return response;
}

SurfaceResponse ecs_error(int status, std::string_view code, std::string_view message) {
    return ecs_response(status, error_json(code, message));
}

}  // namespace

// ---- public ---------------------------------------------------------------------------------------------

std::string ImdsTokens::mint(steady_clock::time_point now, seconds ttl) const {
    // The handler validates the TTL; the clamp keeps a caller's mistake from minting an eternal token.
    ttl = std::clamp(ttl, seconds(1), seconds(max_ttl));
    const auto expiry = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch() + ttl);
    auto bits = static_cast<std::uint64_t>(expiry.count());
    std::array<std::uint8_t, token_bytes> raw{};
    for (std::size_t i = 0; i < expiry_size; ++i) {
        raw[expiry_size - 1 - i] = static_cast<std::uint8_t>(bits & 0xFF);
        bits >>= 8;
    }
    const auto tag = mac_(mac_input(std::span<const std::uint8_t, expiry_size>(raw.data(), expiry_size)));
    std::copy(tag.begin(), tag.end(), raw.begin() + expiry_size);
    return base64url_encode(raw);
}

std::optional<seconds> ImdsTokens::remaining(std::string_view token, steady_clock::time_point now) const {
    const auto raw = decode_token(token);
    if (!raw) {
        return std::nullopt;
    }
    const auto expected =
        mac_(mac_input(std::span<const std::uint8_t, expiry_size>(raw->data(), expiry_size)));
    const std::string_view given_mac(reinterpret_cast<const char*>(raw->data() + expiry_size), mac_size);
    const std::string_view expected_mac(reinterpret_cast<const char*>(expected.data()), expected.size());
    if (!constant_time_equals(given_mac, expected_mac)) {
        return std::nullopt;
    }
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < expiry_size; ++i) {
        bits = (bits << 8) | (*raw)[i];
    }
    const std::chrono::milliseconds expiry(static_cast<std::int64_t>(bits));
    const auto left = expiry - std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
    if (left <= std::chrono::milliseconds(0)) {
        return std::nullopt;
    }
    // Rounded up: a token that is still valid never reports 0 seconds left.
    return std::chrono::ceil<seconds>(left);
}

bool constant_time_equals(std::string_view a, std::string_view b) noexcept {
    // Lengths are not secret (every token of a kind has the same length); the bytes are. Every byte of the
    // longer input is visited and differences are OR-ed, so the time does not depend on where they are.
    const std::size_t n = std::max(a.size(), b.size());
    volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (std::size_t i = 0; i < n; ++i) {
        const auto x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        const auto y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff = static_cast<unsigned char>(diff | (x ^ y));
    }
    return diff == 0;
}

SurfaceResponse handle_imds(const SurfaceRequest& request,
                            const ImdsSettings& settings,
                            const ImdsTokens& tokens,
                            steady_clock::time_point now,
                            std::chrono::system_clock::time_point wall_now,
                            const ServedCredentials& served) {
    const std::string_view target = request.target;
    const std::string_view path = target.substr(0, target.find('?'));
    const ImdsRoute route = imds_route(path, settings.role_name);

    if (route == ImdsRoute::token) {
        if (request.method == "OPTIONS") {
            auto response = imds_text(200, "");
            response.set_header("Allow", "OPTIONS, PUT");
            return response;
        }
        if (request.method != "PUT") {
            return imds_not_allowed("OPTIONS, PUT");
        }
        const std::string* ttl_text = request.header(ttl_header);
        const auto ttl =
            ttl_text != nullptr && request.count(ttl_header) == 1 ? parse_ttl(*ttl_text) : std::nullopt;
        if (!ttl) {
            // Every SDK treats 400 here as final; the reason does not echo the value sent.
            return imds_text(400,
                             "400 - Bad Request: X-aws-ec2-metadata-token-ttl-seconds must be 1 to 21600");
        }
        auto response = imds_response(200, Secret(tokens.mint(now, seconds(*ttl))));
        response.set_header(std::string(ttl_header), std::to_string(*ttl));
        return response;
    }

    if (request.method != "GET") {
        if (route == ImdsRoute::not_found) {
            return imds_text(404, "404 - Not Found");
        }
        return imds_not_allowed("GET");
    }

    // Tokens are checked before the route, as IMDS does: without a valid token even an unknown path is 401.
    std::optional<seconds> left;
    const std::size_t token_count = request.count(token_header);
    if (token_count > 1) {
        return imds_text(401, "401 - Unauthorized");
    }
    if (token_count == 1) {
        left = tokens.remaining(*request.header(token_header), now);
        if (!left) {
            return imds_text(401, "401 - Unauthorized");
        }
    } else if (!settings.allow_imdsv1) {
        // A refused IMDSv1 request must be 401 (never 403/404): that is what makes SDKs fetch a token.
        return imds_text(401, "401 - Unauthorized");
    }

    SurfaceResponse response;
    switch (route) {
        case ImdsRoute::role_list:
            response = imds_text(200, settings.role_name);  // no newline: aws-c-auth uses the raw body
            break;
        case ImdsRoute::credentials:
            response = imds_credentials(served, wall_now);
            break;
        default:
            response = imds_text(404, "404 - Not Found");
            break;
    }
    if (left) {
        response.set_header(std::string(ttl_header), std::to_string(left->count()));
    }
    return response;
}

SurfaceResponse handle_ecs(const SurfaceRequest& request,
                           const EcsSettings& settings,
                           std::chrono::system_clock::time_point wall_now,
                           const ServedCredentials& served) {
    // A token in the query ends up in access logs and can be replayed through SSRF; the token goes in the
    // Authorization header only, so any query at all is refused before anything is compared.
    if (request.target.find('?') != std::string::npos) {
        return ecs_error(400, "InvalidRequest", "the credentials path takes no query string");
    }
    if (settings.path.empty() || request.target != settings.path) {
        return ecs_error(404, "NotFound", "no credentials are served at this path");
    }
    if (request.method != "GET") {
        auto response = ecs_error(405, "MethodNotAllowed", "only GET is allowed");
        response.set_header("Allow", "GET");
        return response;
    }
    // An empty expected token would match an empty Authorization header: refuse instead of serving.
    if (settings.token == nullptr || settings.token->empty()) {
        return ecs_error(500, errc_name(Errc::internal), "no authorization token is configured");
    }
    const std::size_t auth_count = request.count("Authorization");
    if (auth_count == 0) {
        return ecs_error(401, "Unauthorized", "the Authorization header is missing");
    }
    if (auth_count > 1) {
        return ecs_error(400, "InvalidRequest", "more than one Authorization header");
    }
    if (!constant_time_equals(*request.header("Authorization"), settings.token->reveal())) {
        return ecs_error(403, "AccessDenied", "the Authorization header does not match the token");
    }
    Error why;
    const signer::Credentials* c = servable(served, wall_now, why);
    if (c == nullptr) {
        return ecs_error(503, errc_name(why.code), why.message);
    }
    const std::string expiration = format_iso8601(c->expiration);
    auto document = settings.account_id.empty()
                        ? json_object({{"AccessKeyId", c->access_key_id},
                                       {"SecretAccessKey", c->secret_access_key.reveal()},
                                       {"Token", c->session_token.reveal()},
                                       {"Expiration", expiration}},
                                      false)
                        : json_object({{"AccessKeyId", c->access_key_id},
                                       {"SecretAccessKey", c->secret_access_key.reveal()},
                                       {"Token", c->session_token.reveal()},
                                       {"Expiration", expiration},
                                       {"AccountId", settings.account_id}},
                                      false);
    if (!document) {
        return ecs_error(503, errc_name(Errc::internal), kNotUtf8);
    }
    return ecs_response(200, std::move(*document));
}

}  // namespace rad::daemon
