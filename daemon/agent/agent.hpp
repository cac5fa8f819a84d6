#pragma once
// The long-running agent (`serve`): one engine per profile on one event loop, refreshed in the background,
// served over IMDS, the container endpoint, the Unix socket and the credentials file. This header is free of
// Asio: the loop, its timers and sockets live in agent.cpp and the parts it wires together.

#include <filesystem>
#include <optional>

#include "common/log.hpp"
#include "config/config.hpp"

namespace rad::agent {

struct AgentOptions {
    config::AgentConfig config;
    // config_path: where SIGHUP re-reads the configuration from; empty when it came from command-line flags
    // (SIGHUP then re-loads the certificate and key only).
    std::filesystem::path config_path;
    config::ConfigEnvironment environment;
};

// run_agent runs until SIGTERM or SIGINT and returns the process exit status: 0 after a clean stop; 78 when
// a listener or a file the surfaces write cannot be opened; when no profile can serve anything (none can
// load its identity, and none has credentials handed over by a previous process), the sysexits code of the
// first profile's failure, 78 for everything the operator must fix (see startup_exit_code). A profile that
// cannot load while another can does not stop the agent: it starts degraded and reports that profile.
int run_agent(AgentOptions options, Logger& log);

// check_profile_settings applies the signer's rules (ARN syntax, services, trust anchor and profile in one
// region, endpoint URL) to a profile of the configuration file; errors are config_invalid at FILE:LINE.
[[nodiscard]] Result<void> check_profile_settings(const config::ProfileConfig& profile);

}  // namespace rad::agent
