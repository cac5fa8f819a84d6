#pragma once
// /healthz and /metrics of the agent's optional health listener, as pure functions of the agent's snapshot.
// Nothing secret goes in: no keys, tokens or access key ids, only states, counts and times.

#include <string>

#include "daemon/policy/snapshot.hpp"
#include "daemon/surfaces/http_types.hpp"

namespace rad::surfaces {

// handle_health answers the health listener by the one definition of health (policy/health.hpp):
// GET /livez 200 "ok" (the process answers); GET /readyz 200 "ok" when every profile serves, else 503 naming
// those with nothing to serve; GET /healthz 200 "ok" when every profile is healthy, else 503 with one line
// per problem ("web: last refresh failed (upstream_rejected)"); GET /metrics. 404 elsewhere, 405 for other
// methods.
SurfaceResponse handle_health(const SurfaceRequest& request, const policy::AgentSnapshot& snapshot);

// metrics_text renders the snapshot in the Prometheus text exposition format (version 0.0.4).
std::string metrics_text(const policy::AgentSnapshot& snapshot);

}  // namespace rad::surfaces
