#include "daemon/policy/reload_plan.hpp"

#include <tuple>

namespace rad::daemon {

namespace {

std::vector<std::string> addresses(const std::vector<config::ListenAddress>& list) {
    std::vector<std::string> out;
    for (const auto& address : list) {
        out.push_back(address.to_string());
    }
    return out;
}

std::string optional_address(const std::optional<config::ListenAddress>& address) {
    return address ? address->to_string() : "";
}

}  // namespace

bool same_credentials_settings(const config::ProfileConfig& a, const config::ProfileConfig& b) {
    // Every field that goes into prepare_session(): the identity and its secrets, and CreateSession's.
    const auto fields = [](const config::ProfileConfig& p) {
        return std::tie(p.trust_anchor_arn, p.profile_arn, p.role_arn, p.region, p.endpoint,
                        p.use_fips_endpoint, p.ca_bundle, p.no_verify_ssl, p.session_duration,
                        p.role_session_name);
    };
    return a.identity.same_as(b.identity) && fields(a) == fields(b);
}

bool same_surface_settings(const config::ProfileConfig& a, const config::ProfileConfig& b) {
    const auto fields = [](const config::ProfileConfig& p) {
        return std::tie(p.ecs_path, p.ecs_token_file, p.credentials_file_profile, p.credentials_file);
    };
    return fields(a) == fields(b) && addresses(a.imds_listen) == addresses(b.imds_listen);
}

ReloadPlan plan_reload(const config::AgentConfig& in_service, const config::AgentConfig& next) {
    ReloadPlan plan;
    for (const auto& profile : next.profiles) {
        const config::ProfileConfig* old = in_service.find_profile(profile.name);
        if (old == nullptr) {
            plan.added.push_back(profile.name);
            continue;
        }
        const bool credentials = same_credentials_settings(*old, profile);
        const bool surfaces = same_surface_settings(*old, profile);
        if (!credentials) {
            plan.credentials_changed.push_back(profile.name);
        }
        if (!surfaces) {
            plan.surfaces_changed.push_back(profile.name);
            if (addresses(old->imds_listen) != addresses(profile.imds_listen)) {
                plan.listeners_changed.push_back(profile.name);
            }
        }
        if (credentials && surfaces) {
            plan.unchanged.push_back(profile.name);
        }
    }
    for (const auto& profile : in_service.profiles) {
        if (next.find_profile(profile.name) == nullptr) {
            plan.removed.push_back(profile.name);
        }
    }
    const auto& a = in_service.agent;
    const auto& b = next.agent;
    if (a.socket_path != b.socket_path || a.socket_mode != b.socket_mode ||
        a.socket_group != b.socket_group) {
        plan.restart_needed.push_back("socket_path");
    }
    if (optional_address(a.ecs_listen) != optional_address(b.ecs_listen)) {
        plan.restart_needed.push_back("ecs_listen");
    }
    if (optional_address(a.health_listen) != optional_address(b.health_listen)) {
        plan.restart_needed.push_back("health_listen");
    }
    return plan;
}

}  // namespace rad::daemon
