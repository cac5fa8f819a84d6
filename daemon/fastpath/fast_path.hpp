#pragma once
// The credential_process fast path as a client of the running agent: `credential-process --profile NAME`
// asks the agent on its Unix socket and prints what it answers. Nothing here links OpenSSL, Asio or CLI11:
// the small `rolesanywhere-agent` executable (fast_path_main.cpp) runs this code and nothing else, and hands
// every other command line — and signing by itself when no agent answers — to the full program
// (rolesanywhere-agent-core), which runs the same code for the same command line.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "common/error.hpp"
#include "common/secret.hpp"
#include "config/config.hpp"

namespace rad::fastpath {

struct FastPathOptions {
    std::string profile;       // --profile
    std::string config_path;   // --config (default /etc/rolesanywhere-agent/config.toml)
    std::string socket_path;   // --socket (default: the config's, else /run/rolesanywhere-agent/agent.sock)
    bool no_fallback = false;  // --no-fallback: exit 69 instead of signing here when no agent answers
    int min_lifetime_seconds = -1;  // -1: the agent's default (900 s, at most 40 % of the issued lifetime)
    double timeout_seconds = 20;    // credential-process --timeout
    bool debug = false;             // --debug: diagnostics on stderr
};

// FastPathFlag describes a flag that only `credential-process --profile` takes, for the full program's
// --help (cli.cpp declares them from this table); parse_fast_path_arguments parses them, and --timeout and
// --debug, which credential-process also takes without --profile.
struct FastPathFlag {
    const char* name;
    bool takes_value;
    const char* help;
};
inline constexpr FastPathFlag kFastPathFlags[] = {
    {"--profile", true,
     "Ask the running agent for this profile of its configuration (fast path); sign from the same "
     "configuration when no agent runs"},
    {"--config", true, "Configuration file for --profile (default /etc/rolesanywhere-agent/config.toml)"},
    {"--socket", true, "The agent's Unix socket for --profile"},
    {"--no-fallback", false, "With --profile: fail (exit 69) instead of signing here when no agent answers"},
    {"--min-lifetime", true,
     "With --profile: seconds of life the credentials must have left (default: 900, at most 40 % of the "
     "lifetime the service issued)"},
};

// ConfigRead is the agent's configuration file as its clients (the fast path, `status`, `refresh`) read it:
// to find the agent's socket. The identities' files are neither resolved nor looked at
// (config::FileChecks::none): the agent has them. Signing with no agent reads the file again, for the one
// profile it signs with (fallback_config).
struct ConfigRead {
    std::string path;                           // --config, else the default path
    std::optional<config::AgentConfig> config;  // set when it loads
    std::optional<Error> error;                 // set when it does not (a missing default file is no error)
    // With `error`: text_read when the file itself was accepted (a regular file, not writable by others; see
    // config::read_config_file) and only its content does not validate, as after an edit the running agent
    // has not loaded; then named_socket is the socket it still names (config::read_socket_path), nullopt
    // when the text cannot tell. A file refused as such names nothing: whoever can write it could point
    // clients at a socket of their own.
    bool text_read = false;
    std::optional<std::filesystem::path> named_socket;
};

// read_agent_config reads the configuration named by --config (`flag`), else the default file: an explicit
// file that does not exist is an error; a missing default file is not.
[[nodiscard]] ConfigRead read_agent_config(const std::string& flag);

// fallback_config reads the configuration to sign with `profile` by itself: that profile's files resolved and
// checked, no other's.
[[nodiscard]] Result<config::AgentConfig> fallback_config(const std::string& config_path,
                                                          const std::string& profile);

// AgentConsultation is one fast-path exchange: the agent's reply, or why there is none, and the
// configuration, which is read only when it matters (no --socket, or signing by ourselves next).
struct AgentConsultation {
    Result<Secret> reply = make_error(Errc::agent_unavailable, "not asked");
    std::filesystem::path socket;
    bool config_read = false;
    ConfigRead file;
};

// environment_from_process is what the configuration may refer to ($CREDENTIALS_DIRECTORY).
config::ConfigEnvironment environment_from_process();
// config_path_or_default is --config, else /etc/rolesanywhere-agent/config.toml.
std::string config_path_or_default(const std::string& flag);
// socket_for picks the agent socket: --socket, else the configuration's, else the default path.
std::filesystem::path socket_for(const std::string& socket_flag,
                                 const std::optional<config::AgentConfig>& config);

// read_config_once reads the configuration into `c.file` the first time it is called.
void read_config_once(const FastPathOptions& options, AgentConsultation& c);

// agent_runs_with asks the agent on `socket` for its status and is true when it names `config_path` (made
// absolute) as the configuration file it runs with.
[[nodiscard]] bool agent_runs_with(const std::filesystem::path& socket,
                                   const std::string& config_path,
                                   std::chrono::milliseconds timeout);

// consult_agent validates the options and asks the agent. The result is final — credentials to print, or
// the error to report — unless it is agent_unavailable without --no-fallback: then the caller signs by
// itself (settled() is false). A configuration that does not load is the answer only when no agent answers
// on the socket it still names (ConfigRead::named_socket): editing the file must not take the
// credentials of a running agent away from its clients before it is reloaded. When the text cannot tell the
// socket, the default socket is asked, and its agent trusted only if it runs with this very file
// (agent_runs_with). A file refused as such is the answer at once.
[[nodiscard]] AgentConsultation consult_agent(const FastPathOptions& options);
[[nodiscard]] bool settled(const FastPathOptions& options, const AgentConsultation& c) noexcept;

// parse_fast_path_arguments is the one parser of a `credential-process --profile NAME` command line, in the
// front executable and the full program alike. nullopt: not such a command line (another command, no
// --profile, or a request for help), for the full program's parser. Otherwise the options, or a usage
// error naming the flag: a flag the fast path does not take (--profile signs with the profile's own
// settings), one given twice, a missing or malformed value. Values are `--flag value` or `--flag=value`.
[[nodiscard]] std::optional<Result<FastPathOptions>> parse_fast_path_arguments(int argc,
                                                                               const char* const* argv);

// print_agent_answer writes the credentials of a settled consultation to `out`, or returns its error.
[[nodiscard]] Result<void> print_agent_answer(const AgentConsultation& c, std::FILE* out);

}  // namespace rad::fastpath
