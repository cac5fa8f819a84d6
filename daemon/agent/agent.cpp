// The agent's life: start (identities, listeners, files), signals, the watchdog and the clock watch, stop.

#include "daemon/agent/agent.hpp"

#include "common/version.hpp"
#include "daemon/agent/agent_runtime.hpp"

namespace rad::daemon {

Result<void> check_profile_settings(const config::ProfileConfig& profile) {
    // The signer spells the fields as the file's keys and says which one is at fault.
    static constexpr signer::EndpointNames kKeys{"trust_anchor_arn", "profile_arn", "role_arn",
                                                 "region",           "endpoint",    "use_fips_endpoint"};
    std::string_view key = kKeys.trust_anchor_arn;
    auto resolved = signer::resolve_endpoint(endpoint_options(profile), kKeys, &key);
    if (resolved) {
        return {};
    }
    return make_error(Errc::config_invalid, profile.source.where(key) + ": profiles." + profile.name + "." +
                                                std::string(key) + ": " + resolved.error().message);
}

}  // namespace rad::daemon

namespace rad::daemon::agent_detail {

int Agent::run() {
    // What systemd passes: the listening sockets, and what the previous process of this service left in
    // its file-descriptor store (read, then closed: systemd keeps its own copy until replaced).
    activated_ = ActivatedSockets::from_environment();
    Handover handover = take_handover();
    if (auto r = set_token_key(std::move(handover.token_key)); !r) {
        log_.error("startup_failed", {{"error", r.error().message}});
        return exit_code(r.error().code);
    }

    for (const auto& cfg : options_.config.profiles) {
        if (auto r = check_profile_settings(cfg); !r) {
            log_.error("profile_invalid", {{"profile", cfg.name}, {"error", r.error().message}});
            return exit_code(r.error().code);
        }
        // A fleet restarting together (power event, mass deploy) would otherwise call CreateSession in
        // the same second everywhere; startup_jitter_seconds spreads the first calls.
        const auto jitter = std::chrono::milliseconds(
            static_cast<long long>(std::uniform_real_distribution<double>(0.0, 1.0)(rng_) *
                                   options_.config.agent.startup_jitter_seconds * 1000.0));
        auto profile =
            std::make_shared<Profile>(io_, cfg, options_.config.agent, SteadyClock::now() + jitter);
        const bool adopted = adopt_handed_over(*profile, handover);
        if (auto r = load_identity_now(*profile); !r) {
            log_.error(
                "profile_invalid",
                {{"profile", cfg.name}, {"code", errc_name(r.error().code)}, {"error", r.error().message}});
            // Credentials handed over by the previous process stay in service (e.g. a restart for a
            // renewal whose key has not arrived yet: the next restart brings it); the failure shows in
            // status and STATUS=, and the refresh that fails again records it. Without them there is
            // nothing to serve, and the configuration is the operator's to fix.
            if (!adopted) {
                return startup_exit_code(r.error().code);
            }
            profile->cache.request_refresh_by(SteadyClock::now());
        }
        profiles_.push_back(std::move(profile));
    }
    if (auto r = open_listeners(); !r) {
        log_.error("listen_failed", {{"error", r.error().message}});
        return exit_code(r.error().code);
    }
    if (auto r = prepare_files(); !r) {
        log_.error("startup_failed", {{"code", errc_name(r.error().code)}, {"error", r.error().message}});
        return startup_exit_code(r.error().code);
    }
    hold_listeners();
    wait_for_signal();
    for (auto& profile : profiles_) {
        schedule(profile);
    }
    // Ready means listening with keys loaded; the first CreateSession is not awaited (the surfaces say
    // why there are no credentials yet, and systemd must not kill a host that is merely offline).
    notify_systemd("READY=1");
    notify_status();
    start_watchdog();
    arm_clock_watch();
    log_.info("started", {{"profiles", profiles_.size()}, {"version", kVersion}});

    io_.run();

    // A refresh still running on a worker posts its completion to io_; let it finish, then run those
    // completions (they see stopping_ and do nothing) before the profiles and their timers go away.
    workers_.join();
    io_.restart();
    io_.poll();
    profiles_.clear();
    log_.info("stopped");
    return 0;
}

// startup_exit_code is the exit status for a profile that cannot start. The one-shot commands exit with
// the failure's own code (65 for an expired certificate, 77 for a refused PIN, ...); for the service
// every such failure is the operator's to fix in what the configuration points at, so it exits 78
// (EX_CONFIG), which the unit's RestartPreventExitStatus keeps from a restart loop that would, with a
// refused PIN, walk the token into lock-out. A device that cannot be reached yet (69) or a failure of
// our own (70) may pass, so those are left to Restart=on-failure.
int Agent::startup_exit_code(Errc code) noexcept {
    const bool may_pass = is_retryable(code) || code == Errc::crypto_failure || code == Errc::internal;
    return may_pass ? exit_code(code) : exit_code(Errc::config_invalid);
}

// load_identity_now prepares the session synchronously at startup, so that a broken key or certificate
// is reported before the agent says it is ready.
Result<void> Agent::load_identity_now(Profile& profile) {
    auto stamps = identity_stamps(profile.config.identity);
    auto session = prepare_session(profile.config, Diagnostics{false, stderr});
    if (!session) {
        return session.error();
    }
    profile.session = std::make_shared<const PreparedSession>(std::move(*session));
    profile.stamps = std::move(stamps);
    log_identity(profile);
    return {};
}

// prepare_files checks at start what the surfaces write: each credentials file can be written, and each
// ECS token file is read or created. It runs once the listeners are open, so that a start failing there
// leaves no token file behind; the token files a failing start created are removed again.
Result<void> Agent::prepare_files() {
    for (auto& profile : profiles_) {
        if (!profile->config.credentials_file_profile.empty()) {
            const auto path = credentials_path(*profile);
            if (auto r = check_credentials_file_writable(path); !r) {
                return make_error(Errc::config_invalid, "profiles." + profile->config.name +
                                                            ": credentials file: " + r.error().message);
            }
        }
    }
    std::vector<std::filesystem::path> created;
    for (auto& profile : profiles_) {
        if (profile->config.ecs_path.empty()) {
            continue;
        }
        bool made = false;
        auto token = ensure_token_file(profile->config.ecs_token_file, &made);
        if (!token) {
            for (const auto& path : created) {
                ::unlink(path.c_str());
            }
            return token.error();
        }
        if (made) {
            created.push_back(profile->config.ecs_token_file);
        }
        profile->ecs_token = std::move(*token);
    }
    return {};
}

void Agent::log_identity(const Profile& profile) {
    const auto& leaf = profile.session->identity.leaf;
    const auto days_left =
        std::chrono::duration_cast<std::chrono::hours>(leaf.not_after() - WallClock::now()).count() / 24;
    log_.info("identity_loaded", {{"profile", profile.config.name},
                                  {"subject", leaf.subject()},
                                  {"serial", leaf.serial_decimal()},
                                  {"not_after", format_iso8601(leaf.not_after())},
                                  {"key", profile.session->identity.key.description()}});
    // Once a day per profile and certificate: every reload and rotation check would otherwise repeat it.
    const auto now = WallClock::now();
    auto& warned = expiry_warned_[profile.config.name];
    const std::string serial = leaf.serial_decimal();
    if (days_left < kCertificateWarningDays &&
        (warned.serial != serial || now - warned.at >= std::chrono::hours(24))) {
        warned = ExpiryWarning{serial, now};
        log_.warning("certificate_expiring", {{"profile", profile.config.name},
                                              {"days_left", days_left},
                                              {"not_after", format_iso8601(leaf.not_after())}});
    }
}

std::shared_ptr<Profile> Agent::find(std::string_view name) const {
    for (const auto& profile : profiles_) {
        if (profile->config.name == name) {
            return profile;
        }
    }
    return nullptr;
}

std::filesystem::path Agent::credentials_path(const Profile& profile) const {
    return profile.config.credentials_file.empty() ? default_credentials_file()
                                                   : profile.config.credentials_file;
}

// notify_status tells systemd one line about every profile (`systemctl status` shows it).
void Agent::notify_status() {
    const auto now = SteadyClock::now();
    std::size_t ok = 0;
    std::string failing;
    for (const auto& profile : profiles_) {
        if (profile->cache.current(now, WallClock::now())) {
            ++ok;
        }
        if (const auto& error = profile->cache.last_error()) {
            failing += (failing.empty() ? "" : "; ") + profile->config.name + ": " + errc_name(error->code);
        }
    }
    std::string status = "STATUS=" + std::to_string(ok) + "/" + std::to_string(profiles_.size()) +
                         " profiles serving credentials";
    if (!failing.empty()) {
        status += "; failing: " + failing;
    }
    notify_systemd(status);
}

// --- Signals -------------------------------------------------------------------------------------------
void Agent::wait_for_signal() {
    signals_.async_wait([this](boost::system::error_code ec, int signal) {
        if (ec) {
            return;
        }
        if (signal == SIGHUP) {
            reload();
            wait_for_signal();
            return;
        }
        stop();
    });
}

// start_watchdog pings systemd from a timer on the event loop itself, at half of WatchdogSec=, so that a
// wedged loop stops the pings and gets the agent restarted.
void Agent::start_watchdog() {
    const auto interval = watchdog_interval();
    if (!interval) {
        return;
    }
    watchdog_period_ = std::chrono::duration_cast<std::chrono::milliseconds>(*interval / 2);
    arm_watchdog();
}

void Agent::arm_watchdog() {
    watchdog_.expires_after(watchdog_period_);
    watchdog_.async_wait([this](boost::system::error_code ec) {
        if (!ec && !stopping_) {
            notify_systemd("WATCHDOG=1");
            arm_watchdog();
        }
    });
}

// arm_clock_watch compares the wall clock with each profile's Expiration once a second, and looks at the
// identity files of profiles whose identity did not load (identity_failed_stamps). The refresh
// timers run on the monotonic clock, which stands still while the host sleeps and ignores a clock that is
// set forward: after either, credentials that are really expired would wait for a timer that has not
// fired. Each set held triggers at most one such refresh, so a wall clock that stays ahead cannot turn
// this into a loop (CreateSession refuses a clock more than 5 minutes off anyway).
void Agent::arm_clock_watch() {
    clock_watch_.expires_after(std::chrono::seconds(1));
    clock_watch_.async_wait([this](boost::system::error_code ec) {
        if (ec || stopping_) {
            return;
        }
        const auto now = SteadyClock::now();
        const auto wall = WallClock::now();
        for (const auto& profile : profiles_) {
            const auto& held = profile->cache.held();
            if (!profile->cache.expired_by_wall_clock(now, wall) || profile->cache.refresh_in_flight() ||
                held->received == profile->wall_clock_refresh_for) {
                continue;
            }
            profile->wall_clock_refresh_for = held->received;
            log_.warning("wall_clock_expired", {{"profile", profile->config.name},
                                                {"expiration", format_iso8601(held->credentials.expiration)},
                                                {"monotonic_left", whole_seconds(held->deadline - now)}});
            refresh_now(profile, RefreshReason::wall_clock);
        }
        for (const auto& profile : profiles_) {
            if (profile->identity_failed_stamps && !profile->cache.refresh_in_flight() &&
                identity_stamps(profile->config.identity) != *profile->identity_failed_stamps) {
                refresh_now(profile, RefreshReason::rotation);
            }
        }
        arm_clock_watch();
    });
}

void Agent::stop() {
    notify_systemd("STOPPING=1");
    log_.info("stopping");
    watchdog_.cancel();
    clock_watch_.cancel();
    hold_cap_.cancel();
    if (health_server_) {
        health_server_->stop_accepting();
    }
    stopping_ = true;
    boost::system::error_code ignored;
    signals_.cancel(ignored);
    for (auto& profile : profiles_) {
        profile->timer.cancel();
        profile->surface_retry.cancel();
        for (auto& server : profile->imds_servers) {
            server->stop_accepting();
        }
        profile->waiters.clear();
    }
    if (ecs_server_) {
        ecs_server_->stop_accepting();
    }
    if (control_) {
        control_->stop();
    }
}

}  // namespace rad::daemon::agent_detail

namespace rad::daemon {

int run_agent(AgentOptions options, Logger& log) {
    // Ignore SIGPIPE: a client that goes away mid-answer must not kill the agent.
    std::signal(SIGPIPE, SIG_IGN);
    agent_detail::Agent agent(std::move(options), log);
    return agent.run();
}

}  // namespace rad::daemon
