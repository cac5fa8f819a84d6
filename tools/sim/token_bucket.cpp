#include "tools/sim/token_bucket.hpp"

#include <algorithm>
#include <cmath>

namespace rad::sim {

namespace {
constexpr std::int64_t kMicro = 1'000'000;
}

TokenBucket::TokenBucket(double rate_per_second, double burst)
    : micro_per_ms_(std::max<std::int64_t>(std::llround(rate_per_second * 1000.0), 1)),
      capacity_(std::llround(burst * kMicro)),
      level_(capacity_) {}

std::int64_t TokenBucket::refilled(Ms now) const {
    if (now <= last_) {
        return level_;
    }
    const std::int64_t room = capacity_ - level_;
    const std::int64_t elapsed = now - last_;
    // Compare before multiplying: a long idle gap must not overflow.
    if (elapsed >= (room + micro_per_ms_ - 1) / micro_per_ms_) {
        return capacity_;
    }
    return level_ + elapsed * micro_per_ms_;
}

bool TokenBucket::try_take(Ms now) {
    level_ = refilled(now);
    last_ = std::max(last_, now);
    if (level_ < kMicro) {
        return false;
    }
    level_ -= kMicro;
    return true;
}

double TokenBucket::tokens(Ms now) const {
    return static_cast<double>(refilled(now)) / kMicro;
}

}  // namespace rad::sim
