#pragma once
// What a reload (SIGHUP) changes, as a pure function of the configuration in service and the one just read:
// which profiles start, stop, need new credentials, or only serve differently. The agent then refreshes only
// the profiles whose credentials depend on what changed, so that configuration management rewriting files
// across a fleet does not cost hosts × profiles CreateSession calls. Tested as a table
// (reload_plan_test.cpp).

#include <string>
#include <vector>

#include "config/config.hpp"

namespace rad::daemon {

struct ReloadPlan {
    std::vector<std::string> added;    // new profiles: start, with a refresh
    std::vector<std::string> removed;  // gone: stop serving, drop their credentials
    // credentials_changed: the identity or a CreateSession setting changed (certificate, key and their
    // secrets, ARNs, region, endpoint, TLS settings, session duration or name): prepare the identity again
    // and refresh now.
    std::vector<std::string> credentials_changed;
    // surfaces_changed: only how the credentials are served changed (IMDS listeners, ECS path or token file,
    // credentials-file section or path): no refresh.
    std::vector<std::string> surfaces_changed;
    // listeners_changed: the subset of surfaces_changed whose IMDS listeners must be reopened.
    std::vector<std::string> listeners_changed;
    std::vector<std::string> unchanged;
    // restart_needed names agent-wide settings that take effect only at the next start (the Unix socket and
    // the ECS and health listeners are opened once); the running agent keeps their old values.
    std::vector<std::string> restart_needed;
};

// same_credentials_settings: a and b would fetch the same credentials from the same identity.
bool same_credentials_settings(const config::ProfileConfig& a, const config::ProfileConfig& b);

// same_surface_settings: a and b are served the same way.
bool same_surface_settings(const config::ProfileConfig& a, const config::ProfileConfig& b);

// plan_reload compares the profiles of `in_service` and `next` by name (the order of `next` is kept).
ReloadPlan plan_reload(const config::AgentConfig& in_service, const config::AgentConfig& next);

}  // namespace rad::daemon
