#include "daemon/surfaces/imds.hpp"

#include "common/time_format.hpp"

namespace rad::surfaces {
namespace {

using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr std::string_view token_path = "/latest/api/token";
constexpr std::string_view list_path = "/latest/meta-data/iam/security-credentials";
constexpr std::string_view ttl_header = "X-aws-ec2-metadata-token-ttl-seconds";
constexpr std::string_view token_header = "X-aws-ec2-metadata-token";

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
        if (value > kMaxTokenTtlSeconds) {
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

SurfaceResponse imds_credentials(const ServedCredentials& served) {
    Error why;
    const signer::Credentials* c = credentials_or_reason(served, why);
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

}  // namespace

SurfaceResponse handle_imds(const SurfaceRequest& request,
                            const ImdsSettings& settings,
                            const ImdsTokens& tokens,
                            steady_clock::time_point now,
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
            response = imds_credentials(served);
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

}  // namespace rad::surfaces
