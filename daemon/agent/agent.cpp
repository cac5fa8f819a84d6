// The agent: the shell around the profiles' engines. It owns the event loop and wires the parts, each of
// which owns its own state: the profiles (profile_runtime.hpp), the HTTP listeners (http_listeners.hpp), the
// Unix socket (control_service.hpp), and what is said to systemd (readiness, STATUS=, the watchdog, the
// handover in its file-descriptor store). It starts them, reloads them, and stops them.

#include "daemon/agent/agent.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <csignal>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/unique_fd.hpp"
#include "common/version.hpp"
#include "daemon/agent/control_service.hpp"
#include "daemon/agent/ecs_token.hpp"
#include "daemon/agent/http_listeners.hpp"
#include "daemon/agent/profile_runtime.hpp"
#include "daemon/policy/health.hpp"
#include "daemon/policy/reload_plan.hpp"
#include "daemon/surfaces/credentials_file.hpp"
#include "daemon/systemd/handover.hpp"
#include "daemon/systemd/systemd.hpp"
#include "pki/hmac.hpp"
#include "signer/endpoint.hpp"

namespace rad::agent {

Result<void> check_profile_settings(const config::ProfileConfig& profile) {
    // The signer spells the fields as the file's keys and says which one is at fault.
    static constexpr signer::EndpointNames kKeys{"trust_anchor_arn", "profile_arn", "role_arn",
                                                 "region",           "endpoint",    "use_fips_endpoint"};
    std::string_view key = kKeys.trust_anchor_arn;
    auto resolved = signer::resolve_endpoint(upstream::endpoint_options(profile), kKeys, &key);
    if (resolved) {
        return {};
    }
    return make_error(Errc::config_invalid, profile.source.where(key) + ": profiles." + profile.name + "." +
                                                std::string(key) + ": " + resolved.error().message);
}

namespace {

namespace net = boost::asio;

// kMaxHandover bounds what the previous process may hand over.
constexpr std::size_t kMaxHandover = 1024 * 1024;

// startup_exit_code is the exit status when no profile can start. The one-shot commands exit with the
// failure's own code (65 for an expired certificate, 77 for a refused PIN, ...); for the service every such
// failure is the operator's to fix in what the configuration points at, so it exits 78 (EX_CONFIG), which
// the unit's RestartPreventExitStatus keeps from a restart loop that would, with a refused PIN, walk the
// token into lock-out. A device that cannot be reached yet (69) or a failure of our own (70) may pass, so
// those are left to Restart=on-failure.
int startup_exit_code(Errc code) noexcept {
    const bool may_pass = is_retryable(code) || code == Errc::crypto_failure || code == Errc::internal;
    return may_pass ? exit_code(code) : exit_code(Errc::config_invalid);
}

std::uint64_t random_seed() {
    auto bytes = random_secret(sizeof(std::uint64_t));
    std::uint64_t seed =
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    if (bytes) {
        std::memcpy(&seed, bytes->reveal().data(), sizeof seed);
    }
    return seed;
}

engine::Instant now() {
    return engine::Instant{std::chrono::steady_clock::now(), std::chrono::system_clock::now()};
}

class Agent final : public SurfaceContext, public ControlContext {
public:
    Agent(AgentOptions options, Logger& log)
        : options_(std::move(options)),
          log_(log),
          signals_(io_, SIGTERM, SIGINT, SIGHUP),
          tokens_([this](std::string_view message) { return hmac_->sign(message); }),
          listeners_(io_, log_, *this),
          control_(io_, log_, *this) {}

    int run();

    // SurfaceContext and ControlContext.
    const config::AgentConfig& configuration() const override { return options_.config; }
    const std::filesystem::path& config_path() const override { return options_.config_path; }
    const surfaces::ImdsTokens& imds_tokens() const override { return tokens_; }
    const std::vector<std::shared_ptr<ProfileRuntime>>& profiles() const override { return profiles_; }
    std::shared_ptr<ProfileRuntime> profile(std::string_view name) const override;
    policy::AgentSnapshot snapshot() const override;
    policy::ProfileSnapshot snapshot_of(const ProfileRuntime& profile) const override;
    void count(std::string_view surface, int status) override { ++requests_[{std::string(surface), status}]; }
    Result<std::string> reload() override;

private:
    std::shared_ptr<ProfileRuntime> make_profile(const config::ProfileConfig& config);
    systemd::Handover take_handover();
    Result<void> set_token_key(Secret handed_over);
    void store_handover();
    Result<void> prepare_files();
    void profile_changed(bool refreshed = false);
    void wait_for_signal();
    void arm_watchdog();
    void arm_look();
    void stop();

    AgentOptions options_;
    Logger& log_;
    net::io_context io_;
    // Only keys on a PKCS#11 token or in a TPM, whose operations block, leave the loop.
    net::thread_pool key_pool_{1};
    net::signal_set signals_;
    systemd::ActivatedSockets activated_;
    std::unique_ptr<pki::HmacKey> hmac_;
    Secret token_key_;  // hmac_'s bytes, handed over to the next process
    surfaces::ImdsTokens tokens_;
    std::vector<std::shared_ptr<ProfileRuntime>> profiles_;
    HttpListeners listeners_;
    ControlService control_;
    policy::RequestCounts requests_;
    net::steady_timer watchdog_{io_};
    std::chrono::milliseconds watchdog_period_{0};
    net::steady_timer look_{io_};
    std::string status_sent_;
    bool started_ = false;
    bool stopping_ = false;
};

std::shared_ptr<ProfileRuntime> Agent::profile(std::string_view name) const {
    for (const auto& profile : profiles_) {
        if (profile->name() == name) {
            return profile;
        }
    }
    return nullptr;
}

std::shared_ptr<ProfileRuntime> Agent::make_profile(const config::ProfileConfig& config) {
    ProfileRuntime::Hooks hooks;
    hooks.credentials_changed = [this](ProfileRuntime&) {
        if (started_) {
            store_handover();
        }
    };
    hooks.retry_surface = [this](ProfileRuntime& profile, const std::string& surface) {
        if (surface == "imds") {
            listeners_.open_profile(profile);
        }
    };
    hooks.changed = [this](bool refreshed) { profile_changed(refreshed); };
    return std::make_shared<ProfileRuntime>(io_, key_pool_, log_, config,
                                            engine::engine_settings(options_.config.agent, config),
                                            random_seed(), std::move(hooks));
}

int Agent::run() {
    // What systemd passes: the listening sockets, and what the previous process of this service left in its
    // file-descriptor store (the handover, read then closed: systemd keeps its own copy until replaced; and
    // the listeners it bound, taken back by HttpListeners).
    activated_ = systemd::ActivatedSockets::from_environment();
    systemd::Handover handover = take_handover();
    if (auto r = set_token_key(std::move(handover.token_key)); !r) {
        log_.error("startup_failed", {{"error", r.error().message}});
        return exit_code(r.error().code);
    }
    std::optional<Error> first_failure;
    bool any_startable = false;
    for (const auto& cfg : options_.config.profiles) {
        auto runtime = make_profile(cfg);
        profiles_.push_back(runtime);
        std::optional<engine::HandedOver> handed_over;
        for (auto& p : handover.profiles) {
            if (p.name == cfg.name && p.settings == systemd::credentials_settings_key(cfg) &&
                !p.credentials.access_key_id.empty()) {
                handed_over =
                    engine::HandedOver{std::move(p.credentials), p.received, std::move(p.certificate)};
                p.credentials.access_key_id.clear();
            }
        }
        runtime->start(std::move(handed_over));
        // A profile starts when it has credentials to serve or can sign for some; one that cannot shows in
        // status and health and keeps trying, while the others serve.
        const auto& engine = runtime->engine();
        if (engine.servable(now()) || engine.can_sign(now())) {
            any_startable = true;
        } else if (!first_failure) {
            first_failure =
                engine.last_error().value_or(make_error(Errc::internal, "the profile did not start"));
        }
    }
    if (!any_startable) {
        log_.error("startup_failed",
                   {{"code", errc_name(first_failure->code)},
                    {"error", "no profile can serve credentials: " + first_failure->message}});
        return startup_exit_code(first_failure->code);
    }
    if (auto r = listeners_.open(activated_); !r) {
        log_.error("listen_failed", {{"error", r.error().message}});
        return exit_code(r.error().code);
    }
    if (!options_.config.agent.socket_path.empty()) {
        if (auto r = control_.open(activated_); !r) {
            log_.error("listen_failed", {{"error", r.error().message}});
            return exit_code(r.error().code);
        }
    }
    if (auto r = prepare_files(); !r) {
        log_.error("startup_failed", {{"code", errc_name(r.error().code)}, {"error", r.error().message}});
        return startup_exit_code(r.error().code);
    }
    started_ = true;
    store_handover();
    listeners_.hold();
    wait_for_signal();
    // Ready means listening with keys loaded; the first CreateSession is not awaited (the surfaces say why
    // there are no credentials yet, and systemd must not kill a host that is merely offline).
    systemd::notify_systemd("READY=1");
    profile_changed();
    if (const auto interval = systemd::watchdog_interval()) {
        // Pinged from a timer on the event loop itself, at half of WatchdogSec=, so that a wedged loop stops
        // the pings and gets the agent restarted.
        watchdog_period_ = std::chrono::duration_cast<std::chrono::milliseconds>(*interval / 2);
        arm_watchdog();
    }
    arm_look();
    log_.info("started", {{"profiles", profiles_.size()}, {"version", kVersion}});

    io_.run();

    // A device operation still running on the key pool posts its completion to io_; let it finish, then run
    // those completions (their profiles are stopped and do nothing) before the profiles go away, here on the
    // loop's thread.
    key_pool_.join();
    io_.restart();
    io_.poll();
    profiles_.clear();
    log_.info("stopped");
    return 0;
}

// take_handover reads what the previous process stored; an unreadable or foreign one is logged and ignored
// (the agent then starts as on a fresh boot).
systemd::Handover Agent::take_handover() {
    auto fd = activated_.take("handover");
    if (!fd) {
        return {};
    }
    UniqueFd owned(*fd);
    auto text = systemd::read_stored(owned.get(), kMaxHandover);
    if (!text) {
        log_.warning("handover_ignored", {{"error", "cannot read it"}});
        return {};
    }
    auto handover = systemd::decode_handover(text->reveal());
    if (!handover) {
        log_.warning("handover_ignored", {{"error", handover.error().message}});
        return {};
    }
    return std::move(*handover);
}

// set_token_key keys the IMDS tokens with the handed-over key (tokens clients hold stay valid across a
// restart), or with 32 new random bytes.
Result<void> Agent::set_token_key(Secret handed_over) {
    if (handed_over.empty()) {
        auto fresh = random_secret(pki::HmacKey::random_size);
        if (!fresh) {
            return fresh.error();
        }
        handed_over = std::move(*fresh);
    }
    const std::string_view bytes = handed_over.reveal();
    hmac_ = std::make_unique<pki::HmacKey>(pki::HmacKey::from_bytes(
        std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size())));
    token_key_ = std::move(handed_over);
    return {};
}

// store_handover replaces what systemd keeps for the next process with what this one holds now. A no-op
// outside systemd.
void Agent::store_handover() {
    systemd::Handover handover;
    handover.token_key = token_key_.clone();
    for (const auto& profile : profiles_) {
        if (auto held = profile->handed_over()) {
            handover.profiles.push_back(systemd::HandedOverProfile{
                profile->name(), systemd::credentials_settings_key(profile->config()),
                std::move(held->credentials), held->received, std::move(held->certificate_fingerprint)});
        }
    }
    systemd::store_in_systemd("handover", systemd::encode_handover(handover).reveal());
}

// prepare_files checks at start what the surfaces write: each credentials file can be written, and each ECS
// token file is read or created. It runs once the listeners are open, so that a start failing there leaves
// no token file behind; the token files a failing start created are removed again.
Result<void> Agent::prepare_files() {
    for (const auto& profile : profiles_) {
        if (!profile->config().credentials_file_profile.empty()) {
            if (auto r = surfaces::check_credentials_file_writable(profile->credentials_path()); !r) {
                return make_error(Errc::config_invalid,
                                  "profiles." + profile->name() + ": credentials file: " + r.error().message);
            }
        }
    }
    std::vector<std::filesystem::path> created;
    for (const auto& profile : profiles_) {
        if (profile->config().ecs_path.empty()) {
            continue;
        }
        bool made = false;
        auto token = ensure_token_file(profile->config().ecs_token_file, &made);
        if (!token) {
            for (const auto& path : created) {
                ::unlink(path.c_str());
            }
            return token.error();
        }
        if (made) {
            created.push_back(profile->config().ecs_token_file);
        }
        profile->set_ecs_token(std::move(*token));
    }
    return {};
}

policy::AgentSnapshot Agent::snapshot() const {
    policy::AgentSnapshot snapshot;
    snapshot.version = kVersion;
    snapshot.config = options_.config_path.string();
    for (const auto& profile : profiles_) {
        snapshot.profiles.push_back(snapshot_of(*profile));
    }
    snapshot.requests = requests_;
    return snapshot;
}

policy::ProfileSnapshot Agent::snapshot_of(const ProfileRuntime& profile) const {
    policy::ProfileSnapshot p;
    profile.fill_snapshot(p);
    p.served = listeners_.served_lines(profile);
    if (!profile.config().credentials_file_profile.empty()) {
        p.served.push_back("credentials-file " + profile.credentials_path().string() + " [" +
                           profile.config().credentials_file_profile + "]");
    }
    if (!options_.config.agent.socket_path.empty()) {
        p.served.push_back("credential-process --profile " + profile.name());
    }
    return p;
}

// profile_changed runs after every step of a profile: held clients may go, and systemd hears the status when
// it changed or a refresh ended (`systemctl status` then shows when the last one happened).
void Agent::profile_changed(bool refreshed) {
    if (!started_ || stopping_) {
        return;
    }
    listeners_.update_holds();
    std::string status = "STATUS=" + policy::systemd_status(policy::agent_health(snapshot()));
    if (refreshed || status != status_sent_) {
        systemd::notify_systemd(status);
        status_sent_ = std::move(status);
    }
}

// reload re-reads the configuration (or, for an agent run from flags, looks at the identity files at once)
// and applies what changed: profiles added start, removed ones stop, changed ones take their new settings
// (and refresh, when their credentials depend on what changed, per policy::plan_reload). Agent-wide settings
// that need a restart (the Unix socket, the ECS and health listeners) keep their running values and are
// reported. A configuration that does not load or check is refused whole: nothing changes, and the error is
// returned.
Result<std::string> Agent::reload() {
    systemd::notify_systemd("RELOADING=1");
    log_.info("reloading");
    auto done = [this](Result<std::string> result) {
        systemd::notify_systemd("READY=1");
        status_sent_.clear();
        profile_changed();
        return result;
    };
    if (options_.config_path.empty()) {
        for (const auto& profile : profiles_) {
            profile->look();
        }
        return done(std::string(R"({"profiles":)") + std::to_string(profiles_.size()) + "}");
    }
    auto loaded = config::load_config(options_.config_path, options_.environment);
    Result<void> checked = loaded ? Result<void>{} : Result<void>(loaded.error());
    for (std::size_t i = 0; checked && i < loaded->profiles.size(); ++i) {
        checked = check_profile_settings(loaded->profiles[i]);
    }
    if (!checked) {
        log_.error("reload_failed", {{"error", checked.error().message}});
        Error refused = checked.error();
        refused.message += " (the configuration in use is kept)";
        return done(refused);
    }
    config::AgentConfig next = std::move(*loaded);
    const policy::ReloadPlan plan = policy::plan_reload(options_.config, next);
    if (!plan.restart_needed.empty()) {
        std::string settings;
        for (const auto& name : plan.restart_needed) {
            settings += (settings.empty() ? "" : ",") + name;
        }
        log_.warning("reload_partial", {{"settings", settings}, {"reason", "take effect at the next start"}});
    }
    // What applies at once is handed below: the log level here, the limits to the HTTP servers, the refresh
    // settings to the engines; the rest keeps its running values.
    next.agent = policy::settings_in_effect(options_.config.agent, std::move(next.agent));
    const auto listed = [](const std::vector<std::string>& names, const std::string& name) {
        return std::find(names.begin(), names.end(), name) != names.end();
    };
    log_.set_level(next.agent.log_level);
    const config::AgentConfig previous = std::exchange(options_.config, std::move(next));
    const config::AgentConfig& current = options_.config;
    std::vector<std::shared_ptr<ProfileRuntime>> kept;
    std::vector<std::shared_ptr<ProfileRuntime>> added;
    for (const auto& cfg : current.profiles) {
        auto runtime = profile(cfg.name);
        if (runtime) {
            const config::ProfileConfig* old = previous.find_profile(cfg.name);
            const bool token_changed = old == nullptr || cfg.ecs_token_file != old->ecs_token_file;
            runtime->reconfigure(cfg, engine::engine_settings(current.agent, cfg),
                                 listed(plan.credentials_changed, cfg.name));
            if (listed(plan.listeners_changed, cfg.name)) {
                listeners_.close_profile(cfg.name);
                listeners_.open_profile(*runtime);
            }
            if (!cfg.ecs_path.empty() && (token_changed || runtime->ecs_token().empty())) {
                runtime->load_ecs_token();  // a failure is the ECS surface's, retried; the profile stays
            }
        } else {
            runtime = make_profile(cfg);
            added.push_back(runtime);
        }
        kept.push_back(std::move(runtime));
    }
    for (const auto& old : profiles_) {
        if (std::find(kept.begin(), kept.end(), old) == kept.end()) {
            old->stop();
            listeners_.close_profile(old->name());
            log_.info("profile_removed", {{"profile", old->name()}});
        }
    }
    profiles_ = std::move(kept);
    for (const auto& runtime : added) {
        runtime->start(std::nullopt);
        listeners_.open_profile(*runtime);
        if (!runtime->config().ecs_path.empty()) {
            runtime->load_ecs_token();
        }
    }
    listeners_.apply_limits();
    store_handover();
    log_.info("reloaded", {{"profiles", profiles_.size()},
                           {"added", plan.added.size()},
                           {"removed", plan.removed.size()},
                           {"refreshed", plan.credentials_changed.size() + plan.added.size()}});
    nlohmann::ordered_json summary;
    summary["profiles"] = profiles_.size();
    summary["added"] = plan.added;
    summary["removed"] = plan.removed;
    summary["refreshed"] = plan.credentials_changed;
    summary["restart_needed"] = plan.restart_needed;
    return done(summary.dump());
}

void Agent::wait_for_signal() {
    signals_.async_wait([this](boost::system::error_code ec, int signal) {
        if (ec) {
            return;
        }
        if (signal == SIGHUP) {
            (void)reload();  // a refusal is logged; SIGHUP has no one to answer
            wait_for_signal();
            return;
        }
        stop();
    });
}

void Agent::arm_watchdog() {
    watchdog_.expires_after(watchdog_period_);
    watchdog_.async_wait([this](boost::system::error_code ec) {
        if (!ec && !stopping_) {
            systemd::notify_systemd("WATCHDOG=1");
            arm_watchdog();
        }
    });
}

// arm_look has every profile look at its identity files and the clocks once a second: a renewal written to
// disk is loaded at once (with plain paths; under LoadCredential= a renewal restarts the service), and the
// wall clock is compared with what is held (the refresh timers run on the monotonic clock, which stands
// still while the host sleeps).
void Agent::arm_look() {
    look_.expires_after(std::chrono::seconds(1));
    look_.async_wait([this](boost::system::error_code ec) {
        if (ec || stopping_) {
            return;
        }
        for (const auto& profile : profiles_) {
            profile->look();
        }
        arm_look();
    });
}

void Agent::stop() {
    systemd::notify_systemd("STOPPING=1");
    log_.info("stopping");
    stopping_ = true;
    watchdog_.cancel();
    look_.cancel();
    boost::system::error_code ignored;
    signals_.cancel(ignored);
    listeners_.stop();
    control_.stop();
    for (const auto& profile : profiles_) {
        profile->stop();
    }
}

}  // namespace

int run_agent(AgentOptions options, Logger& log) {
    // Ignore SIGPIPE: a client that goes away mid-answer must not kill the agent.
    std::signal(SIGPIPE, SIG_IGN);
    Agent agent(std::move(options), log);
    return agent.run();
}

}  // namespace rad::agent
