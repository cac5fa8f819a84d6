#pragma once
// The IMDSv2-compatible surface as a pure request -> response function (docs/clients.md §2). The caller (the
// HTTP server of the agent) passes in the time and what the profile's cache says right now; nothing here
// blocks or touches a socket.

#include <chrono>
#include <string>

#include "daemon/surfaces/http_types.hpp"
#include "daemon/surfaces/imds_tokens.hpp"
#include "daemon/surfaces/served_credentials.hpp"

namespace rad::surfaces {

struct ImdsSettings {
    std::string role_name;      // the last path segment of the role ARN
    bool allow_imdsv1 = false;  // token-less GETs allowed
};

// handle_imds answers one request of the IMDS surface (after guard_request). Routes:
//   PUT     /latest/api/token -> 200 token (TTL header 1..21600 echoed), 400 bad/missing/repeated TTL
//   OPTIONS /latest/api/token -> 200 with Allow: OPTIONS, PUT; other methods there -> 405 with that Allow
//   GET  /latest/meta-data/iam/security-credentials[/]      -> 200 role name (no newline)
//   GET  /latest/meta-data/iam/security-credentials/<role>[/] -> 200 credentials JSON; unknown role -> 404
//   anything else -> 404; wrong method on a known path -> 405 with Allow: GET
//   missing/invalid/expired/repeated token on a GET -> 401, checked before the route (unless allow_imdsv1
//   and no token header at all); a GET with a valid token carries the token's remaining TTL header.
// With no servable credentials (the agent's engine decided, ServedCredentials), the credentials GET answers
// 503 {"Code":<errc name>,"Message":...} as application/json — never "Success" without keys. Everything else
// is text/plain, as IMDS labels its documents (the credentials JSON included).
SurfaceResponse handle_imds(const SurfaceRequest& request,
                            const ImdsSettings& settings,
                            const ImdsTokens& tokens,
                            std::chrono::steady_clock::time_point now,
                            const ServedCredentials& served);

}  // namespace rad::surfaces
