#include "daemon/surfaces/router.hpp"

#include "daemon/surfaces/request_guard.hpp"

namespace rad::surfaces {

SurfaceResponse route_imds(const SurfaceRequest& request,
                           const ImdsSettings& settings,
                           const ImdsTokens& tokens,
                           std::chrono::steady_clock::time_point now,
                           const ServedCredentials& served) {
    if (auto refusal = guard_request(request)) {
        return std::move(*refusal);
    }
    return handle_imds(request, settings, tokens, now, served);
}

SurfaceResponse route_ecs(const SurfaceRequest& request, const EcsLookup& lookup) {
    if (auto refusal = guard_request(request)) {
        return std::move(*refusal);
    }
    const std::string_view path = std::string_view(request.target).substr(0, request.target.find('?'));
    if (auto profile = lookup(path)) {
        return handle_ecs(request, profile->settings, profile->served);
    }
    const EcsSettings none{"", nullptr, ""};
    return handle_ecs(request, none, ServedCredentials{nullptr, make_error(Errc::usage, "unknown path"), {}});
}

SurfaceResponse route_health(const SurfaceRequest& request, const policy::AgentSnapshot& snapshot) {
    if (auto refusal = guard_request(request)) {
        return std::move(*refusal);
    }
    return handle_health(request, snapshot);
}

}  // namespace rad::surfaces
