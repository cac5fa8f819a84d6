#pragma once
// TokenBucket is a CreateSession quota: `rate` tokens per second, at most `burst` stored, full at t = 0. A
// call is accepted when a whole token is available and takes it. Arithmetic is exact: tokens are counted in
// millionths and the rate is quantised to 0.001 token per second (at least 0.001).

#include <cstdint>

#include "tools/sim/simulated_time.hpp"

namespace rad::sim {

class TokenBucket {
public:
    TokenBucket(double rate_per_second, double burst);

    // try_take refills up to `now` (times must not go backwards; an earlier time refills nothing) and takes
    // one token if a whole one is there.
    bool try_take(Ms now);
    // tokens is the number of tokens available at `now`, without taking any.
    double tokens(Ms now) const;

private:
    std::int64_t refilled(Ms now) const;

    std::int64_t micro_per_ms_;  // refill per millisecond, in millionths of a token
    std::int64_t capacity_;      // in millionths of a token
    std::int64_t level_;         // in millionths of a token, as of last_
    Ms last_ = 0;
};

}  // namespace rad::sim
