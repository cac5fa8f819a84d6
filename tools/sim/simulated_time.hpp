#pragma once
// Simulated time: milliseconds since the start of a run, turned into the engine's two clocks by adding fixed
// epochs. Time 0 sits far from the clocks' own epochs, so that credentials that arrived before the start
// (negative times) fit, and the wall clock may be set off the true time by an offset (a host whose clock is
// ahead or was stepped).

#include <chrono>
#include <cstdint>

#include "daemon/engine/profile_engine.hpp"

namespace rad::sim {

using Ms = std::int64_t;

// 2025-01-01T00:00:00Z as the wall clock's time 0: any fixed instant works, the policy looks at differences.
inline const engine::WallTime kWallEpoch = engine::WallTime{} + std::chrono::seconds(1735689600);
inline const engine::SteadyTime kSteadyEpoch = engine::SteadyTime{} + std::chrono::hours(24 * 365);

inline engine::SteadyTime steady_at(Ms t) {
    return kSteadyEpoch + std::chrono::milliseconds(t);
}

inline engine::WallTime wall_at(Ms t) {
    return kWallEpoch + std::chrono::milliseconds(t);
}

// ms_of is the simulated time of a steady instant, rounded up to the millisecond (a timer never fires early).
inline Ms ms_of(engine::SteadyTime t) {
    if (t == engine::SteadyTime::max()) {
        return INT64_MAX;
    }
    return std::chrono::ceil<std::chrono::milliseconds>(t - kSteadyEpoch).count();
}

// instant_at is both clocks at simulated time `t`, the wall clock `wall_offset` ms off the true time.
inline engine::Instant instant_at(Ms t, Ms wall_offset = 0) {
    return engine::Instant{steady_at(t), wall_at(t + wall_offset)};
}

}  // namespace rad::sim
