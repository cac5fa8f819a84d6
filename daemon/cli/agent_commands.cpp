#include "daemon/cli/agent_commands.hpp"

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "common/time_format.hpp"
#include "daemon/agent/agent.hpp"
#include "daemon/fastpath/control_client.hpp"
#include "daemon/fastpath/fast_path.hpp"
#include "daemon/surfaces/credentials_file.hpp"

namespace rad::cli {

namespace {

Result<config::LogLevel> parse_level(const std::string& text) {
    if (text == "debug")
        return config::LogLevel::debug;
    if (text == "info")
        return config::LogLevel::info;
    if (text == "warning")
        return config::LogLevel::warning;
    if (text == "error")
        return config::LogLevel::error;
    return make_error(Errc::usage,
                      "--log-level must be debug, info, warning or error (got \"" + text + "\")");
}

int report(const Error& error) {
    std::fprintf(stderr, "rolesanywhere-agent: %s\n", error.message.c_str());
    return exit_code(error.code);
}

// certificate_line is what `status` says of a certificate at `now`: how long it has left (with a warning
// when that is short), or that it has expired, or that it is not valid yet. The dates are the agent's, the
// judgement is against this host's clock, which the agent shares.
std::string certificate_line(const nlohmann::json& c, SystemTime now) {
    const std::string not_before = c.value("not_before", "");
    const std::string not_after = c.value("not_after", "");
    std::string line =
        "  certificate   " + c.value("subject", "") + ", serial " + c.value("serial", "") + ", ";
    if (const auto end = parse_rfc3339(not_after); end && now > *end) {
        return line + "EXPIRED at " + not_after + ": renew it";
    }
    if (const auto start = parse_rfc3339(not_before); start && now < *start) {
        return line + "NOT YET VALID until " + not_before + ": check the clock, or the certificate's issuer";
    }
    line += "expires " + not_after + " (" + std::to_string(c.value("days_left", 0LL)) + " days)";
    if (c.value("expiring_soon", false)) {
        line += "  WARNING: renew it soon";
    }
    return line;
}

}  // namespace

Result<config::AgentConfig> update_agent_config(const UpdateOptions& options) {
    if (options.profile.empty()) {
        return make_error(Errc::usage, "--profile must name a section of the credentials file");
    }
    config::ProfileConfig profile = options.credentials.profile;
    profile.name = options.profile;
    profile.credentials_file_profile = options.profile;
    config::AgentConfig config;
    config.agent.socket_path.clear();
    config.profiles.push_back(std::move(profile));
    return config;
}

int run_serve(ServeOptions options) {
    std::optional<config::LogLevel> level_flag;
    if (!options.log_level.empty()) {
        auto level = parse_level(options.log_level);
        if (!level) {
            return report(level.error());
        }
        level_flag = *level;
    }
    std::optional<config::LogFormat> format_flag;
    if (!options.log_format.empty()) {
        if (options.log_format != "text" && options.log_format != "json") {
            return report(make_error(Errc::usage, "--log-format must be text or json"));
        }
        format_flag = options.log_format == "json" ? config::LogFormat::json : config::LogFormat::text;
    }

    agent::AgentOptions agent_options;
    agent_options.environment = fastpath::environment_from_process();
    if (options.credentials_given && !options.config_path.empty()) {
        return report(make_error(Errc::usage,
                                 "--config and the certificate/ARN flags are exclusive: put the profile "
                                 "in the configuration file, or use flags alone"));
    }
    if (options.credentials_given) {
        // The reference helper's `serve`: one profile, IMDS on 127.0.0.1:--port.
        if (options.port < 1 || options.port > 65535) {
            return report(make_error(Errc::usage, "--port must be 1-65535"));
        }
        if (options.hop_limit < 1 || options.hop_limit > 255) {
            return report(make_error(Errc::usage, "--hop-limit must be 1-255"));
        }
        config::ProfileConfig profile = std::move(options.credentials.profile);
        profile.name = "default";
        profile.imds_listen.push_back(
            config::ListenAddress{"127.0.0.1", static_cast<std::uint16_t>(options.port)});
        agent_options.config.profiles.push_back(std::move(profile));
        agent_options.config.agent.hop_limit = options.hop_limit;
        agent_options.config.agent.socket_path = options.socket_path;
        std::fprintf(stderr,
                     "rolesanywhere-agent: serving IMDS on 127.0.0.1:%d; export "
                     "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:%d/\n",
                     options.port, options.port);
    } else {
        agent_options.config_path = fastpath::config_path_or_default(options.config_path);
        auto loaded = config::load_config(agent_options.config_path, agent_options.environment);
        if (!loaded) {
            return report(loaded.error());
        }
        agent_options.config = std::move(*loaded);
    }
    // Flags win over the file.
    Logger log(level_flag.value_or(agent_options.config.agent.log_level),
               format_flag.value_or(agent_options.config.agent.log_format));
    return agent::run_agent(std::move(agent_options), log);
}

int run_update(UpdateOptions options) {
    auto level = parse_level(options.log_level);
    if (!level) {
        return report(level.error());
    }
    Logger terminal(options.credentials.debug ? LogLevel::debug : LogLevel::warning, LogFormat::terminal);
    if (!options.once) {
        // Kept fresh, the file is a surface of the agent: its refresh policy and backoff, rotated key files
        // picked up, and a clean stop on SIGTERM.
        auto config = update_agent_config(options);
        if (!config) {
            return report(config.error());
        }
        // The flags are checked and the identity loaded here first (the agent then loads its own), so that a
        // mistake in them is reported as with --once: one line and its own exit code, not a profile the agent
        // cannot start.
        if (auto checked = upstream::prepare_session(config->profiles.front(), terminal); !checked) {
            return report(checked.error());
        }
        agent::AgentOptions agent_options;
        agent_options.config = std::move(*config);
        agent_options.environment = fastpath::environment_from_process();
        Logger log(options.credentials.debug ? config::LogLevel::debug : *level, config::LogFormat::text);
        return agent::run_agent(std::move(agent_options), log);
    }
    auto session = upstream::prepare_session(options.credentials.profile, terminal);
    if (!session) {
        return report(session.error());
    }
    Logger log(*level, config::LogFormat::text);
    auto credentials = upstream::fetch_credentials(session->identity, session->params, session->endpoint,
                                                   upstream::RetryOptions{},
                                                   upstream::production_hooks(session->client, terminal));
    if (!credentials) {
        return report(credentials.error());
    }
    const auto path = surfaces::default_credentials_file();
    if (auto r = surfaces::write_credentials_file(path, options.profile, *credentials); !r) {
        return report(r.error());
    }
    log.info("credentials_written", {{"file", path.string()},
                                     {"profile", options.profile},
                                     {"access_key", signer::redact_access_key_id(credentials->access_key_id)},
                                     {"expiration", format_iso8601(credentials->expiration)}});
    return 0;
}

Result<void> run_fast_path(const fastpath::FastPathOptions& options, std::FILE* out, Logger& log) {
    auto consultation = fastpath::consult_agent(options);
    if (fastpath::settled(options, consultation)) {
        return fastpath::print_agent_answer(consultation, out);
    }
    // No agent answered: sign here, with the profile asked for and only that one (the others' files, and
    // their credential: paths, are no business of this call). Whatever goes wrong now is said after why this
    // process signs at all.
    const std::string no_agent = consultation.reply.error().message;
    log.debug("signing_here", {{"because", no_agent}});
    const auto signing_here = [&](const Error& error) {
        return make_error(error.code, no_agent + "; signing here instead: " + error.message);
    };
    const std::string config_path = fastpath::config_path_or_default(options.config_path);
    std::error_code ec;
    if (options.config_path.empty() && !std::filesystem::exists(config_path, ec)) {
        return signing_here(
            make_error(Errc::agent_unavailable, "there is no " + config_path + " to sign from"));
    }
    auto config = fastpath::fallback_config(options.config_path, options.profile);
    if (!config) {
        return signing_here(config.error());
    }
    const auto* profile = config->find_profile(options.profile);
    if (profile == nullptr) {
        return signing_here(make_error(
            Errc::usage, "--profile: no profile named \"" + options.profile + "\" in " + config_path));
    }
    // The signer's rules (ARNs, regions, endpoint) at the key's line of the file, as the agent reports them.
    if (auto checked = agent::check_profile_settings(*profile); !checked) {
        return signing_here(checked.error());
    }
    log.debug("signing_with", {{"profile", options.profile}, {"config", config_path}});
    CredentialOptions credentials{*profile};
    credentials.debug = log.enabled(LogLevel::debug);
    auto signed_here = run_credential_process(credentials, out, log);
    if (!signed_here) {
        return signing_here(signed_here.error());
    }
    return {};
}

Result<void> run_status(const StatusOptions& options, std::FILE* out) {
    std::filesystem::path socket = options.socket_path;
    if (socket.empty()) {
        const fastpath::ConfigRead file = fastpath::read_agent_config(options.config_path);
        socket = fastpath::socket_for({}, file.config);
        // A configuration with a mistake is when its agent's status matters most: the agent runs with the
        // version it loaded, whose socket the file still names (or, when it cannot tell, the default one).
        // A default file this user may not read is passed over in silence, as before.
        if (file.error && (file.text_read || !options.config_path.empty())) {
            std::fprintf(stderr,
                         "rolesanywhere-agent: warning: %s (the running agent uses the configuration it "
                         "loaded)\n",
                         file.error->message.c_str());
            socket = file.named_socket.value_or(socket);
        }
    }
    control::ControlRequest request;
    auto reply = fastpath::send_control_request(socket, request, std::chrono::seconds(5));
    if (!reply) {
        return reply.error();
    }
    if (options.json) {
        std::fprintf(out, "%.*s\n", static_cast<int>(reply->size()), reply->reveal().data());
        return {};
    }
    const auto doc = nlohmann::json::parse(reply->reveal(), nullptr, false);
    if (doc.is_discarded() || !doc.contains("profiles")) {
        return make_error(Errc::upstream_malformed, "agent socket: unreadable status");
    }
    std::fprintf(out, "rolesanywhere-agent %s\n", doc.value("version", "?").c_str());
    // The health first, as /healthz and `systemctl status` say it.
    if (const auto health = doc.value("health", nlohmann::json::object()); health.contains("healthy")) {
        if (health.value("healthy", false)) {
            std::fprintf(out, "health: ok\n");
        } else {
            std::fprintf(out, "health: %s\n",
                         health.value("ready", false) ? "serving, with problems" : "not ready");
            for (const auto& problem : health.value("problems", nlohmann::json::array())) {
                std::fprintf(out, "  %s\n", problem.get<std::string>().c_str());
            }
        }
    }
    for (const auto& p : doc["profiles"]) {
        std::fprintf(out, "\nprofile %s: %s\n", p.value("name", "?").c_str(), p.value("state", "?").c_str());
        if (p.contains("expiration")) {
            std::fprintf(out, "  credentials   %s, expire %s (in %lld s)\n",
                         p.value("access_key_id", "").c_str(), p.value("expiration", "").c_str(),
                         p.value("expires_in_seconds", 0LL));
        }
        if (p.contains("next_refresh_in_seconds")) {
            std::fprintf(out, "  next refresh  in %lld s\n", p.value("next_refresh_in_seconds", 0LL));
        } else if (p.value("refreshing", false)) {
            std::fprintf(out, "  next refresh  running now\n");
        }
        if (p.contains("last_error")) {
            std::fprintf(out, "  last error    %s: %s (%d in a row)\n",
                         p["last_error"].value("code", "").c_str(),
                         p["last_error"].value("message", "").c_str(), p.value("consecutive_failures", 0));
        }
        if (p.contains("certificate")) {
            std::fprintf(out, "%s\n",
                         certificate_line(p["certificate"], std::chrono::system_clock::now()).c_str());
        }
        for (const auto& surface : p.value("surfaces", nlohmann::json::array())) {
            std::fprintf(out, "  serves        %s\n", surface.get<std::string>().c_str());
        }
    }
    return {};
}

namespace {

// agent_socket is the socket `refresh` and `reload` ask: --socket, else the one the configuration names (read
// as `status` reads it: for the socket only, the agent has the identities).
Result<std::filesystem::path> agent_socket(const std::string& socket_path, const std::string& config_path) {
    if (!socket_path.empty()) {
        return std::filesystem::path(socket_path);
    }
    const fastpath::ConfigRead file = fastpath::read_agent_config(config_path);
    if (file.error && !config_path.empty()) {
        return *file.error;
    }
    return fastpath::socket_for({}, file.config);
}

std::string joined(const nlohmann::json& names) {
    std::string text;
    for (const auto& name : names) {
        if (name.is_string()) {
            text += (text.empty() ? "" : ", ") + name.get<std::string>();
        }
    }
    return text.empty() ? "none" : text;
}

}  // namespace

Result<void> run_reload(const ReloadOptions& options, std::FILE* out) {
    auto socket = agent_socket(options.socket_path, options.config_path);
    if (!socket) {
        return socket.error();
    }
    control::ControlRequest request;
    request.kind = control::ControlRequest::Kind::reload;
    // The agent reads and checks the file and answers; new profiles load their identities meanwhile.
    auto reply = fastpath::send_control_request(*socket, request, std::chrono::seconds(60));
    if (!reply) {
        return reply.error();
    }
    const auto doc = nlohmann::json::parse(reply->reveal(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
        return make_error(Errc::upstream_malformed, "agent socket: unreadable answer to reload");
    }
    std::fprintf(out, "reloaded: %d profiles; added %s; removed %s; refreshing %s", doc.value("profiles", 0),
                 joined(doc.value("added", nlohmann::json::array())).c_str(),
                 joined(doc.value("removed", nlohmann::json::array())).c_str(),
                 joined(doc.value("refreshed", nlohmann::json::array())).c_str());
    if (const auto later = doc.value("restart_needed", nlohmann::json::array()); !later.empty()) {
        std::fprintf(out, "; at the next start: %s", joined(later).c_str());
    }
    std::fputc('\n', out);
    return {};
}

Result<void> run_refresh(const RefreshOptions& options, std::FILE* out) {
    auto found = agent_socket(options.socket_path, options.config_path);
    if (!found) {
        return found.error();
    }
    const std::filesystem::path socket = *found;
    std::vector<std::string> profiles = options.profiles;
    if (profiles.empty()) {
        auto status =
            fastpath::send_control_request(socket, control::ControlRequest{}, std::chrono::seconds(5));
        if (!status) {
            return status.error();
        }
        const auto doc = nlohmann::json::parse(status->reveal(), nullptr, false);
        if (doc.is_discarded() || !doc.contains("profiles")) {
            return make_error(Errc::upstream_malformed, "agent socket: unreadable status");
        }
        for (const auto& p : doc["profiles"]) {
            profiles.push_back(p.value("name", ""));
        }
    }
    std::optional<Error> first_failure;
    for (const auto& name : profiles) {
        control::ControlRequest request;
        request.kind = control::ControlRequest::Kind::refresh;
        request.profile = name;
        // A refresh is one CreateSession: bounded by the agent's own timeouts (20 s by default).
        auto reply = fastpath::send_control_request(socket, request, std::chrono::seconds(60));
        if (!reply) {
            // No agent, or one that refuses this user: the command's failure, said once (on stderr, by the
            // caller), not a refresh of this profile that failed.
            const Errc code = reply.error().code;
            if (code == Errc::agent_unavailable || code == Errc::peer_refused ||
                code == Errc::unsafe_permissions) {
                return reply.error();
            }
            std::fprintf(out, "%s: failed: %s: %s\n", name.c_str(), errc_name(code),
                         reply.error().message.c_str());
            if (!first_failure) {
                first_failure = reply.error();
            }
            continue;
        }
        const auto doc = nlohmann::json::parse(reply->reveal(), nullptr, false);
        std::fprintf(out, "%s: refreshed, credentials %s expire %s\n", name.c_str(),
                     doc.is_discarded() ? "?" : doc.value("access_key_id", "?").c_str(),
                     doc.is_discarded() ? "?" : doc.value("expiration", "?").c_str());
    }
    if (first_failure) {
        return *first_failure;
    }
    return {};
}

}  // namespace rad::cli
