#include "config/settings.hpp"

#include <type_traits>

#include "config/setting_access.hpp"

namespace rad::config {

namespace {

using K = ValueKind;
using R = Reload;

// The [agent] table. Listeners and the socket are opened once, at start (or handed over by systemd), so
// they need a restart; log_format is fixed when the logger is made; startup_jitter_seconds delays only the
// first CreateSession after a start.
constexpr AgentSetting kAgentSettings[] = {
    {"log_level", K::log_level, 0, 0, "\"info\"", R::at_once, 0, &AgentSettings::log_level},
    {"log_format", K::log_format, 0, 0, "\"text\"", R::restart, 0, &AgentSettings::log_format},
    {"socket_path", K::socket_path, 0, 0, "\"/run/rolesanywhere-agent/agent.sock\"", R::restart, 0,
     &AgentSettings::socket_path},
    {"socket_mode", K::octal_mode, 0, 0, "\"0660\"", R::restart, 0, &AgentSettings::socket_mode},
    {"socket_group", K::text, 0, 0, "", R::restart, 0, &AgentSettings::socket_group},
    {"allowed_uids", K::ids, 0, 0, "", R::at_once, 0, &AgentSettings::allowed_uids},
    {"allowed_gids", K::ids, 0, 0, "", R::at_once, 0, &AgentSettings::allowed_gids},
    {"ecs_listen", K::listen, 0, 0, "", R::restart, 0, &AgentSettings::ecs_listen},
    {"health_listen", K::listen, 0, 0, "", R::restart, 0, &AgentSettings::health_listen},
    {"allow_imdsv1", K::flag, 0, 0, "false", R::at_once, 0, &AgentSettings::allow_imdsv1},
    {"hop_limit", K::integer, 1, 255, "1", R::at_once, 0, &AgentSettings::hop_limit},
    {"max_connections", K::integer, 1, 65536, "256", R::at_once, 0, &AgentSettings::max_connections},
    {"refresh_window", K::fraction_window, 0, 0, "[0.5, 0.6]", R::at_once, 0,
     FractionPair{&AgentSettings::refresh_window_min, &AgentSettings::refresh_window_max}},
    {"retry_cap_seconds", K::integer, 1, 3600, "300", R::at_once, 0, &AgentSettings::retry_cap_seconds},
    {"startup_jitter_seconds", K::integer, 0, 3600, "0", R::restart, 0,
     &AgentSettings::startup_jitter_seconds},
};

constexpr unsigned kRequired = role::required;
constexpr unsigned kIdentityFile = role::identity_file;
constexpr unsigned kCredentialsKey = role::credentials_key;

// A [profiles.NAME] table: the identity, CreateSession's settings (both decide the credentials: a change
// refreshes the profile), and the surfaces (a change is applied without a CreateSession).
constexpr ProfileSetting kProfileSettings[] = {
    // Identity.
    {"certificate", K::certificate_source, 0, 0, "", R::refresh_profile, kRequired | kIdentityFile,
     &IdentitySpec::certificate},
    {"private_key", K::key_source, 0, 0, "", R::refresh_profile, kIdentityFile, &IdentitySpec::private_key},
    {"intermediates", K::file, 0, 0, "", R::refresh_profile, kIdentityFile, &IdentitySpec::intermediates},
    {"passphrase_file", K::file, 0, 0, "", R::refresh_profile, kIdentityFile, &IdentitySpec::passphrase_file},
    {"allow_insecure_key_permissions", K::flag, 0, 0, "false", R::refresh_profile, 0,
     &IdentitySpec::allow_insecure_key_permissions},
    {"pkcs11_lib", K::file, 0, 0, "", R::refresh_profile, 0, &IdentitySpec::pkcs11_lib},
    {"pin_file", K::file, 0, 0, "", R::refresh_profile, kIdentityFile, &IdentitySpec::pin_file},
    {"reuse_pin", K::flag, 0, 0, "false", R::refresh_profile, 0, &IdentitySpec::reuse_pin},
    {"tpm_tcti", K::text, 0, 0, "", R::refresh_profile, 0, &IdentitySpec::tpm_tcti},
    {"tpm_key_password_file", K::file, 0, 0, "", R::refresh_profile, kIdentityFile,
     &IdentitySpec::tpm_key_password_file},
    {"tpm_parent_password_file", K::file, 0, 0, "", R::refresh_profile, kIdentityFile,
     &IdentitySpec::tpm_parent_password_file},
    // CreateSession.
    {"trust_anchor_arn", K::text, 0, 0, "", R::refresh_profile, kRequired | kCredentialsKey,
     &ProfileConfig::trust_anchor_arn},
    {"profile_arn", K::text, 0, 0, "", R::refresh_profile, kRequired | kCredentialsKey,
     &ProfileConfig::profile_arn},
    {"role_arn", K::text, 0, 0, "", R::refresh_profile, kRequired | kCredentialsKey,
     &ProfileConfig::role_arn},
    {"region", K::text, 0, 0, "", R::refresh_profile, kCredentialsKey, &ProfileConfig::region},
    {"endpoint", K::text, 0, 0, "", R::refresh_profile, kCredentialsKey, &ProfileConfig::endpoint},
    {"use_fips_endpoint", K::flag, 0, 0, "false", R::refresh_profile, 0, &ProfileConfig::use_fips_endpoint},
    {"ca_bundle", K::file, 0, 0, "", R::refresh_profile, 0, &ProfileConfig::ca_bundle},
    {"no_verify_ssl", K::flag, 0, 0, "false", R::refresh_profile, 0, &ProfileConfig::no_verify_ssl},
    {"session_duration", K::integer, 900, 43200, "3600", R::refresh_profile, kCredentialsKey,
     &ProfileConfig::session_duration},
    {"role_session_name", K::text, 0, 0, "", R::refresh_profile, kCredentialsKey,
     &ProfileConfig::role_session_name},
    // Surfaces.
    {"imds_listen", K::listen_list, 0, 0, "", R::reopen_listener, 0, &ProfileConfig::imds_listen},
    {"ecs_path", K::url_path, 0, 0, "", R::at_once, 0, &ProfileConfig::ecs_path},
    {"ecs_token_file", K::new_file, 0, 0, "", R::at_once, 0, &ProfileConfig::ecs_token_file},
    {"credentials_file_profile", K::text, 0, 0, "", R::at_once, 0, &ProfileConfig::credentials_file_profile},
    {"credentials_file", K::new_file, 0, 0, "", R::at_once, 0, &ProfileConfig::credentials_file},
};

template <class Target, class Field>
bool same(const Field& field, const Target& a, const Target& b) {
    return std::visit(
        [&](auto member) {
            if constexpr (std::is_same_v<decltype(member), FractionPair>) {
                return a.*member.low == b.*member.low && a.*member.high == b.*member.high;
            } else {
                return access::value_of(a, member) == access::value_of(b, member);
            }
        },
        field);
}

// The type each kind is read into.
template <class Stored>
bool stores(ValueKind kind) {
    switch (kind) {
        case K::text:
        case K::url_path:
            return std::is_same_v<Stored, std::string>;
        case K::flag:
            return std::is_same_v<Stored, bool>;
        case K::integer:
            return std::is_same_v<Stored, int>;
        case K::file:
        case K::new_file:
        case K::certificate_source:
        case K::key_source:
        case K::socket_path:
            return std::is_same_v<Stored, std::filesystem::path>;
        case K::listen:
            return std::is_same_v<Stored, std::optional<ListenAddress>>;
        case K::listen_list:
            return std::is_same_v<Stored, std::vector<ListenAddress>>;
        case K::ids:
            return std::is_same_v<Stored, std::vector<std::uint32_t>>;
        case K::log_level:
            return std::is_same_v<Stored, LogLevel>;
        case K::log_format:
            return std::is_same_v<Stored, LogFormat>;
        case K::octal_mode:
            return std::is_same_v<Stored, unsigned>;
        case K::fraction_window:
            return std::is_same_v<Stored, FractionPair>;
    }
    return false;
}

template <class Target, class Setting>
bool kind_fits(const Setting& setting) {
    return std::visit(
        [&](auto member) {
            if constexpr (std::is_same_v<decltype(member), FractionPair>) {
                return stores<FractionPair>(setting.kind);
            } else {
                using Stored =
                    std::remove_cvref_t<decltype(access::value_of(std::declval<Target&>(), member))>;
                return stores<Stored>(setting.kind);
            }
        },
        setting.field);
}

}  // namespace

std::span<const AgentSetting> agent_settings() {
    return kAgentSettings;
}

std::span<const ProfileSetting> profile_settings() {
    return kProfileSettings;
}

bool same_value(const AgentSetting& setting, const AgentSettings& a, const AgentSettings& b) {
    return same(setting.field, a, b);
}

bool same_value(const ProfileSetting& setting, const ProfileConfig& a, const ProfileConfig& b) {
    return same(setting.field, a, b);
}

bool is_identity(const ProfileSetting& setting) {
    return std::holds_alternative<bool IdentitySpec::*>(setting.field) ||
           std::holds_alternative<std::string IdentitySpec::*>(setting.field) ||
           std::holds_alternative<std::filesystem::path IdentitySpec::*>(setting.field);
}

bool same_identity_value(const ProfileSetting& setting, const IdentitySpec& a, const IdentitySpec& b) {
    return std::visit(
        [&](auto member) {
            if constexpr (requires { a.*member; }) {
                return a.*member == b.*member;
            } else {
                return false;
            }
        },
        setting.field);
}

void copy_value(const AgentSetting& setting, const AgentSettings& from, AgentSettings& to) {
    std::visit(
        [&](auto member) {
            if constexpr (std::is_same_v<decltype(member), FractionPair>) {
                to.*member.low = from.*member.low;
                to.*member.high = from.*member.high;
            } else {
                to.*member = from.*member;
            }
        },
        setting.field);
}

std::string value_text(const ProfileSetting& setting, const ProfileConfig& profile) {
    return std::visit(
        [&](auto member) -> std::string {
            const auto& value = access::value_of(profile, member);
            using Stored = std::remove_cvref_t<decltype(value)>;
            if constexpr (std::is_same_v<Stored, std::string>) {
                return value;
            } else if constexpr (std::is_same_v<Stored, int>) {
                return std::to_string(value);
            } else {
                return "";
            }
        },
        setting.field);
}

std::vector<std::filesystem::path> identity_files(const IdentitySpec& identity) {
    std::vector<std::filesystem::path> files;
    for (const auto& setting : kProfileSettings) {
        const auto* member = std::get_if<std::filesystem::path IdentitySpec::*>(&setting.field);
        if ((setting.roles & role::identity_file) != 0 && member != nullptr) {
            files.push_back(identity.**member);
        }
    }
    return files;
}

bool holds_kind(const AgentSetting& setting) {
    return kind_fits<AgentSettings>(setting);
}

bool holds_kind(const ProfileSetting& setting) {
    return kind_fits<ProfileConfig>(setting);
}

}  // namespace rad::config
