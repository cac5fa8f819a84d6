#pragma once
// Where the service's LoadCredential= copies come from. systemd copies each source file, mode 0400 and owned
// by the service's user, into $CREDENTIALS_DIRECTORY, so the agent reading a copy can neither tell that the
// source in /etc is readable by every user nor name the file the operator knows. A privileged pre-start check
// (`rolesanywhere-agent check-credential-sources`, ExecStartPre=+ in the unit) records, for each
// LoadCredential= of the unit, its source and whether that source passes the key-file rules, in a small file
// the agent reads when it loads its configuration (ConfigEnvironment::credential_sources): credential: paths
// then carry their source (ProfileConfig::credential_copies), secrets whose source fails the rules are
// refused (refuse_unsafe_sources) and messages name both files (name_credential_sources).
//
// The file (kCredentialSourcesHeader, then one line per credential; fields separated by a tab; a field never
// holds a tab, CR, LF or NUL, which the writer turns into '?'):
//     NAME <TAB> SOURCE <TAB> REFUSAL <TAB> SHARED_REFUSAL
// REFUSAL is why SOURCE fails the rules for a private key, passphrase, PIN or TPM password (empty: it
// passes); SHARED_REFUSAL the same for a secret its group may read (an ECS token file). It is written by root
// and read only when owned by root and writable by nobody else.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace rad::config {

inline constexpr std::string_view kCredentialSourcesHeader = "rolesanywhere-agent credential sources 1";
// The variable naming the file for the agent and its commands (set by the unit).
inline constexpr const char* kCredentialSourcesVariable = "ROLESANYWHERE_AGENT_CREDENTIAL_SOURCES";

struct CredentialSource {
    std::string name;              // the credential's name, as in credential:NAME
    std::filesystem::path source;  // the file LoadCredential= copies
    std::string refusal;           // empty: the source passes the rules for a secret
    std::string shared_refusal;    // empty: the source passes the rules for a secret shared with its group
};

// CredentialCopy is one credential: path of a profile, with where systemd copied it from.
struct CredentialCopy {
    std::string key;             // the configuration key: "private_key", "ecs_token_file", ...
    std::filesystem::path copy;  // $CREDENTIALS_DIRECTORY/NAME, what the key resolved to
    CredentialSource source;
};

// format_credential_sources writes the file's text.
std::string format_credential_sources(const std::vector<CredentialSource>& sources);

// parse_credential_sources reads the file's text; errors are config_invalid naming `origin` and the line.
[[nodiscard]] Result<std::vector<CredentialSource>> parse_credential_sources(
    std::string_view text, const std::filesystem::path& origin);

// read_credential_sources reads the file at `path`: absent is an empty list (no pre-start check ran); a file
// not owned by root or writable by group or others, or one that does not parse, is config_invalid.
[[nodiscard]] Result<std::vector<CredentialSource>> read_credential_sources(
    const std::filesystem::path& path);

// refuse_unsafe_sources: the first copy used as a secret whose source fails the rules, as unsafe_permissions
// naming the key, the copy and the source; or nothing.
[[nodiscard]] Result<void> refuse_unsafe_sources(const std::vector<CredentialCopy>& copies);

// name_credential_sources adds " (LoadCredential= copy of SOURCE)" after each copy's path in `message`, so
// that an error about a copy also names the file the operator knows.
std::string name_credential_sources(std::string message, const std::vector<CredentialCopy>& copies);

}  // namespace rad::config
