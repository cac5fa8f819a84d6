#include "daemon/policy/credentials_answer.hpp"

#include <algorithm>

namespace rad::policy {

std::chrono::seconds default_min_lifetime(const HeldCredentials& held) {
    const auto issued = std::chrono::duration_cast<std::chrono::seconds>(held.deadline - held.received);
    return std::clamp(issued * 2 / 5, std::chrono::seconds(0), kDefaultMinLifetimeCap);
}

CredentialsAnswer answer_credentials(const RefreshView& view,
                                     int min_seconds,
                                     SteadyTime now,
                                     WallTime wall_now) {
    if (view.servable != nullptr) {
        const HeldCredentials& held = *view.servable;
        const auto wanted = min_seconds < 0 ? default_min_lifetime(held) : std::chrono::seconds(min_seconds);
        if (held.deadline - now >= wanted && held.credentials.expiration - wall_now >= wanted) {
            return CredentialsAnswer::serve;
        }
    }
    if (view.in_flight) {
        return CredentialsAnswer::refresh_first;
    }
    if (view.backing_off || !view.on_demand_allowed) {
        return CredentialsAnswer::what_cache_holds;
    }
    return CredentialsAnswer::refresh_first;
}

}  // namespace rad::policy
