#pragma once
// /healthz and /metrics of the agent's optional health listener, as pure functions of the agent's snapshot.
// Nothing secret goes in: no keys, tokens or access key ids, only states, counts and times.

#include <string>

#include "daemon/policy/snapshot.hpp"
#include "daemon/surfaces/http_types.hpp"

namespace rad::daemon {

// handle_health: 200 "ok" when every profile holds servable credentials and every surface of theirs works;
// 503 listing the failing profiles (their state) and surfaces otherwise. Routes: GET /healthz, GET /metrics;
// 404 elsewhere, 405 for other methods.
SurfaceResponse handle_health(const SurfaceRequest& request, const AgentSnapshot& snapshot);

// metrics_text renders the snapshot in the Prometheus text exposition format (version 0.0.4).
std::string metrics_text(const AgentSnapshot& snapshot);

}  // namespace rad::daemon
