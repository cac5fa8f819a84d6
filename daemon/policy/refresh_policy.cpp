#include "daemon/policy/refresh_policy.hpp"

#include <algorithm>
#include <cmath>

#include "daemon/policy/backoff.hpp"

namespace rad::policy {

namespace {

double clamp01(double x) {
    return std::clamp(x, 0.0, 1.0);
}

Millis scale(Millis span, double fraction) {
    return Millis(static_cast<Millis::rep>(static_cast<double>(span.count()) * fraction));
}

}  // namespace

SteadyTime monotonic_deadline(WallTime expiration, WallTime wall_now, SteadyTime steady_now) {
    const auto left = std::chrono::duration_cast<Millis>(expiration - wall_now);
    return steady_now + std::max(left, Millis(0));
}

double refresh_fraction(const RefreshSettings& settings, double jitter01) {
    // sqrt of a uniform variable has density 2x on [0, 1]: later points are likelier, none leaves the window.
    return settings.refresh_at_min +
           (settings.refresh_at_max - settings.refresh_at_min) * std::sqrt(clamp01(jitter01));
}

SteadyTime next_refresh_after_success(const RefreshSettings& settings,
                                      SteadyTime received,
                                      SteadyTime deadline,
                                      double jitter01) {
    const Millis lifetime = std::max(std::chrono::duration_cast<Millis>(deadline - received), Millis(0));
    SteadyTime at = received + scale(lifetime, refresh_fraction(settings, jitter01));
    // Short-lived credentials (a 15-minute session) still leave room for retries before the serve margin,
    // but a refresh is never due before half the lifetime: a success must not be followed by a loop.
    const SteadyTime latest = deadline - settings.min_refresh_lead;
    if (at > latest) {
        at = std::max(latest, received + lifetime / 2);
    }
    return at;
}

FailureDecision next_refresh_after_failure(const RefreshSettings& settings,
                                           SteadyTime now,
                                           const Error& error,
                                           int failures,
                                           double jitter01,
                                           std::optional<SteadyTime> served_deadline) {
    FailureDecision decision;
    decision.retryable = is_retryable(error.code);
    Millis wait;
    if (decision.retryable) {
        const auto retry_after =
            std::min(error.retry_after, std::chrono::duration_cast<std::chrono::seconds>(settings.retry_cap));
        // A server that says when to come back is believed; a bare throttling answer gets the larger base.
        const bool bare_throttling = error.code == Errc::upstream_throttled && error.retry_after.count() == 0;
        const Millis base = bare_throttling ? std::min(std::max(settings.throttled_base, settings.retry_base),
                                                       settings.retry_cap)
                                            : settings.retry_base;
        wait = backoff_delay(BackoffPolicy{base, settings.retry_cap}, std::max(failures, 1), jitter01,
                             retry_after);
        if (served_deadline) {
            // One more attempt must fit before the credentials in service stop being servable.
            const auto until_unservable =
                std::chrono::duration_cast<Millis>(*served_deadline - settings.serve_margin - now);
            const Millis shortened = std::max({until_unservable / 2, settings.min_retry_wait,
                                               std::chrono::duration_cast<Millis>(retry_after)});
            if (until_unservable > Millis(0) && wait > shortened) {
                wait = shortened;
            }
        }
    } else {
        wait =
            settings.rejected_min + scale(settings.rejected_max - settings.rejected_min, clamp01(jitter01));
    }
    decision.retry_at = now + wait;
    return decision;
}

bool servable(const RefreshSettings& settings,
              const HeldCredentials& held,
              SteadyTime now,
              WallTime wall_now) {
    return held.deadline - now > settings.serve_margin &&
           held.credentials.expiration - wall_now > settings.serve_margin;
}

bool too_short(const RefreshSettings& settings, WallTime expiration, WallTime wall_now) {
    return expiration - wall_now < settings.min_useful_lifetime;
}

bool client_may_hurry(const std::optional<Error>& last_error) {
    return !last_error || last_error->code == Errc::upstream_unreachable ||
           last_error->code == Errc::upstream_timeout;
}

}  // namespace rad::policy
