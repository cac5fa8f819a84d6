#include "daemon/policy/credentials_answer.hpp"

#include <algorithm>

namespace rad::daemon {

std::chrono::seconds default_min_lifetime(const CachedCredentials& held) {
    const auto issued = std::chrono::duration_cast<std::chrono::seconds>(held.deadline - held.received);
    return std::clamp(issued * 2 / 5, std::chrono::seconds(0), kDefaultMinLifetimeCap);
}

CredentialsAnswer answer_credentials(const ProfileCache& cache,
                                     int min_seconds,
                                     SteadyTime now,
                                     WallTime wall_now) {
    const auto current = cache.current(now, wall_now);
    if (current) {
        const CachedCredentials& held = **current;
        const auto wanted = min_seconds < 0 ? default_min_lifetime(held) : std::chrono::seconds(min_seconds);
        if (held.deadline - now >= wanted && held.credentials.expiration - wall_now >= wanted) {
            return CredentialsAnswer::serve;
        }
    }
    if (cache.consecutive_failures() > 0 && !cache.refresh_in_flight() && cache.next_refresh() > now) {
        return CredentialsAnswer::what_cache_holds;
    }
    return CredentialsAnswer::refresh_first;
}

}  // namespace rad::daemon
