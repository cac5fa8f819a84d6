// SIGHUP: the configuration read again, and only what changed applied.

#include "daemon/agent/agent_runtime.hpp"

namespace rad::daemon::agent_detail {

// reload re-reads the configuration (or, for a flag-built agent, just re-checks the identity files).
// Profiles that were added start; removed ones stop; changed ones pick up their new settings at a refresh
// started now. Changes to the agent-wide listeners (ECS address, socket) need a restart and are reported
// as such.
void Agent::reload() {
    notify_systemd("RELOADING=1");
    do_reload();
    notify_systemd("READY=1");
    notify_status();
}

void Agent::do_reload() {
    log_.info("reloading");
    if (options_.config_path.empty()) {
        // Flags, not a file: only the identity files can have changed.
        for (auto& profile : profiles_) {
            refresh_if_rotated(profile);
        }
        return;
    }
    auto loaded = config::load_config(options_.config_path, options_.environment);
    if (!loaded) {
        log_.error("reload_failed", {{"error", loaded.error().message}});
        return;
    }
    config::AgentConfig next = std::move(*loaded);
    for (const auto& cfg : next.profiles) {
        if (auto r = check_profile_settings(cfg); !r) {
            log_.error("reload_failed", {{"error", r.error().message}});
            return;
        }
    }
    const ReloadPlan plan = plan_reload(options_.config, next);
    if (!plan.restart_needed.empty()) {
        std::string settings;
        for (const auto& name : plan.restart_needed) {
            settings += (settings.empty() ? "" : ",") + name;
        }
        log_.warning("reload_partial", {{"settings", settings}, {"reason", "take effect at the next start"}});
        const auto& old_agent = options_.config.agent;
        next.agent.socket_path = old_agent.socket_path;
        next.agent.socket_mode = old_agent.socket_mode;
        next.agent.socket_group = old_agent.socket_group;
        next.agent.ecs_listen = old_agent.ecs_listen;
        next.agent.health_listen = old_agent.health_listen;
    }
    const auto listed = [](const std::vector<std::string>& names, const std::string& name) {
        return std::find(names.begin(), names.end(), name) != names.end();
    };
    log_.set_level(next.agent.log_level);
    std::vector<std::shared_ptr<Profile>> kept;
    std::vector<std::pair<std::shared_ptr<Profile>, std::optional<RefreshReason>>> refreshes;
    for (const auto& cfg : next.profiles) {
        std::shared_ptr<Profile> profile = find(cfg.name);
        std::optional<RefreshReason> refresh;
        if (profile) {
            // The runtime stays (its credentials remain in service until replaced); its settings change.
            const bool token_changed = cfg.ecs_token_file != profile->config.ecs_token_file;
            profile->config = cfg;
            profile->worker_config = std::make_shared<const config::ProfileConfig>(cfg);
            std::tie(profile->imds.role_name, profile->account_id) = role_name_and_account(cfg.role_arn);
            profile->imds.allow_imdsv1 = next.agent.allow_imdsv1;
            profile->cache.set_settings(Profile::settings_from(next.agent));
            if (listed(plan.credentials_changed, cfg.name)) {
                profile->settings_changed = true;  // the identity is prepared again
                refresh = RefreshReason::reload;
            }
            if (listed(plan.listeners_changed, cfg.name)) {
                for (auto& server : profile->imds_servers) {
                    server->stop_accepting();
                }
                profile->imds_servers.clear();
                profile->imds_addresses.clear();
                profile->listeners_pending = true;
            }
            if (token_changed) {
                profile->ecs_token = Secret();
            }
        } else {
            profile = std::make_shared<Profile>(io_, cfg, next.agent, SteadyClock::now());
            profile->settings_changed = true;
            profile->listeners_pending = true;
            refresh = RefreshReason::reload;
        }
        if (!profile->config.ecs_path.empty() && profile->ecs_token.empty()) {
            load_ecs_token(profile);  // a failure is the ECS surface's, retried; the profile stays
        }
        refreshes.emplace_back(profile, refresh);
        kept.push_back(std::move(profile));
    }
    for (auto& old : profiles_) {
        if (std::find(kept.begin(), kept.end(), old) == kept.end()) {
            old->timer.cancel();
            old->surface_retry.cancel();
            for (auto& server : old->imds_servers) {
                server->stop_accepting();
            }
            old->waiters.clear();
            log_.info("profile_removed", {{"profile", old->config.name}});
        }
    }
    profiles_ = std::move(kept);
    options_.config = std::move(next);
    for (auto& profile : profiles_) {
        if (profile->listeners_pending) {
            profile->listeners_pending = false;
            open_imds_or_record(profile);
        }
    }
    // Only what the reload changed is refreshed; an unchanged profile is refreshed only if its identity
    // files changed on disk (a renewal that SIGHUP announces).
    std::size_t refreshed = 0;
    for (auto& [profile, reason] : refreshes) {
        if (reason) {
            refresh_now(profile, *reason);
            ++refreshed;
        } else if (refresh_if_rotated(profile)) {
            ++refreshed;
        }
    }
    store_handover();
    log_.info("reloaded", {{"profiles", profiles_.size()},
                           {"added", plan.added.size()},
                           {"removed", plan.removed.size()},
                           {"refreshed", refreshed}});
}

}  // namespace rad::daemon::agent_detail
