#include "daemon/policy/reload_plan.hpp"

#include "config/settings.hpp"

namespace rad::policy {

namespace {

using config::Reload;

// differs: some setting of the profile whose reload class is one of `classes` has changed.
bool differs(const config::ProfileConfig& a,
             const config::ProfileConfig& b,
             std::initializer_list<Reload> classes) {
    for (const auto& setting : config::profile_settings()) {
        for (const Reload reload : classes) {
            if (setting.reload == reload && !config::same_value(setting, a, b)) {
                return true;
            }
        }
    }
    return false;
}

}  // namespace

bool same_credentials_settings(const config::ProfileConfig& a, const config::ProfileConfig& b) {
    // The secrets the command line hands over are no settings of the file; IdentitySpec::same_as compares
    // them along with the identity's settings.
    return a.identity.same_as(b.identity) && !differs(a, b, {Reload::refresh_profile});
}

bool same_surface_settings(const config::ProfileConfig& a, const config::ProfileConfig& b) {
    return !differs(a, b, {Reload::at_once, Reload::reopen_listener});
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
            if (differs(*old, profile, {Reload::reopen_listener})) {
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
    for (const auto& setting : config::agent_settings()) {
        if (config::same_value(setting, in_service.agent, next.agent)) {
            continue;
        }
        auto& list = setting.reload == Reload::restart ? plan.restart_needed : plan.applied_at_once;
        list.emplace_back(setting.key);
    }
    return plan;
}

config::AgentSettings settings_in_effect(const config::AgentSettings& in_service,
                                         config::AgentSettings next) {
    for (const auto& setting : config::agent_settings()) {
        if (setting.reload == Reload::restart) {
            config::copy_value(setting, in_service, next);
        }
    }
    return next;
}

}  // namespace rad::policy
