#include "daemon/policy/refresh_policy.hpp"

#include <algorithm>
#include <cmath>

#include "daemon/policy/retry.hpp"

namespace rad::daemon {

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
    // Short-lived credentials (a 15-minute session) still leave room for retries before the serve margin.
    const SteadyTime latest = deadline - settings.min_refresh_lead;
    if (at > latest) {
        at = std::max(latest, received);
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
    } else {
        wait =
            settings.rejected_min + scale(settings.rejected_max - settings.rejected_min, clamp01(jitter01));
    }
    if (served_deadline) {
        // One more attempt must fit before the credentials in service stop being servable.
        const auto until_unservable =
            std::chrono::duration_cast<Millis>(*served_deadline - settings.serve_margin - now);
        if (until_unservable > Millis(0) && wait > until_unservable / 2) {
            wait = std::max(until_unservable / 2, settings.retry_base);
        }
    }
    decision.retry_at = now + wait;
    return decision;
}

bool servable(const RefreshSettings& settings, SteadyTime now, SteadyTime deadline) {
    return deadline - now > settings.serve_margin;
}

}  // namespace rad::daemon
