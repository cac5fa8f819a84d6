#pragma once
// The refresh policy of the agent's credential cache, as pure functions: the time, the credentials' lifetime,
// the attempt number and the random jitter come in; a decision comes out. The event loop (agent.cpp) only
// arms timers at the instants these functions return, so every rule here is tested as a table.
//
// Times are on the monotonic clock (std::chrono::steady_clock): a wall-clock jump must not make stale
// credentials look fresh. The service's wall-clock expiration is turned into a monotonic deadline once, when
// the credentials arrive (monotonic_deadline()).

#include <chrono>
#include <optional>

#include "common/error.hpp"

namespace rad::daemon {

using SteadyTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;
using Millis = std::chrono::milliseconds;

struct RefreshSettings {
    // Refresh at a point drawn in [refresh_at_min, refresh_at_max] of the credentials' lifetime, with a
    // density rising linearly towards refresh_at_max (see refresh_fraction()).
    double refresh_at_min = 0.50;
    double refresh_at_max = 0.60;
    // Retryable failures (network, timeout, 5xx, throttling): full-jitter exponential backoff.
    Millis retry_base{1000};
    Millis retry_cap{300000};
    // Throttling (HTTP 429, Throttling* codes) means the account's shared quota is exhausted: every agent of
    // a fleet sees it at once, so their backoff starts from this larger base instead of retry_base (unless
    // the server named its own Retry-After, which is then the floor as for every retryable error).
    Millis throttled_base{10000};
    // Non-retryable failures (400/403/404, bad local files): wait this long, uniformly, before trying again.
    Millis rejected_min{300000};
    Millis rejected_max{600000};
    // Credentials with this little left are no longer served by any surface.
    Millis serve_margin{60000};
    // A refresh is never scheduled later than this before expiry, whatever the jitter says, so that a
    // failing refresh still has time for retries while the old credentials are served.
    Millis min_refresh_lead{120000};
};

// monotonic_deadline converts the service's expiration (wall clock) into a steady-clock deadline, using one
// pair of readings of both clocks taken when the credentials arrived.
SteadyTime monotonic_deadline(WallTime expiration, WallTime wall_now, SteadyTime steady_now);

// refresh_fraction maps jitter01 in [0, 1) to the refresh point as a fraction of the lifetime:
// min + (max - min) × sqrt(jitter01). Every point stays inside the window and the spread stays wide
// (standard deviation 0.024 for the default 0.50..0.60), but the mean sits at 2/3 of the window (0.567)
// instead of its middle: a fleet of agents calls CreateSession 3 % less often than with a uniform draw, which
// keeps 10 000 agents with 1 h sessions under half of the default 10/s quota (tools/fleet-sim, scenario 3).
double refresh_fraction(const RefreshSettings& settings, double jitter01);

// next_refresh_after_success is when to refresh credentials that arrived at `received` and expire at
// `deadline` (both steady). jitter01 in [0, 1) picks the point through refresh_fraction().
SteadyTime next_refresh_after_success(const RefreshSettings& settings,
                                      SteadyTime received,
                                      SteadyTime deadline,
                                      double jitter01);

// FailureDecision is what to do after the refresh attempt number `failures` (1 for the first) failed.
struct FailureDecision {
    SteadyTime retry_at;
    bool retryable = false;
};

// next_refresh_after_failure: retryable errors wait jitter01 × min(cap, base × 2^(failures-1)) (base is
// throttled_base for upstream_throttled without a Retry-After, retry_base otherwise), at least the server's
// Retry-After (itself capped at retry_cap); other errors wait rejected_min..rejected_max. When the
// served credentials' deadline is known, the wait is also bounded so that one more attempt happens before
// they stop being servable (but never sooner than retry_base, to avoid a hot loop).
FailureDecision next_refresh_after_failure(const RefreshSettings& settings,
                                           SteadyTime now,
                                           const Error& error,
                                           int failures,
                                           double jitter01,
                                           std::optional<SteadyTime> served_deadline);

// servable is true when credentials with monotonic deadline `deadline` may still be handed out at `now`.
bool servable(const RefreshSettings& settings, SteadyTime now, SteadyTime deadline);

}  // namespace rad::daemon
