#pragma once
// ProfileCache is the state of one profile's credentials: what is served, whether a refresh is running, when
// the next one is due and why the last one failed. It is a plain state machine with no clock, timer or
// thread of its own: the event loop passes the time in and arms a timer at next_refresh(). Its promises:
//  - single-flight: begin_refresh() succeeds only when no refresh is in flight;
//  - keep last good: a failed refresh leaves the credentials in service untouched;
//  - never stale: current() refuses credentials within serve_margin of their monotonic deadline or of their
//    Expiration by the wall clock (the monotonic clock stands still while the host sleeps, and a clock set
//    forward is the world's clock too), and never hands out an empty or malformed set (CreateSession parsing
//    already refuses those).

#include <optional>

#include "common/error.hpp"
#include "daemon/policy/refresh_policy.hpp"
#include "signer/credentials.hpp"

namespace rad::daemon {

struct CachedCredentials {
    signer::Credentials credentials;
    SteadyTime received;  // monotonic time of arrival
    SteadyTime deadline;  // monotonic expiry (monotonic_deadline of credentials.expiration)
};

enum class CacheState {
    starting,  // no credentials yet, the first refresh has not finished
    fresh,     // credentials in service, last refresh succeeded
    stale,     // credentials in service, the last refresh failed (retrying)
    failing,   // no servable credentials, the last refresh failed
};

const char* cache_state_name(CacheState state) noexcept;

class ProfileCache {
public:
    explicit ProfileCache(RefreshSettings settings, SteadyTime now);

    // current returns the credentials to serve at `now` (monotonic) / `wall_now`, or an Error saying why
    // there are none (the last refresh error, or "credentials are being fetched" before the first one
    // finished).
    [[nodiscard]] Result<const CachedCredentials*> current(SteadyTime now, WallTime wall_now) const;

    // expired_by_wall_clock is true when credentials are held that the monotonic clock still finds good but
    // the wall clock puts within serve_margin of their Expiration: the host slept, or its clock was set
    // forward. The event loop then refreshes at once instead of waiting for the monotonic timer.
    [[nodiscard]] bool expired_by_wall_clock(SteadyTime now, WallTime wall_now) const;

    // begin_refresh marks a refresh as in flight; false (and nothing changes) when one already is.
    bool begin_refresh();
    bool refresh_in_flight() const noexcept { return in_flight_; }

    // complete_success stores new credentials and schedules the next refresh. The wall/steady pair converts
    // the service's expiration to a monotonic deadline; jitter01 picks the refresh point.
    void complete_success(signer::Credentials credentials,
                          WallTime wall_now,
                          SteadyTime now,
                          double jitter01);
    // adopt takes credentials that an earlier process of the agent held (a restart under systemd), received
    // at `received` by the wall clock. They are served like those of a refresh of its own and refreshed at
    // the policy's point of their lifetime, at once when that point has passed.
    void adopt(signer::Credentials credentials,
               WallTime received,
               WallTime wall_now,
               SteadyTime now,
               double jitter01);
    // complete_failure records the error, keeps the credentials in service and schedules a retry.
    FailureDecision complete_failure(Error error, SteadyTime now, double jitter01);

    // next_refresh is when the next refresh is due (meaningless while one is in flight).
    SteadyTime next_refresh() const noexcept { return next_refresh_; }
    // request_refresh_by moves the next refresh earlier (never later), e.g. when a client needs more
    // lifetime.
    void request_refresh_by(SteadyTime at) noexcept;
    // set_settings changes the policy for the decisions to come (a reload); what is scheduled stays.
    void set_settings(const RefreshSettings& settings) noexcept { settings_ = settings; }

    CacheState state(SteadyTime now, WallTime wall_now) const;
    const std::optional<Error>& last_error() const noexcept { return last_error_; }
    int consecutive_failures() const noexcept { return failures_; }
    const std::optional<CachedCredentials>& held() const noexcept { return held_; }

private:
    bool serving(SteadyTime now, WallTime wall_now) const;

    RefreshSettings settings_;
    std::optional<CachedCredentials> held_;
    std::optional<Error> last_error_;
    int failures_ = 0;
    bool in_flight_ = false;
    SteadyTime next_refresh_;
};

}  // namespace rad::daemon
