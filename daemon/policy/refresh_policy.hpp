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
#include "signer/credentials.hpp"

namespace rad::policy {

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
    // Credentials that arrive with less than this left (twice the serve margin) are refused as too short
    // (credentials_too_short): they could be served for less than a minute, and refreshing them would mean a
    // CreateSession every few seconds. A session is at least 15 minutes, so this happens only when the
    // service cuts it short or this host's clock runs ahead of the service's.
    Millis min_useful_lifetime{120000};
    // A retryable failure waits at least this long when its wait is shortened to fit before the credentials
    // in service run out.
    Millis min_retry_wait{5000};
    // A refresh that something other than the schedule asks for (a client, a reload, a renewal, the wall
    // clock) waits until this long after the previous one asked for: a storm of such triggers costs at most
    // one call per interval. A client that finds nothing to serve after a network failure uses it: an
    // upstream that comes back is used within seconds, not after the backoff. An operator's `refresh` does
    // not wait.
    Millis on_demand_spacing{5000};
};

// HeldCredentials are credentials in the agent's hands: what CreateSession returned, with the two instants
// that decide how long they may be served.
struct HeldCredentials {
    signer::Credentials credentials;
    SteadyTime received;  // monotonic time of arrival
    SteadyTime deadline;  // monotonic expiry (monotonic_deadline of credentials.expiration)
    WallTime received_wall;
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
// `deadline` (both steady). jitter01 in [0, 1) picks the point through refresh_fraction(); a short lifetime
// moves it earlier, to min_refresh_lead before the deadline, but never earlier than half the lifetime: no
// sequence of successes calls CreateSession more often than every min_useful_lifetime / 2.
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
// Retry-After (itself capped at retry_cap). When the served credentials' deadline is known, a retryable
// wait is also shortened so that one more attempt happens before they stop being servable, to half the time
// left but never below min_retry_wait (nor below Retry-After). Other errors (a refusal, a local file that
// does not load) wait rejected_min..rejected_max: trying again sooner would not change the answer.
FailureDecision next_refresh_after_failure(const RefreshSettings& settings,
                                           SteadyTime now,
                                           const Error& error,
                                           int failures,
                                           double jitter01,
                                           std::optional<SteadyTime> served_deadline);

// servable is the one decision whether credentials may be handed out at this instant: more than
// serve_margin left by the monotonic clock (which stands still while the host sleeps) and by the wall
// clock (a clock set forward is the world's clock too).
bool servable(const RefreshSettings& settings,
              const HeldCredentials& held,
              SteadyTime now,
              WallTime wall_now);

// too_short is true for credentials that leave less than min_useful_lifetime at their arrival, by either
// clock (see RefreshSettings::min_useful_lifetime).
bool too_short(const RefreshSettings& settings, WallTime expiration, WallTime wall_now);

// client_may_hurry is true when a client that found nothing to serve may start a refresh ahead of the
// backoff: the last failure was the network's (unreachable, timeout), or there was none yet. After
// throttling, a server error or a refusal the schedule stands, so that clients add no load to the service.
bool client_may_hurry(const std::optional<Error>& last_error);

}  // namespace rad::policy
