#pragma once
// What a reload (SIGHUP) changes, as a pure function of the configuration in service and the one just read:
// which profiles start, stop, need new credentials, or only serve differently, and which agent-wide settings
// apply at once or need a restart. Each setting's class comes from its description (config/settings.hpp),
// so a new key is classified where it is described. The agent then refreshes only the profiles whose
// credentials depend on what changed, so that configuration management rewriting files across a fleet does
// not cost hosts × profiles CreateSession calls. Tested as a table (reload_plan_test.cpp).

#include <string>
#include <vector>

#include "config/config.hpp"

namespace rad::policy {

struct ReloadPlan {
    std::vector<std::string> added;    // new profiles: start, with a refresh
    std::vector<std::string> removed;  // gone: stop serving, drop their credentials
    // credentials_changed: the identity or a CreateSession setting changed (Reload::refresh_profile: the
    // certificate, key and their secrets, ARNs, region, endpoint, TLS settings, session duration or name):
    // prepare the identity again and refresh now.
    std::vector<std::string> credentials_changed;
    // surfaces_changed: how the credentials are served changed (Reload::at_once or reopen_listener of a
    // profile: IMDS listeners, ECS path or token file, credentials-file section or path): no refresh.
    std::vector<std::string> surfaces_changed;
    // listeners_changed: the subset of surfaces_changed whose IMDS listeners must be reopened.
    std::vector<std::string> listeners_changed;
    std::vector<std::string> unchanged;
    // applied_at_once names the agent-wide settings (keys of [agent]) whose new values apply now (log_level,
    // allowed_uids, allow_imdsv1, hop_limit, max_connections, refresh_window, ...): the agent hands them to
    // what uses them (the logger, the socket's access check, the profiles' caches, the HTTP servers).
    std::vector<std::string> applied_at_once;
    // restart_needed names agent-wide settings that take effect only at the next start (the Unix socket and
    // the ECS and health listeners are opened once, the log format is fixed at start, the start-up jitter
    // delays only the first CreateSession); the running agent keeps their old values
    // (settings_in_effect()).
    std::vector<std::string> restart_needed;
};

// same_credentials_settings: a and b would fetch the same credentials from the same identity.
bool same_credentials_settings(const config::ProfileConfig& a, const config::ProfileConfig& b);

// same_surface_settings: a and b are served the same way.
bool same_surface_settings(const config::ProfileConfig& a, const config::ProfileConfig& b);

// plan_reload compares the profiles of `in_service` and `next` by name (the order of `next` is kept), and
// their [agent] tables setting by setting (the order of the description).
ReloadPlan plan_reload(const config::AgentConfig& in_service, const config::AgentConfig& next);

// settings_in_effect is `next` with every setting that needs a restart kept at its value `in_service`:
// what the running agent applies after a reload.
config::AgentSettings settings_in_effect(const config::AgentSettings& in_service, config::AgentSettings next);

}  // namespace rad::policy
