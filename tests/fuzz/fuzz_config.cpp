// Fuzz target: parse_config and read_socket_path on arbitrary TOML text (toml++ and every check of
// config.cpp), without touching the file system (check_files off). A configuration that parses must keep the
// promises config.hpp makes; one that does not must say why on one line that starts with the file name.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
}

void check(const rad::config::AgentConfig& config) {
    const auto& agent = config.agent;
    if (!(agent.refresh_window_min > 0 && agent.refresh_window_min <= agent.refresh_window_max &&
          agent.refresh_window_max < 1)) {
        fail("refresh_window outside 0 < min <= max < 1");
    }
    if ((agent.socket_mode & 07) != 0) {
        fail("socket_mode gives others access");
    }
    if (!agent.socket_path.empty() && !agent.socket_path.is_absolute()) {
        fail("socket_path is relative");
    }
    std::set<std::string> names, listeners, ecs_paths;
    for (const auto& profile : config.profiles) {
        if (!names.insert(profile.name).second) {
            fail("two profiles with the same name");
        }
        if (config.find_profile(profile.name) != &profile) {
            fail("find_profile does not find a profile");
        }
        if (profile.identity.certificate.empty() || profile.trust_anchor_arn.empty() ||
            profile.profile_arn.empty() || profile.role_arn.empty()) {
            fail("a profile without one of its required keys");
        }
        if (profile.session_duration < 900 || profile.session_duration > 43200) {
            fail("session_duration outside 900..43200");
        }
        if (!profile.ecs_path.empty() &&
            (profile.ecs_path.front() != '/' || profile.ecs_token_file.empty() || !agent.ecs_listen)) {
            fail("ecs_path without a leading slash, a token file or ecs_listen");
        }
        if (!profile.ecs_path.empty() && !ecs_paths.insert(profile.ecs_path).second) {
            fail("one ecs_path for two profiles");
        }
        for (const auto& address : profile.imds_listen) {
            if (address.host.empty()) {
                fail("an imds_listen address without a host");
            }
            if (!listeners.insert(address.to_string()).second) {
                fail("one IMDS listener for two roles");
            }
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    rad::config::ConfigEnvironment environment;
    environment.check_files = false;
    environment.credentials_directory = "/run/credentials/rolesanywhere-agent.service";
    auto parsed = rad::config::parse_config(text, "fuzz.toml", environment);
    // read_socket_path runs toml++ on the same text, for files that do not validate too.
    const auto socket = rad::config::read_socket_path(text);
    if (parsed) {
        check(*parsed);
        if (socket != parsed->agent.socket_path) {
            fail("read_socket_path disagrees with parse_config on a valid file");
        }
        return 0;
    }
    const rad::Error& error = parsed.error();
    if (error.code != rad::Errc::config_invalid) {
        fail("a parse failure that is not config_invalid");
    }
    if (error.message.rfind("fuzz.toml", 0) != 0) {
        fail("an error message that does not start with the file name");
    }
    for (const char c : error.message) {
        if (c == '\n' || c == '\r') {
            std::fprintf(stderr, "message: %s\n", error.message.c_str());
            fail("an error message on more than one line");
        }
    }
    return 0;
}
