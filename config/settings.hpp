#pragma once
// The one description of every setting of the configuration file: its table and key, what kind of value it
// holds (and its range), its default, what a reload does when it changes, and where the value lives in
// AgentSettings or ProfileConfig. Everything that needs the list of settings takes it from here:
//   - the parser (config.cpp) reads each table through it, and refuses any other key;
//   - plan_reload (daemon/policy/reload_plan.cpp) classifies a reload's changes by their Reload class;
//   - IdentitySpec::same_as compares the identity's settings, identity_files() lists its files, and the
//     handover's settings key (daemon/systemd/handover.cpp) is made of the settings marked credentials_key;
//   - tests check config/example.toml and the reload table of systemd/README.md against it.
// Adding a key is a field in config.hpp and a row in settings.cpp (then example.toml and, for the reload
// table, systemd/README.md, which the tests hold to it); its parsing, comparison and reload follow.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/config.hpp"

namespace rad::config {

// Reload is what the agent does when a setting's value changes at a reload (SIGHUP).
enum class Reload {
    at_once,          // applied at once, without a CreateSession
    reopen_listener,  // applied at once by reopening the profile's IMDS listeners (imds_listen)
    refresh_profile,  // the profile's credentials depend on it: its identity is prepared again and refreshed
    restart,          // takes effect at the next start; the running agent keeps the value it started with
};

// ValueKind is what the file holds for a setting, and so how it is read and checked.
enum class ValueKind {
    text,                // a string
    flag,                // true or false
    integer,             // an integer from `min` to `max`
    file,                // a path that must name a regular file not writable by others, or credential:NAME
    new_file,            // a path the agent may create, or credential:NAME
    certificate_source,  // a file (as `file`) or a "pkcs11:" URI
    key_source,          // a file (as `file`), a "pkcs11:" URI or a TPM "handle:"
    listen,              // "HOST:PORT"
    listen_list,         // "HOST:PORT" or an array of them
    ids,                 // an array of numeric uids or gids
    log_level,           // "debug", "info", "warning" or "error"
    log_format,          // "text" or "json"
    octal_mode,          // a permission mode written as an octal string ("0660") that gives others nothing
    socket_path,         // an absolute path, or "" for none
    url_path,            // an absolute URL path ("/credentials/web")
    fraction_window,     // [MIN, MAX] fractions with 0.1 <= MIN <= MAX <= 0.9
};

// Roles of a setting besides being a value of its table (a bit set).
namespace role {
inline constexpr unsigned required = 1;         // a profile must set it, to a non-empty value
inline constexpr unsigned identity_file = 2;    // a file the identity is loaded from (watched for renewals)
inline constexpr unsigned credentials_key = 4;  // says which credentials the profile gets, besides the
                                                // identity (a handover is adopted only if they are equal)
}  // namespace role

// FractionPair is where a fraction_window lives: two fields.
struct FractionPair {
    double AgentSettings::*low;
    double AgentSettings::*high;
};

// Where a setting's value lives: a member of its table's struct (or of the profile's IdentitySpec).
using AgentField = std::variant<bool AgentSettings::*,
                                int AgentSettings::*,
                                unsigned AgentSettings::*,
                                std::string AgentSettings::*,
                                std::filesystem::path AgentSettings::*,
                                std::vector<std::uint32_t> AgentSettings::*,
                                std::optional<ListenAddress> AgentSettings::*,
                                LogLevel AgentSettings::*,
                                LogFormat AgentSettings::*,
                                FractionPair>;
using ProfileField = std::variant<bool ProfileConfig::*,
                                  int ProfileConfig::*,
                                  std::string ProfileConfig::*,
                                  std::filesystem::path ProfileConfig::*,
                                  std::vector<ListenAddress> ProfileConfig::*,
                                  bool IdentitySpec::*,
                                  std::string IdentitySpec::*,
                                  std::filesystem::path IdentitySpec::*>;

template <class Field>
struct Setting {
    std::string_view key;
    ValueKind kind;
    long long min = 0, max = 0;      // the range of an integer
    std::string_view default_value;  // as TOML writes it ("1", "\"info\"", "[0.5, 0.6]"); "" when unset means
                                     // off, none, or derived from other settings
    Reload reload;
    unsigned roles = 0;
    Field field;
};

// AgentSetting is a key of [agent]; ProfileSetting a key of [profiles.NAME].
using AgentSetting = Setting<AgentField>;
using ProfileSetting = Setting<ProfileField>;

std::span<const AgentSetting> agent_settings();
std::span<const ProfileSetting> profile_settings();

// same_value: the setting has the same value in a and b.
bool same_value(const AgentSetting& setting, const AgentSettings& a, const AgentSettings& b);
bool same_value(const ProfileSetting& setting, const ProfileConfig& a, const ProfileConfig& b);

// is_identity: the setting is part of the profile's IdentitySpec.
bool is_identity(const ProfileSetting& setting);
// same_identity_value: an identity setting has the same value in a and b (false for other settings).
bool same_identity_value(const ProfileSetting& setting, const IdentitySpec& a, const IdentitySpec& b);

// copy_value sets the setting's value in `to` to its value in `from`.
void copy_value(const AgentSetting& setting, const AgentSettings& from, AgentSettings& to);

// value_text is a text or integer setting's value as text (an integer in decimal); "" for other kinds.
std::string value_text(const ProfileSetting& setting, const ProfileConfig& profile);

// identity_files are the files an identity is loaded from: one entry per identity_file setting, in the
// order of the description, empty when unset ("pkcs11:" URIs and TPM handles as written).
std::vector<std::filesystem::path> identity_files(const IdentitySpec& identity);

// holds_kind: the setting's field has the type its kind is read into (a test checks every row).
bool holds_kind(const AgentSetting& setting);
bool holds_kind(const ProfileSetting& setting);

}  // namespace rad::config
