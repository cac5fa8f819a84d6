#include "daemon/policy/credential_cache.hpp"

#include <utility>

namespace rad::daemon {

const char* cache_state_name(CacheState state) noexcept {
    switch (state) {
        case CacheState::starting:
            return "starting";
        case CacheState::fresh:
            return "fresh";
        case CacheState::stale:
            return "stale";
        case CacheState::failing:
            return "failing";
    }
    return "unknown";
}

ProfileCache::ProfileCache(RefreshSettings settings, SteadyTime now)
    : settings_(settings), next_refresh_(now) {}

bool ProfileCache::serving(SteadyTime now, WallTime wall_now) const {
    return held_ && servable(settings_, now, held_->deadline) &&
           wall_now + settings_.serve_margin < held_->credentials.expiration;
}

bool ProfileCache::expired_by_wall_clock(SteadyTime now, WallTime wall_now) const {
    return held_ && servable(settings_, now, held_->deadline) && !serving(now, wall_now);
}

Result<const CachedCredentials*> ProfileCache::current(SteadyTime now, WallTime wall_now) const {
    if (serving(now, wall_now)) {
        return &*held_;
    }
    if (last_error_) {
        // The surfaces report the reason, but as "unavailable": the client cannot fix our upstream problem.
        return Error{last_error_->code, "no valid credentials: " + last_error_->message, {}};
    }
    if (held_) {
        return make_error(Errc::upstream_unreachable,
                          "no valid credentials: the cached ones expire within " +
                              std::to_string(settings_.serve_margin.count() / 1000) +
                              " s and a refresh is in progress");
    }
    return make_error(Errc::upstream_unreachable,
                      "no credentials yet: the first CreateSession is in progress");
}

bool ProfileCache::begin_refresh() {
    if (in_flight_) {
        return false;
    }
    in_flight_ = true;
    return true;
}

void ProfileCache::complete_success(signer::Credentials credentials,
                                    WallTime wall_now,
                                    SteadyTime now,
                                    double jitter01) {
    adopt(std::move(credentials), wall_now, wall_now, now, jitter01);
    in_flight_ = false;
}

void ProfileCache::adopt(
    signer::Credentials credentials, WallTime received, WallTime wall_now, SteadyTime now, double jitter01) {
    const SteadyTime deadline = monotonic_deadline(credentials.expiration, wall_now, now);
    const SteadyTime arrived = received < wall_now ? now - (wall_now - received) : now;
    held_ = CachedCredentials{std::move(credentials), arrived, deadline};
    last_error_.reset();
    failures_ = 0;
    next_refresh_ = next_refresh_after_success(settings_, arrived, deadline, jitter01);
}

FailureDecision ProfileCache::complete_failure(Error error, SteadyTime now, double jitter01) {
    ++failures_;
    std::optional<SteadyTime> served_deadline;
    if (held_ && servable(settings_, now, held_->deadline)) {
        served_deadline = held_->deadline;
    }
    const FailureDecision decision =
        next_refresh_after_failure(settings_, now, error, failures_, jitter01, served_deadline);
    last_error_ = std::move(error);
    in_flight_ = false;
    next_refresh_ = decision.retry_at;
    return decision;
}

void ProfileCache::request_refresh_by(SteadyTime at) noexcept {
    if (at < next_refresh_) {
        next_refresh_ = at;
    }
}

CacheState ProfileCache::state(SteadyTime now, WallTime wall_now) const {
    const bool in_service = serving(now, wall_now);
    if (!last_error_) {
        return in_service ? CacheState::fresh : CacheState::starting;
    }
    return in_service ? CacheState::stale : CacheState::failing;
}

}  // namespace rad::daemon
