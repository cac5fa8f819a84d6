#include "daemon/upstream/session_client.hpp"

#include "signer/sigv4x509.hpp"

namespace rad::upstream {

Result<signer::Credentials> fetch_credentials(const pki::Identity& identity,
                                              const signer::CreateSessionParams& params,
                                              const signer::ResolvedEndpoint& endpoint,
                                              const RetryOptions& retry,
                                              const SessionClientHooks& hooks) {
    const signer::HttpRequest unsigned_request = signer::make_create_session_request(params, endpoint.url);
    Error last;
    for (int attempt = 1; attempt <= retry.max_attempts; ++attempt) {
        // Sign every attempt again: X-Amz-Date must be fresh, as the SDK's retry middleware does it.
        signer::HttpRequest request = unsigned_request;
        if (auto signed_ok = signer::sign_request(request, identity, endpoint.region, hooks.now());
            !signed_ok) {
            return signed_ok.error();
        }
        auto response = hooks.send(endpoint.url, request);
        Result<signer::Credentials> outcome =
            response ? signer::parse_create_session_response(*response, hooks.now())
                     : Result<signer::Credentials>(response.error());
        if (outcome) {
            return outcome;
        }
        last = outcome.error();
        if (!is_retryable(last.code) || attempt == retry.max_attempts) {
            break;
        }
        if (last.retry_after > retry.max_retry_after) {
            last.message +=
                " (the service asks to retry after " + std::to_string(last.retry_after.count()) + " s)";
            break;
        }
        const auto delay = policy::backoff_delay(retry.backoff, attempt, hooks.jitter01(), last.retry_after);
        if (hooks.on_attempt_failed) {
            hooks.on_attempt_failed(attempt, last, delay);
        }
        hooks.sleep(delay);
    }
    return last;
}

}  // namespace rad::upstream
