#include "daemon/policy/health.hpp"

namespace rad::policy {

AgentHealth agent_health(const AgentSnapshot& snapshot) {
    AgentHealth health;
    health.ready = true;
    health.healthy = true;
    for (const auto& p : snapshot.profiles) {
        ProfileHealth profile{p.name, p.servable, false, {}};
        if (!p.servable) {
            profile.problems.push_back(
                {HealthProblem::Kind::nothing_to_serve, "nothing to serve", p.last_error_code});
        } else if (!p.last_error_code.empty()) {
            profile.problems.push_back(
                {HealthProblem::Kind::refresh_failed, "last refresh failed", p.last_error_code});
        }
        for (const auto& surface : p.surfaces) {
            if (!surface.ok) {
                profile.problems.push_back(
                    {HealthProblem::Kind::surface_failing, surface.surface + " failing", surface.error_code});
            }
        }
        profile.healthy = profile.problems.empty();
        health.serving += p.servable ? 1 : 0;
        health.ready = health.ready && p.servable;
        health.healthy = health.healthy && profile.healthy;
        health.profiles.push_back(std::move(profile));
    }
    return health;
}

std::string problem_text(const std::string& profile, const HealthProblem& problem) {
    std::string text = profile + ": " + problem.what;
    if (!problem.code.empty()) {
        text += " (" + problem.code + ")";
    } else if (problem.kind == HealthProblem::Kind::nothing_to_serve) {
        text += " (the first CreateSession is in progress)";
    }
    return text;
}

std::string systemd_status(const AgentHealth& health) {
    std::string status = std::to_string(health.serving) + "/" + std::to_string(health.profiles.size()) +
                         " profiles serving credentials";
    std::string starting, failing;
    for (const auto& profile : health.profiles) {
        for (const auto& problem : profile.problems) {
            if (problem.kind == HealthProblem::Kind::nothing_to_serve && problem.code.empty()) {
                starting += (starting.empty() ? "" : ", ") + profile.name;
            } else {
                failing += (failing.empty() ? "" : "; ") + problem_text(profile.name, problem);
            }
        }
    }
    if (!starting.empty()) {
        status += "; starting: " + starting;
    }
    if (!failing.empty()) {
        status += "; failing: " + failing;
    }
    return status;
}

}  // namespace rad::policy
