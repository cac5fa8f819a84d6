#include "daemon/surfaces/ecs.hpp"

#include "common/time_format.hpp"

namespace rad::surfaces {
namespace {

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

SurfaceResponse handle_ecs(const SurfaceRequest& request,
                           const EcsSettings& settings,
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
    const signer::Credentials* c = credentials_or_reason(served, why);
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

}  // namespace rad::surfaces
