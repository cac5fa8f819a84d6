#pragma once
// The CreateSession operation: building the request and reading the answer (docs/protocol.md §3, §5).

#include <chrono>
#include <optional>
#include <string>

#include "common/error.hpp"
#include "signer/credentials.hpp"
#include "signer/endpoint.hpp"
#include "signer/http_request.hpp"

namespace rad::signer {

struct CreateSessionParams {
    std::string profile_arn, role_arn, trust_anchor_arn;
    int duration_seconds = 3600;    // 900..43200, checked by check_session_duration()
    std::string role_session_name;  // sent only when not empty
};

// kMinSessionSeconds and kMaxSessionSeconds bound durationSeconds as the service does.
inline constexpr int kMinSessionSeconds = 900;
inline constexpr int kMaxSessionSeconds = 43200;
// kClockSkewSeconds is the clock difference SigV4 services tolerate (5 minutes): an expiration up to this
// much beyond kMaxSessionSeconds is accepted, and a Date header further off than this is reported as clock
// skew.
inline constexpr int kClockSkewSeconds = 300;

// check_session_duration refuses values outside 900..43200 (Errc::usage naming --session-duration).
[[nodiscard]] Result<void> check_session_duration(int seconds);

// make_create_session_request builds the unsigned POST: path "/sessions" (the transport prepends url.path,
// which is not signed, as the reference helper does), the three ARNs in the query, Host from `url`,
// Content-Type: application/json, and the body {"durationSeconds":N} (plus ,"roleSessionName":"…" when set),
// in that order.
HttpRequest make_create_session_request(const CreateSessionParams& params, const Url& url);

// kMaxResponseBytes caps what the transport reads of an answer (64 KiB).
inline constexpr std::size_t kMaxResponseBytes = 64 * 1024;

// parse_create_session_response turns an answer into credentials or a classified error:
//  - 2xx with credentialSet[0].credentials holding non-empty accessKeyId, secretAccessKey, sessionToken and
//    a parsable expiration later than `now`: the credentials;
//  - 2xx otherwise (bad JSON, empty set, missing/empty field, past expiration, or an expiration more than
//    kMaxSessionSeconds + kClockSkewSeconds away): upstream_malformed;
//  - 429 or an error code containing "Throttl": upstream_throttled (retry_after from Retry-After seconds);
//  - 5xx: upstream_server_error; other 4xx: upstream_rejected, with " (clock skew: ...)" appended when the
//    answer's Date header is more than kClockSkewSeconds from `now`, or a hint when the message is a SigV4
//    skew refusal ("Signature expired", "Signature not yet current").
// Error messages carry the status, the error code (X-Amzn-ErrorType, else __type / code) and the service's
// message, but never the body itself.
[[nodiscard]] Result<Credentials> parse_create_session_response(const HttpResponse& response,
                                                                std::chrono::system_clock::time_point now);

}  // namespace rad::signer
