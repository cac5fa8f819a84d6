#pragma once
// Routing of the agent's HTTP surfaces, as pure functions: a request is first checked by guard_request, then
// answered by its surface's handler with a view of what the agent holds. The agent's HTTP servers call these
// and nothing else, and so does the fuzz target (tests/fuzz/fuzz_http_request.cpp), so that what is fuzzed
// is what runs.

#include <chrono>
#include <functional>
#include <optional>
#include <string_view>

#include "daemon/surfaces/ecs.hpp"
#include "daemon/surfaces/health.hpp"
#include "daemon/surfaces/http_types.hpp"
#include "daemon/surfaces/imds.hpp"

namespace rad::surfaces {

// route_imds answers one request of a profile's IMDS listener.
SurfaceResponse route_imds(const SurfaceRequest& request,
                           const ImdsSettings& settings,
                           const ImdsTokens& tokens,
                           std::chrono::steady_clock::time_point now,
                           const ServedCredentials& served);

// EcsProfile is what the container endpoint serves at one path; the pointers in it are borrowed for the call.
struct EcsProfile {
    EcsSettings settings;
    ServedCredentials served;
};

// EcsLookup finds the profile served at a path (the request target without its query), or nullopt.
using EcsLookup = std::function<std::optional<EcsProfile>(std::string_view path)>;

// route_ecs answers one request of the container-credentials listener, which serves every profile with an
// ecs_path; an unknown path is answered as handle_ecs answers one (404), with no credentials in reach.
SurfaceResponse route_ecs(const SurfaceRequest& request, const EcsLookup& lookup);

// route_health answers one request of the health listener (/healthz, /metrics).
SurfaceResponse route_health(const SurfaceRequest& request, const policy::AgentSnapshot& snapshot);

}  // namespace rad::surfaces
