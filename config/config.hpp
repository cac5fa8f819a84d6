#pragma once
// The agent's configuration file (TOML): one [agent] table of global settings and one [profiles.NAME] table
// per identity; every key is described once, in settings.hpp. load_config() checks everything that can be
// checked without the network or the key material: syntax, unknown keys, types, ranges, addresses, that
// named files exist, and that the file itself is not writable by group or others. Each error is one line
// "FILE:LINE: what is wrong" (Errc::config_invalid, exit 78), of the earliest line at fault. Semantic checks
// that need the signer (ARN syntax, region agreement) are the daemon's, which uses line_of() to point at the
// offending key.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/log.hpp"
#include "config/credential_sources.hpp"
#include "config/identity_spec.hpp"

namespace rad::config {

// kDefaultConfigPath is where `serve` looks when --config is not given.
inline constexpr std::string_view kDefaultConfigPath = "/etc/rolesanywhere-agent/config.toml";

// ListenAddress is "127.0.0.1:9911", "[::1]:9911" or "localhost:9911".
struct ListenAddress {
    std::string host;  // IPv6 without brackets
    std::uint16_t port = 0;
    std::string to_string() const;
    bool operator==(const ListenAddress&) const = default;
};

// parse_listen_address parses "host:port" (port 0..65535, IPv6 in brackets).
[[nodiscard]] Result<ListenAddress> parse_listen_address(std::string_view text);

// same_listen_address says whether a socket bound to `bound` (an IP literal, as getsockname reports it)
// listens where `configured` says: the same port (a configured port 0 matches any) and the same IP,
// IPv4-mapped IPv6 addresses equal to their IPv4 form; a configured "localhost" matches 127.0.0.1 and ::1.
bool same_listen_address(const ListenAddress& configured, const ListenAddress& bound);

// Source maps a key of the file to the line it was set on, for messages.
struct Source {
    std::string file;
    std::map<std::string, int, std::less<>> lines;  // "key" -> line
    int table_line = 0;                             // the line of the [table] header
    // where is "FILE:LINE" of `key`, or of the table header when the key was not set.
    std::string where(std::string_view key) const;
};

struct ProfileConfig {
    std::string name;
    // Identity. Its paths may be "credential:NAME" (systemd LoadCredential=): resolved against
    // $CREDENTIALS_DIRECTORY at load time, so that they always hold real paths ("pkcs11:" URIs and TPM
    // "handle:"s are kept verbatim). The secret values are never read from the file.
    IdentitySpec identity;
    // CreateSession.
    std::string trust_anchor_arn, profile_arn, role_arn;
    std::string region, endpoint;
    bool use_fips_endpoint = false;
    std::filesystem::path ca_bundle;
    bool no_verify_ssl = false;
    int session_duration = 3600;
    std::string role_session_name;
    // connect_timeout_seconds and timeout_seconds: the command line's --connect-timeout and --timeout (never
    // read from the file).
    double connect_timeout_seconds = 5, timeout_seconds = 20;
    // Surfaces.
    std::vector<ListenAddress> imds_listen;  // empty: not served over IMDS
    std::string ecs_path;                    // empty: not served over the container endpoint
    std::filesystem::path ecs_token_file;
    std::string credentials_file_profile;    // empty: no credentials-file surface
    std::filesystem::path credentials_file;  // empty: $AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials
    // The credential: paths above whose source the pre-start check recorded (credential_sources.hpp): for
    // refuse_unsafe_sources and name_credential_sources.
    std::vector<CredentialCopy> credential_copies;
    Source source;
};

using LogFormat = rad::LogFormat;
using LogLevel = rad::LogLevel;

struct AgentSettings {
    LogLevel log_level = LogLevel::info;
    LogFormat log_format = LogFormat::text;
    // The credential_process fast path. Empty path: no Unix socket.
    std::filesystem::path socket_path = "/run/rolesanywhere-agent/agent.sock";
    unsigned socket_mode = 0660;
    std::string socket_group;
    std::vector<std::uint32_t> allowed_uids;  // peers allowed besides the agent's own uid and root
    std::vector<std::uint32_t> allowed_gids;
    std::optional<ListenAddress> ecs_listen;     // needed when a profile sets ecs_path
    std::optional<ListenAddress> health_listen;  // /healthz and /metrics; off when unset
    bool allow_imdsv1 = false;
    int hop_limit = 1;  // IP TTL / hop limit of IMDS and ECS responses
    int max_connections = 256;
    // Refresh: a point in [refresh_window_min, refresh_window_max] of the credentials' lifetime.
    double refresh_window_min = 0.5, refresh_window_max = 0.6;
    int retry_cap_seconds = 300;
    // startup_jitter_seconds delays each profile's first CreateSession by a random 0..N s, so that a fleet
    // restarting together does not herd on the account's CreateSession quota (tools/fleet-sim sizes it).
    int startup_jitter_seconds = 0;
    Source source;
};

struct AgentConfig {
    std::filesystem::path path;
    AgentSettings agent;
    std::vector<ProfileConfig> profiles;  // in file order
    const ProfileConfig* find_profile(std::string_view name) const;
};

// FileChecks says whose files parse_config resolves ("credential:NAME" against $CREDENTIALS_DIRECTORY) and
// checks (a regular file, not writable by group or others): every profile's for the agent, which loads
// them all; none for a client of the running agent (`status`, `refresh`, the fast path asking it), which
// needs only the socket; one profile's for a client signing by itself with that profile. Paths that are
// not resolved are kept as written.
enum class FileChecks { every_profile, none, one_profile };

// ConfigEnvironment is what load_config reads besides the file: $CREDENTIALS_DIRECTORY (systemd), where the
// credentials in it were copied from (the pre-start check's record, credential_sources.hpp), and which files
// are needed.
struct ConfigEnvironment {
    std::optional<std::filesystem::path> credentials_directory;
    // check_files: verify that the resolved files exist (off for unit tests of the pure parser).
    bool check_files = true;
    FileChecks file_checks = FileChecks::every_profile;
    std::string checked_profile;  // the profile of FileChecks::one_profile
    std::vector<CredentialSource> credential_sources{};
    // Why that record could not be read (load_config then fails with it): it names a file of root's.
    std::optional<Error> credential_sources_error{};
};

// parse_config parses TOML text; `origin` is the file name used in messages.
[[nodiscard]] Result<AgentConfig> parse_config(std::string_view text,
                                               const std::filesystem::path& origin,
                                               const ConfigEnvironment& environment);

// read_socket_path is the [agent] table's socket_path as TOML text sets it, read by the same parser as
// parse_config but without checking anything else, for the agent's clients to find a running agent while
// its configuration file has a mistake: the path ("" for no socket), the default when the text does not set
// it, nullopt when the text cannot tell (it is not TOML, or the value is not an absolute path or "").
[[nodiscard]] std::optional<std::filesystem::path> read_socket_path(std::string_view text);

// ConfigFile is a configuration file's bytes.
struct ConfigFile {
    std::string text;
};

// read_config_file reads `path` as load_config does: a regular file, not writable by group or others, at
// most 1 MiB; errors are config_invalid.
[[nodiscard]] Result<ConfigFile> read_config_file(const std::filesystem::path& path);

// load_config reads `path` (refusing a file writable by group or others, or not a regular file) and parses
// it.
[[nodiscard]] Result<AgentConfig> load_config(const std::filesystem::path& path,
                                              const ConfigEnvironment& environment);

}  // namespace rad::config
