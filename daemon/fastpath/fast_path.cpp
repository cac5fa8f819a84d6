#include "daemon/fastpath/fast_path.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/fastpath/control_client.hpp"

namespace rad::fastpath {

config::ConfigEnvironment environment_from_process() {
    config::ConfigEnvironment environment;
    if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY"); dir != nullptr && *dir != '\0') {
        environment.credentials_directory = std::filesystem::path(dir);
    }
    // The unit's pre-start check's record of where the credentials were copied from
    // (config/credential_sources.hpp).
    if (const char* record = std::getenv(config::kCredentialSourcesVariable);
        record != nullptr && *record != '\0') {
        if (auto sources = config::read_credential_sources(record)) {
            environment.credential_sources = std::move(*sources);
        } else {
            environment.credential_sources_error = sources.error();
        }
    }
    return environment;
}

std::string config_path_or_default(const std::string& flag) {
    return flag.empty() ? std::string(config::kDefaultConfigPath) : flag;
}

std::filesystem::path socket_for(const std::string& socket_flag,
                                 const std::optional<config::AgentConfig>& config) {
    if (!socket_flag.empty()) {
        return socket_flag;
    }
    if (config) {
        return config->agent.socket_path;
    }
    return config::AgentSettings{}.socket_path;
}

ConfigRead read_agent_config(const std::string& flag) {
    ConfigRead r;
    r.path = config_path_or_default(flag);
    std::error_code ec;
    if (flag.empty() && !std::filesystem::exists(r.path, ec)) {
        return r;
    }
    // A client of the agent needs the socket, not the identities: their paths are not resolved or looked at
    // ("credential:NAME" needs the service's $CREDENTIALS_DIRECTORY, which a client does not have).
    config::ConfigEnvironment environment = environment_from_process();
    environment.file_checks = config::FileChecks::none;
    auto loaded = config::load_config(r.path, environment);
    if (loaded) {
        r.config = std::move(*loaded);
        return r;
    }
    r.error = loaded.error();
    // Read again to tell a file refused as such from one whose content does not validate.
    if (auto file = config::read_config_file(r.path)) {
        r.text_read = true;
        r.named_socket = config::read_socket_path(file->text);
    }
    return r;
}

Result<config::AgentConfig> fallback_config(const std::string& config_path, const std::string& profile) {
    config::ConfigEnvironment environment = environment_from_process();
    environment.file_checks = config::FileChecks::one_profile;
    environment.checked_profile = profile;
    return config::load_config(config_path_or_default(config_path), environment);
}

void read_config_once(const FastPathOptions& options, AgentConsultation& c) {
    if (c.config_read) {
        return;
    }
    c.config_read = true;
    c.file = read_agent_config(options.config_path);
}

bool agent_runs_with(const std::filesystem::path& socket,
                     const std::string& config_path,
                     std::chrono::milliseconds timeout) {
    auto status = send_control_request(socket, control::ControlRequest{}, timeout);
    if (!status) {
        return false;
    }
    const auto doc = nlohmann::json::parse(status->reveal(), nullptr, false);
    const auto config = doc.is_object() ? doc.find("config") : doc.end();
    if (config == doc.end() || !config->is_string()) {
        return false;
    }
    const std::filesystem::path theirs = config->get<std::string>();
    std::error_code ec;
    const auto ours = std::filesystem::absolute(config_path, ec);
    return !ec && theirs.is_absolute() && theirs.lexically_normal() == ours.lexically_normal();
}

AgentConsultation consult_agent(const FastPathOptions& options) {
    AgentConsultation c;
    if (options.min_lifetime_seconds < -1 || options.min_lifetime_seconds > 43200) {
        c.reply = make_error(Errc::usage, "--min-lifetime must be 0-43200 seconds");
        return c;
    }
    if (!(options.timeout_seconds > 0)) {
        c.reply = make_error(Errc::usage, "--timeout must be a positive number of seconds");
        return c;
    }
    // Rounded to the nearest millisecond, at most a year.
    const auto timeout =
        std::chrono::milliseconds(std::llround(std::min(options.timeout_seconds, 365.0 * 86400) * 1000));
    // With --socket, a call the agent answers never parses the configuration. Without it, the file names the
    // socket, and still does when it no longer loads (an edit the agent has not loaded yet): the agent is
    // asked all the same, and the file's error is the answer only when none answers. A file refused as such
    // names nothing, and a text that cannot tell leads to the default socket only if the agent there runs
    // with this very file: no other socket is guessed.
    if (options.socket_path.empty()) {
        read_config_once(options, c);
    }
    const std::optional<Error>& broken = c.file.error;
    if (broken) {
        if (!c.file.text_read) {
            c.reply = *broken;
            return c;
        }
        c.socket = c.file.named_socket.value_or(config::AgentSettings{}.socket_path);
        if (!c.file.named_socket && !agent_runs_with(c.socket, c.file.path, timeout)) {
            c.reply = *broken;
            return c;
        }
    } else {
        c.socket = socket_for(options.socket_path, c.file.config);
    }
    control::ControlRequest request;
    request.kind = control::ControlRequest::Kind::credentials;
    request.profile = options.profile;
    request.min_seconds = options.min_lifetime_seconds;
    c.reply = c.socket.empty() ? Result<Secret>(make_error(Errc::agent_unavailable,
                                                           "no agent to ask: " + c.file.path +
                                                               " sets no socket (agent.socket_path = \"\")"))
                               : send_control_request(c.socket, request, timeout);
    if (!c.reply && c.reply.error().code == Errc::agent_unavailable && broken) {
        c.reply = *broken;  // no agent, and nothing to sign with
    }
    return c;
}

bool settled(const FastPathOptions& options, const AgentConsultation& c) noexcept {
    // Only an agent that is not there is replaced by signing here; an agent's own error (its upstream is down
    // or throttling) is final, so that a thousand clients do not each retry CreateSession.
    return c.reply || c.reply.error().code != Errc::agent_unavailable || options.no_fallback;
}

Result<void> print_agent_answer(const AgentConsultation& c, std::FILE* out) {
    if (!c.reply) {
        return c.reply.error();
    }
    const Secret& json = *c.reply;
    if (std::fwrite(json.reveal().data(), 1, json.size(), out) != json.size() || std::fflush(out) != 0) {
        return make_error(Errc::internal, "cannot write the credentials to standard output");
    }
    return {};
}

namespace {

Error usage(std::string message) {
    return make_error(Errc::usage, "credential-process --profile: " + std::move(message));
}

bool is_help(std::string_view arg) {
    return arg == "-h" || arg == "--help" || arg == "--help-all";
}

bool names_profile(std::string_view arg) {
    return arg == "--profile" || arg.starts_with("--profile=");
}

// set_value stores the value of the flag `name` (one that takes a value) in `options`.
Result<void> set_value(FastPathOptions& options, std::string_view name, std::string_view value) {
    if (name == "--profile") {
        if (value.empty()) {
            return usage("--profile needs a profile name");
        }
        options.profile = std::string(value);
    } else if (name == "--config") {
        options.config_path = std::string(value);
    } else if (name == "--socket") {
        options.socket_path = std::string(value);
    } else if (name == "--min-lifetime") {
        const auto* end = value.data() + value.size();
        const auto [ptr, ec] = std::from_chars(value.data(), end, options.min_lifetime_seconds);
        if (ec != std::errc() || ptr != end || value.empty() || options.min_lifetime_seconds < 0 ||
            options.min_lifetime_seconds > 43200) {
            return usage("--min-lifetime must be 0-43200 seconds, not \"" + std::string(value) + "\"");
        }
    } else {  // --timeout; strtod needs a terminated string
        const std::string copy(value);
        char* end = nullptr;
        options.timeout_seconds = std::strtod(copy.c_str(), &end);
        if (copy.empty() || end != copy.c_str() + copy.size() || !std::isfinite(options.timeout_seconds) ||
            !(options.timeout_seconds > 0)) {
            return usage("--timeout must be a positive number of seconds, not \"" + copy + "\"");
        }
    }
    return {};
}

// takes_value: nullopt for a flag the fast path does not take.
std::optional<bool> takes_value(std::string_view name) {
    for (const auto& flag : kFastPathFlags) {
        if (name == flag.name) {
            return flag.takes_value;
        }
    }
    if (name == "--timeout") {
        return true;
    }
    if (name == "--debug") {
        return false;
    }
    return std::nullopt;
}

}  // namespace

std::optional<Result<FastPathOptions>> parse_fast_path_arguments(int argc, const char* const* argv) {
    if (argc < 2 || std::string_view(argv[1]) != "credential-process") {
        return std::nullopt;
    }
    bool profile_named = false;
    for (int i = 2; i < argc; ++i) {
        if (is_help(argv[i])) {
            return std::nullopt;
        }
        profile_named = profile_named || names_profile(argv[i]);
    }
    if (!profile_named) {
        return std::nullopt;
    }
    FastPathOptions options;
    std::vector<std::string_view> seen;
    for (int i = 2; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (!arg.starts_with("--")) {
            return usage("unexpected argument \"" + std::string(arg) + "\"");
        }
        const auto eq = arg.find('=');
        const std::string_view name = arg.substr(0, eq);
        const auto with_value = takes_value(name);
        if (!with_value) {
            return usage(std::string(name) +
                         " does not apply (the profile's configuration says how to sign)");
        }
        if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
            return usage(std::string(name) + " is given more than once");
        }
        seen.push_back(name);
        if (!*with_value) {
            if (eq != std::string_view::npos) {
                return usage(std::string(name) + " takes no value");
            }
            (name == "--debug" ? options.debug : options.no_fallback) = true;
            continue;
        }
        std::string_view value;
        if (eq != std::string_view::npos) {
            value = arg.substr(eq + 1);
        } else if (i + 1 < argc && !std::string_view(argv[i + 1]).starts_with("--")) {
            value = argv[++i];
        } else {
            return usage(std::string(name) + " needs a value");
        }
        if (auto set = set_value(options, name, value); !set) {
            return set.error();
        }
    }
    return options;
}

}  // namespace rad::fastpath
