#pragma once
// The IMDSv2-compatible and container-credentials surfaces as pure request -> response functions
// (docs/clients.md §2, §3). The caller (the Beast server in agent.cpp) passes in the time and what
// the profile's cache says right now; nothing here blocks, allocates per token, or touches a socket.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "daemon/http_types.hpp"
#include "signer/credentials.hpp"

namespace rad::daemon {

// Mac computes HMAC-SHA256 of a message with the agent's per-start random key (pki::HmacKey in production).
using Mac = std::function<std::array<std::uint8_t, 32>(std::string_view message)>;

// ImdsTokens mints and checks IMDSv2 session tokens statelessly: a token carries its own expiry
// (milliseconds on the monotonic clock) and a MAC over it, so a flood of PUTs costs no memory and a restart
// voids every token. Tokens are URL-safe base64 without padding, never contain CR/LF, and are compared in
// constant time.
class ImdsTokens {
public:
    explicit ImdsTokens(Mac mac) : mac_(std::move(mac)) {}
    // mint returns a token valid for `ttl` seconds (clamped to 1..21600) from `now`.
    std::string mint(std::chrono::steady_clock::time_point now, std::chrono::seconds ttl) const;
    // remaining is the token's remaining lifetime at `now` (rounded up to whole seconds), or nullopt when it
    // is malformed, forged or expired.
    std::optional<std::chrono::seconds> remaining(std::string_view token,
                                                  std::chrono::steady_clock::time_point now) const;

private:
    Mac mac_;
};

// ServedCredentials is what a surface may hand out at this instant: the credentials, or the reason there are
// none (ProfileCache::current()).
struct ServedCredentials {
    const signer::Credentials* credentials = nullptr;  // null: see `error`
    Error error;
    std::chrono::system_clock::time_point last_updated;  // when these credentials were received (wall clock)
};

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
// With no servable credentials (none, incomplete, or expired at `wall_now`), the credentials GET answers
// 503 {"Code":<errc name>,"Message":...} as application/json — never "Success" without keys. Everything else
// is text/plain, as IMDS labels its documents (the credentials JSON included).
SurfaceResponse handle_imds(const SurfaceRequest& request,
                            const ImdsSettings& settings,
                            const ImdsTokens& tokens,
                            std::chrono::steady_clock::time_point now,
                            std::chrono::system_clock::time_point wall_now,
                            const ServedCredentials& served);

struct EcsSettings {
    std::string path;               // e.g. "/credentials/web"; only this exact path (no query) is served
    const Secret* token = nullptr;  // the expected Authorization value (the token file's content)
    std::string account_id;         // from the role ARN; included as AccountId
};

// handle_ecs answers one request of the container-credentials surface (after guard_request): GET <path> with
// Authorization equal (constant time) to the token -> 200 {"AccessKeyId","SecretAccessKey","Token",
// "Expiration","AccountId"} (AccountId only when known); missing Authorization -> 401; wrong -> 403; two
// Authorization headers or any query string (a token in the query) -> 400; no token configured -> 500;
// other paths -> 404; other methods -> 405; no credentials (or expired ones at `wall_now`) -> 503. Errors
// are JSON {"Code","Message"} with Content-Type exactly application/json.
SurfaceResponse handle_ecs(const SurfaceRequest& request,
                           const EcsSettings& settings,
                           std::chrono::system_clock::time_point wall_now,
                           const ServedCredentials& served);

// constant_time_equals compares two byte strings without an early exit on the first difference.
bool constant_time_equals(std::string_view a, std::string_view b) noexcept;

}  // namespace rad::daemon
