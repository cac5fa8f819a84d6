// The description of the settings (config/settings.hpp) against what uses it: the parser reads every key
// into its field with its default and range, the identity comparison and file list follow it, and the two
// documents that list the settings by hand — config/example.toml and the reload table of systemd/README.md —
// say what it says.
#include "config/settings.hpp"

#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

namespace rad::config {
namespace {

ConfigEnvironment unchecked() {
    ConfigEnvironment environment;
    environment.check_files = false;
    return environment;
}

// sample is a value of the kind that differs from the setting's default, as TOML text.
template <class Setting>
std::string sample(const Setting& setting) {
    switch (setting.kind) {
        case ValueKind::text:
            return "\"sample\"";
        case ValueKind::flag:
            return setting.default_value == "true" ? "false" : "true";
        case ValueKind::integer:
            return std::to_string(setting.default_value == std::to_string(setting.min) ? setting.max
                                                                                       : setting.min);
        case ValueKind::file:
        case ValueKind::new_file:
        case ValueKind::certificate_source:
        case ValueKind::key_source:
            return "\"/sample/" + std::string(setting.key) + "\"";
        case ValueKind::listen:
            return "\"127.0.0.1:1\"";
        case ValueKind::listen_list:
            return "[\"127.0.0.1:1\"]";
        case ValueKind::ids:
            return "[5]";
        case ValueKind::log_level:
            return "\"debug\"";
        case ValueKind::log_format:
            return "\"json\"";
        case ValueKind::octal_mode:
            return "\"0600\"";
        case ValueKind::socket_path:
            return "\"/run/sample.sock\"";
        case ValueKind::url_path:
            return "\"/sample\"";
        case ValueKind::fraction_window:
            return "[0.4, 0.7]";
    }
    return "";
}

// file_with is a configuration with one profile, `agent_lines` in [agent] and `profile_lines` in the
// profile, which holds every required key (with a sample value unless `profile_lines` sets it).
std::string file_with(const std::string& agent_lines, const std::string& profile_lines) {
    std::string text = "[agent]\necs_listen = \"127.0.0.1:2\"\n" + agent_lines + "[profiles.web]\n";
    for (const auto& setting : profile_settings()) {
        if ((setting.roles & role::required) != 0 &&
            profile_lines.find(std::string(setting.key) + " = ") == std::string::npos) {
            text += std::string(setting.key) + " = " + sample(setting) + "\n";
        }
    }
    return text + profile_lines;
}

// extra_for is what a profile key needs besides itself to be accepted.
std::string extra_for(std::string_view key) {
    return key == "ecs_path" ? "ecs_token_file = \"/run/web.token\"\n" : "";
}

TEST(Settings, EachRowIsWellFormed) {
    std::set<std::string_view> agent_keys, profile_keys;
    for (const auto& setting : agent_settings()) {
        EXPECT_TRUE(agent_keys.insert(setting.key).second) << setting.key << " twice";
        EXPECT_TRUE(holds_kind(setting)) << setting.key << ": its field is not of its kind's type";
        EXPECT_TRUE(setting.reload == Reload::at_once || setting.reload == Reload::restart) << setting.key;
        EXPECT_EQ(setting.roles, 0u) << setting.key;
        EXPECT_LE(setting.min, setting.max) << setting.key;
    }
    for (const auto& setting : profile_settings()) {
        EXPECT_TRUE(profile_keys.insert(setting.key).second) << setting.key << " twice";
        EXPECT_TRUE(holds_kind(setting)) << setting.key << ": its field is not of its kind's type";
        EXPECT_LE(setting.min, setting.max) << setting.key;
        if ((setting.roles & role::identity_file) != 0) {
            EXPECT_TRUE(std::holds_alternative<std::filesystem::path IdentitySpec::*>(setting.field))
                << setting.key;
        }
        if ((setting.roles & role::credentials_key) != 0) {
            EXPECT_TRUE(setting.kind == ValueKind::text || setting.kind == ValueKind::integer) << setting.key;
            EXPECT_EQ(setting.reload, Reload::refresh_profile) << setting.key;
        }
        if (is_identity(setting)) {
            EXPECT_EQ(setting.reload, Reload::refresh_profile) << setting.key;
        }
    }
}

// Each key set to its documented default reads as what the structs start with.
TEST(Settings, DefaultsAreWhatTheStructsStartWith) {
    const AgentSettings agent_defaults;
    const ProfileConfig profile_defaults;
    for (const auto& setting : agent_settings()) {
        if (setting.default_value.empty()) {
            continue;
        }
        const std::string line = std::string(setting.key) + " = " + std::string(setting.default_value) + "\n";
        auto parsed = parse_config(file_with(line, ""), "agent.toml", unchecked());
        ASSERT_TRUE(parsed) << parsed.error().message;
        EXPECT_TRUE(same_value(setting, parsed->agent, agent_defaults)) << setting.key;
    }
    for (const auto& setting : profile_settings()) {
        if (setting.default_value.empty()) {
            EXPECT_TRUE(value_text(setting, profile_defaults).empty()) << setting.key;
            continue;
        }
        const std::string line = std::string(setting.key) + " = " + std::string(setting.default_value) + "\n";
        auto parsed = parse_config(file_with("", line), "agent.toml", unchecked());
        ASSERT_TRUE(parsed) << parsed.error().message;
        EXPECT_TRUE(same_value(setting, parsed->profiles.at(0), profile_defaults)) << setting.key;
    }
}

// Each key is read into the field its row names (a value other than the default lands there), and nowhere
// else: every other setting keeps its value.
TEST(Settings, EachKeyIsReadIntoItsField) {
    const auto base = parse_config(file_with("", ""), "agent.toml", unchecked());
    ASSERT_TRUE(base) << base.error().message;
    for (const auto& setting : agent_settings()) {
        const std::string line = std::string(setting.key) + " = " + sample(setting) + "\n";
        auto parsed =
            parse_config(file_with(setting.key == "ecs_listen" ? "" : line, ""), "agent.toml", unchecked());
        if (setting.key == "ecs_listen") {  // file_with sets it already: set it again instead
            std::string text = file_with("", "");
            text.replace(text.find("127.0.0.1:2"), 11, "127.0.0.1:1");
            parsed = parse_config(text, "agent.toml", unchecked());
        }
        ASSERT_TRUE(parsed) << setting.key << ": " << parsed.error().message;
        for (const auto& other : agent_settings()) {
            EXPECT_EQ(same_value(other, parsed->agent, base->agent), other.key != setting.key)
                << setting.key << " = " << sample(setting) << ", looking at " << other.key;
        }
    }
    for (const auto& setting : profile_settings()) {
        if ((setting.roles & role::required) != 0) {
            EXPECT_FALSE(same_value(setting, base->profiles.at(0), ProfileConfig{})) << setting.key;
            continue;
        }
        const std::string lines =
            std::string(setting.key) + " = " + sample(setting) + "\n" + extra_for(setting.key);
        auto parsed = parse_config(file_with("", lines), "agent.toml", unchecked());
        ASSERT_TRUE(parsed) << setting.key << ": " << parsed.error().message;
        for (const auto& other : profile_settings()) {
            const bool extra = extra_for(setting.key).starts_with(std::string(other.key) + " = ");
            EXPECT_EQ(same_value(other, parsed->profiles.at(0), base->profiles.at(0)),
                      other.key != setting.key && !extra)
                << setting.key << " = " << sample(setting) << ", looking at " << other.key;
        }
    }
}

TEST(Settings, IntegersAreReadWithinTheirRangeOnly) {
    const auto check = [](std::string_view key, long long min, long long max, bool agent) {
        for (const long long value : {min - 1, min, max, max + 1}) {
            const std::string line = std::string(key) + " = " + std::to_string(value) + "\n";
            auto parsed =
                parse_config(agent ? file_with(line, "") : file_with("", line), "agent.toml", unchecked());
            EXPECT_EQ(static_cast<bool>(parsed), value >= min && value <= max) << key << " = " << value;
            if (!parsed) {
                EXPECT_NE(parsed.error().message.find(std::string(key) + ": must be between " +
                                                      std::to_string(min) + " and " + std::to_string(max)),
                          std::string::npos)
                    << parsed.error().message;
            }
        }
    };
    for (const auto& setting : agent_settings()) {
        if (setting.kind == ValueKind::integer) {
            check(setting.key, setting.min, setting.max, true);
        }
    }
    for (const auto& setting : profile_settings()) {
        if (setting.kind == ValueKind::integer) {
            check(setting.key, setting.min, setting.max, false);
        }
    }
}

TEST(Settings, IdentityComparisonAndFilesFollowTheDescription) {
    const auto original = parse_config(file_with("", ""), "agent.toml", unchecked());
    ASSERT_TRUE(original) << original.error().message;
    const IdentitySpec& base = original->profiles.at(0).identity;
    std::vector<std::string> files_in_order;
    for (const auto& setting : profile_settings()) {
        if (!is_identity(setting)) {
            continue;
        }
        if ((setting.roles & role::identity_file) != 0) {
            files_in_order.push_back(std::string(setting.key));
        }
        if ((setting.roles & role::required) != 0) {
            continue;  // set in both
        }
        // Changed alone, every identity setting makes another identity.
        auto changed = parse_config(file_with("", std::string(setting.key) + " = " + sample(setting) + "\n"),
                                    "agent.toml", unchecked());
        ASSERT_TRUE(changed) << changed.error().message;
        EXPECT_FALSE(changed->profiles.at(0).identity.same_as(base)) << setting.key;
        EXPECT_TRUE(changed->profiles.at(0).identity.same_as(changed->profiles.at(0).identity))
            << setting.key;
    }
    // The files an identity is loaded from, in a fixed order (the agent stamps them to notice a renewal).
    EXPECT_EQ(files_in_order,
              (std::vector<std::string>{"certificate", "private_key", "intermediates", "passphrase_file",
                                        "pin_file", "tpm_key_password_file", "tpm_parent_password_file"}));
    IdentitySpec spec;
    spec.certificate = "/c.pem";
    spec.pin_file = "/pin";
    EXPECT_EQ(identity_files(spec),
              (std::vector<std::filesystem::path>{"/c.pem", "", "", "", "/pin", "", ""}));
    // The secrets the command line hands over count too.
    IdentitySpec with_secret = base;
    with_secret.passphrase = std::make_shared<const Secret>(std::string_view("x"));
    EXPECT_FALSE(with_secret.same_as(base));
}

std::string source_file(const std::string& relative) {
    const char* data = std::getenv("RAD_TEST_DATA");
    EXPECT_NE(data, nullptr);
    std::ifstream in(std::filesystem::path(data != nullptr ? data : ".") / ".." / ".." / relative);
    EXPECT_TRUE(in) << relative;
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// config/example.toml lists every key, set or commented out, under its table, and nothing else; a key with a
// default shows that default.
TEST(Settings, TheExampleFileListsEveryKeyWithItsDefault) {
    const std::string text = source_file("config/example.toml");
    std::map<std::string, std::map<std::string, std::vector<std::string>>> found;  // table -> key -> values
    const std::regex table(R"(^\[(agent|profiles)[.\]])");
    const std::regex key_line(R"(^#? ?([a-z0-9_]+) = ("[^"]*"|\[[^\]]*\]|\S+))");
    std::string current;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        std::smatch m;
        if (std::regex_search(line, m, table)) {
            current = m[1];
        } else if (!current.empty() && std::regex_search(line, m, key_line)) {
            found[current][m[1]].push_back(m[2]);
        }
    }
    const auto check = [&](const std::string& name, const auto& settings) {
        auto keys = found[name];
        for (const auto& setting : settings) {
            const auto it = keys.find(std::string(setting.key));
            if (it == keys.end()) {
                ADD_FAILURE() << "config/example.toml does not show " << name << "." << setting.key;
                continue;
            }
            if (!setting.default_value.empty()) {
                for (const auto& value : it->second) {
                    EXPECT_EQ(value, setting.default_value) << name << "." << setting.key;
                }
            }
            keys.erase(it);
        }
        for (const auto& [key, values] : keys) {
            ADD_FAILURE() << "config/example.toml shows " << name << "." << key << ", which is no setting";
        }
    };
    check("agent", agent_settings());
    check("profiles", profile_settings());
}

// The reload table of systemd/README.md names, in one row each, the profile settings that refresh the
// profile, those applied at once, the agent-wide settings applied at once, and those that need a restart.
TEST(Settings, TheReloadTableOfTheSystemdReadmeSaysWhatTheDescriptionSays) {
    const std::string text = source_file("systemd/README.md");
    const auto start = text.find("## Reloading the configuration");
    ASSERT_NE(start, std::string::npos);
    const auto end = text.find("\n## ", start + 1);
    std::istringstream section(text.substr(start, end - start));
    std::vector<std::set<std::string>> rows;
    const std::regex code("`([a-z0-9_]+)`");
    for (std::string line; std::getline(section, line);) {
        if (!line.starts_with("| ")) {
            continue;
        }
        const std::string first_cell = line.substr(0, line.find(" | "));
        std::set<std::string> keys;
        for (std::sregex_iterator it(first_cell.begin(), first_cell.end(), code), last; it != last; ++it) {
            keys.insert((*it)[1]);
        }
        if (!keys.empty()) {
            rows.push_back(keys);
        }
    }
    std::set<std::string> profile_refresh, profile_at_once, agent_at_once, agent_restart;
    for (const auto& setting : profile_settings()) {
        (setting.reload == Reload::refresh_profile ? profile_refresh : profile_at_once)
            .insert(std::string(setting.key));
    }
    for (const auto& setting : agent_settings()) {
        (setting.reload == Reload::restart ? agent_restart : agent_at_once).insert(std::string(setting.key));
    }
    EXPECT_EQ(rows, (std::vector<std::set<std::string>>{profile_refresh, profile_at_once, agent_at_once,
                                                        agent_restart}));
}

}  // namespace
}  // namespace rad::config
