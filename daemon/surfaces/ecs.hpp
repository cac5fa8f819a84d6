#pragma once
// The container-credentials surface (the ECS endpoint) as a pure request -> response function
// (docs/clients.md §3).

#include <chrono>
#include <string>

#include "common/secret.hpp"
#include "daemon/surfaces/http_types.hpp"
#include "daemon/surfaces/served_credentials.hpp"

namespace rad::surfaces {

struct EcsSettings {
    std::string path;               // e.g. "/credentials/web"; only this exact path (no query) is served
    const Secret* token = nullptr;  // the expected Authorization value (the token file's content)
    std::string account_id;         // from the role ARN; included as AccountId
};

// handle_ecs answers one request of the container-credentials surface (after guard_request): GET <path> with
// Authorization equal (constant time) to the token -> 200 {"AccessKeyId","SecretAccessKey","Token",
// "Expiration","AccountId"} (AccountId only when known); missing Authorization -> 401; wrong -> 403; two
// Authorization headers or any query string (a token in the query) -> 400; no token configured -> 500;
// other paths -> 404; other methods -> 405; no credentials (ServedCredentials says why) -> 503. Errors
// are JSON {"Code","Message"} with Content-Type exactly application/json.
SurfaceResponse handle_ecs(const SurfaceRequest& request,
                           const EcsSettings& settings,
                           const ServedCredentials& served);

}  // namespace rad::surfaces
