#pragma once
// fetch_credentials runs CreateSession with retries: each attempt is signed afresh (new X-Amz-Date),
// retryable failures wait per policy::backoff_delay(), non-retryable ones return at once. Time, sleep,
// randomness and the transport come in as functions so that the loop is tested without a network or a clock.

#include <chrono>
#include <functional>

#include "common/error.hpp"
#include "daemon/policy/backoff.hpp"
#include "pki/identity.hpp"
#include "signer/create_session.hpp"

namespace rad::upstream {

struct SessionClientHooks {
    // send performs one exchange (send_request in production).
    std::function<Result<signer::HttpResponse>(const signer::Url&, const signer::HttpRequest&)> send;
    std::function<std::chrono::system_clock::time_point()> now;
    std::function<void(std::chrono::milliseconds)> sleep;
    // jitter01 returns a uniform number in [0, 1).
    std::function<double()> jitter01;
    // on_attempt_failed is told about each failed attempt that will be retried (for --debug lines).
    std::function<void(int attempt, const Error&, std::chrono::milliseconds delay)> on_attempt_failed;
};

struct RetryOptions {
    int max_attempts = 3;
    policy::BackoffPolicy backoff;
    // max_retry_after: a Retry-After longer than this ends the attempts at once (a CLI must not hang).
    std::chrono::seconds max_retry_after{20};
};

// fetch_credentials returns the credentials of the first successful attempt, or the last attempt's error.
[[nodiscard]] Result<signer::Credentials> fetch_credentials(const pki::Identity& identity,
                                                            const signer::CreateSessionParams& params,
                                                            const signer::ResolvedEndpoint& endpoint,
                                                            const RetryOptions& retry,
                                                            const SessionClientHooks& hooks);

}  // namespace rad::upstream
