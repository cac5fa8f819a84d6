#include "daemon/policy/backoff.hpp"

#include <algorithm>

namespace rad::policy {

std::chrono::milliseconds backoff_delay(const BackoffPolicy& policy,
                                        int retry,
                                        double jitter01,
                                        std::chrono::seconds retry_after) {
    using std::chrono::milliseconds;
    const int exponent = std::clamp(retry - 1, 0, 30);
    // Compute in double so that base × 2^30 cannot overflow before the cap applies.
    const double ceiling =
        std::min(static_cast<double>(policy.cap.count()),
                 static_cast<double>(policy.base.count()) * static_cast<double>(1LL << exponent));
    const double jitter = std::clamp(jitter01, 0.0, 1.0);
    const milliseconds delay{static_cast<milliseconds::rep>(ceiling * jitter)};
    return std::max<milliseconds>(delay, retry_after);
}

}  // namespace rad::policy
