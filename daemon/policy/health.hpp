#pragma once
// The agent's health, defined once, from its snapshot alone, and read by every place that reports it:
// `status`, systemd's STATUS=, /livez, /readyz, /healthz and /metrics.
//  - A profile *serves* while it holds credentials it may hand out.
//  - It is *healthy* when it serves, its last refresh succeeded and none of its surfaces fails; otherwise
//    each of its problems is named (nothing to serve, last refresh failed, a surface failing) with the code
//    of its error.
//  - The agent is *live* while it answers at all: /livez is 200 whenever the process serves it.
//  - It is *ready* when every profile serves: clients get credentials from each of them. A failed refresh
//    while the last good credentials are still served does not make it unready: a readiness probe must not
//    take every pod out of service during an outage of the service that the credentials held ride out.
//  - It is *healthy* when every profile is healthy: /healthz, and STATUS= names what is not.

#include <string>
#include <vector>

#include "daemon/policy/snapshot.hpp"

namespace rad::policy {

struct HealthProblem {
    enum class Kind { nothing_to_serve, refresh_failed, surface_failing } kind;
    std::string what;  // "nothing to serve", "last refresh failed", "credentials_file failing"
    std::string code;  // the errc name ("upstream_unreachable", "certificate_expired"), or "" when none
};

struct ProfileHealth {
    std::string name;
    bool serving = false;
    bool healthy = false;
    std::vector<HealthProblem> problems;
};

struct AgentHealth {
    bool ready = false;
    bool healthy = false;
    std::size_t serving = 0;  // profiles serving
    std::vector<ProfileHealth> profiles;
};

AgentHealth agent_health(const AgentSnapshot& snapshot);

// problem_text is "web: nothing to serve (certificate_expired)".
std::string problem_text(const std::string& profile, const HealthProblem& problem);

// systemd_status is the STATUS= line: "2/2 profiles serving credentials", then "; starting: " and the
// profiles whose first CreateSession is in progress, then "; failing: " and every other problem,
// "web: last refresh failed (upstream_rejected)", joined by "; ".
std::string systemd_status(const AgentHealth& health);

}  // namespace rad::policy
