#pragma once
// Retry timing for CreateSession attempts: exponential backoff with full jitter (AWS Architecture Blog,
// "Exponential Backoff And Jitter"), raised to the server's Retry-After. Pure: jitter comes in as a number.

#include <chrono>

namespace rad::policy {

struct BackoffPolicy {
    std::chrono::milliseconds base{1000};
    std::chrono::milliseconds cap{20000};
};

// backoff_delay is the wait before retry number `retry` (1 for the wait after the first failure):
// jitter01 × min(cap, base × 2^(retry-1)), then at least `retry_after`. jitter01 is clamped to [0, 1].
std::chrono::milliseconds backoff_delay(const BackoffPolicy& policy,
                                        int retry,
                                        double jitter01,
                                        std::chrono::seconds retry_after);

}  // namespace rad::policy
