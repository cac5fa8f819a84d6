#pragma once
// fleet_sim: a discrete-event simulation of N agents × P profiles sharing one CreateSession quota.
//
// Every agent-profile ("slot") is the agent's real engine (daemon/engine/profile_engine.hpp), run by
// rad::sim::SimulatedProfile exactly as the agent runs it: the simulator only plays the clock, the event
// loop's timers and the service (its quota, latency and faults). Time is virtual (tools/sim). The run is
// deterministic for a given Scenario (seed included): events are ordered by time, then by the order they were
// scheduled in; the service's random numbers come from one seeded generator drawn in event order, and each
// engine's from a seed derived from the scenario's.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "daemon/policy/refresh_policy.hpp"

namespace rad::fleet {

using Millis = std::chrono::milliseconds;

enum class InitialState {
    cold,    // agents start without credentials (a restart of the whole fleet, a mass deploy)
    steady,  // every slot already holds credentials at a uniformly random point of its refresh cycle
};

struct Scenario {
    std::uint32_t agents = 1000;
    std::uint32_t profiles = 1;
    double quota_rate = 10.0;   // CreateSession accepted per second
    double quota_burst = 10.0;  // tokens the bucket holds
    std::chrono::seconds session{3600};
    policy::RefreshSettings refresh;  // the agent's defaults unless overridden
    InitialState initial = InitialState::cold;
    Millis start_spread{0};  // cold: agents start uniformly over [0, start_spread) (0: all at t = 0)
    std::vector<Millis> start_offsets;  // cold: when each agent starts (one per agent), instead of the spread
    Millis startup_jitter{0};  // the agents' startup_jitter_seconds: each profile's first call is delayed
                               // by a random 0..startup_jitter
    Millis latency{200};       // round trip of one CreateSession
    Millis latency_jitter{0};  // plus uniformly [0, latency_jitter)
    std::vector<Millis> latency_samples;  // when not empty: each round trip is one of these, drawn at random
    double failure_rate = 0.0;            // accepted calls answered with a 5xx
    Millis outage_start{0};  // calls sent in [outage_start, outage_end) fail with upstream_unreachable
    Millis outage_end{0};
    std::chrono::seconds retry_after{0};  // Retry-After on throttled answers (0: none)
    Millis duration{std::chrono::hours(24)};
    std::uint64_t seed = 1;
    // Cross-check: also ask every slot's engine what it serves once per simulated second and count the
    // seconds it served nothing (Summary::sampled_unservable_seconds). Costs agents × seconds calls.
    bool sample_every_second = false;
};

// validate names the first knob that makes no sense (usage error), so the CLI can report it.
[[nodiscard]] Result<void> validate(const Scenario& scenario);

struct SecondCounts {
    std::uint32_t accepted = 0;     // calls the quota let through (successful or 5xx)
    std::uint32_t throttled = 0;    // calls refused by the quota
    std::uint32_t unreachable = 0;  // calls sent during the outage
};

struct RateStats {
    std::int64_t total = 0;
    std::uint32_t peak = 0;  // busiest second
    std::uint32_t p99 = 0;   // 99th percentile of the per-second counts (nearest rank, over every second)
    double mean = 0.0;       // total / simulated seconds
};

struct Summary {
    RateStats accepted;
    RateStats throttled;
    std::int64_t server_errors = 0;  // accepted calls answered with a 5xx
    std::int64_t unreachable = 0;    // calls sent during the outage
    std::int64_t successes = 0;
    std::uint64_t slots = 0;  // agents × profiles
    std::uint64_t slots_never_credentialed = 0;
    // When the last slot got its first credentials (0 in a steady start); empty if some never did.
    std::optional<Millis> all_credentialed_after;
    // Integrated exactly: for each slot, the time from its agent's start (or t = 0) to the end of the run
    // during which its engine would serve nothing (no credentials, or within serve_margin of expiry).
    Millis unservable_time{0};
    // Worst staleness: the longest a slot's refresh stayed overdue, from the instant the policy scheduled it
    // (after a success) to the success that ended it, or to the end of the run.
    Millis worst_staleness{0};
    // Only with Scenario::sample_every_second: slot-seconds at which the engine served nothing.
    std::int64_t sampled_unservable_seconds = 0;
};

struct SimulationResult {
    Summary summary;
    std::vector<SecondCounts> per_second;  // one entry per simulated second
};

// simulate runs the scenario; the scenario must have passed validate() (else the usage error is returned).
[[nodiscard]] Result<SimulationResult> simulate(const Scenario& scenario);

// rate_stats computes total/peak/p99/mean of one per-second series.
RateStats rate_stats(const std::vector<std::uint32_t>& per_second);

}  // namespace rad::fleet
