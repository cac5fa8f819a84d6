#pragma once
// The commands that involve the long-running agent: `serve` (run it), `update` (keep a credentials-file
// profile fresh: the agent with that one surface, or one write with --once), `status` (ask it), and
// `credential-process --profile` (the fast path through its socket).

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "config/config.hpp"
#include "daemon/cli/one_shot_commands.hpp"
#include "daemon/fastpath/fast_path.hpp"

namespace rad::cli {

struct ServeOptions {
    std::string config_path;        // --config; empty: flags, else the default file
    CredentialOptions credentials;  // the reference helper's flags, for a single-profile agent
    bool credentials_given = false;
    int port = 9911;
    int hop_limit = 1;
    std::string socket_path;  // --socket: also serve the fast path (flags mode)
    std::string log_level;    // --log-level; empty: the file's, else info
    std::string log_format;   // --log-format; empty: the file's, else text
};

struct UpdateOptions {
    CredentialOptions credentials;
    std::string profile = "default";  // the section of the credentials file
    bool once = false;
    std::string log_level = "info";
};

struct StatusOptions {
    std::string config_path;
    std::string socket_path;
    bool json = false;
};

struct RefreshOptions {
    std::string config_path;
    std::string socket_path;
    std::vector<std::string> profiles;  // empty: every profile the agent serves
};

// update_agent_config is the agent that the continuous `update` runs: the profile of the flags, named after
// and written to section --profile of the default credentials file, and no other surface (no IMDS, no
// container endpoint, no Unix socket).
[[nodiscard]] Result<config::AgentConfig> update_agent_config(const UpdateOptions& options);

int run_serve(ServeOptions options);
int run_update(UpdateOptions options);
[[nodiscard]] Result<void> run_fast_path(const fastpath::FastPathOptions& options,
                                         std::FILE* out,
                                         Logger& log);
[[nodiscard]] Result<void> run_status(const StatusOptions& options, std::FILE* out);
// run_refresh asks the running agent to refresh the named profiles now, one after the other, and prints one
// line per profile; the first failure's Error is returned (its exit code), after every profile was tried.
[[nodiscard]] Result<void> run_refresh(const RefreshOptions& options, std::FILE* out);

struct ReloadOptions {
    std::string config_path;
    std::string socket_path;
};
// run_reload asks the running agent to read its configuration again and waits for its answer: one line on
// `out` saying what changed, or the agent's reason for refusing the file (config_invalid, exit 78; the agent
// keeps the configuration in use). systemd's ExecReload= runs it, so that `systemctl reload` fails when the
// edited file is refused.
[[nodiscard]] Result<void> run_reload(const ReloadOptions& options, std::FILE* out);

}  // namespace rad::cli
