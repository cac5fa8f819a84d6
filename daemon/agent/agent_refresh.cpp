// Refreshing a profile: scheduling, the worker that signs and calls CreateSession, the outcome, and the
// surfaces that follow the credentials (the credentials file) or fail on their own.

#include "daemon/agent/agent_runtime.hpp"

namespace rad::daemon::agent_detail {

// --- Refresh -------------------------------------------------------------------------------------------
void Agent::schedule(const std::shared_ptr<Profile>& profile) {
    if (stopping_ || profile->cache.refresh_in_flight()) {
        return;
    }
    profile->timer.expires_at(profile->cache.next_refresh());
    std::weak_ptr<Profile> weak = profile;
    profile->timer.async_wait([this, weak](boost::system::error_code ec) {
        auto p = weak.lock();
        if (!ec && p && !stopping_) {
            const auto reason = p->cache.consecutive_failures() > 0 ? RefreshReason::retry
                                : p->cache.held()                   ? RefreshReason::timer
                                                                    : RefreshReason::startup;
            start_refresh(p, reason);
        }
    });
}

void Agent::refresh_now(const std::shared_ptr<Profile>& profile, RefreshReason reason) {
    if (profile->cache.refresh_in_flight()) {
        return;  // single flight: the waiter is answered when the running refresh completes
    }
    profile->cache.request_refresh_by(SteadyClock::now());
    profile->timer.cancel();
    start_refresh(profile, reason);
}

// start_refresh runs one refresh on a worker thread. The worker holds only values and shared immutable
// state (its settings and the prepared session), never the Profile: a profile that a reload removes
// meanwhile is destroyed on the event loop, with its timers and servers, and its completion is dropped.
void Agent::start_refresh(const std::shared_ptr<Profile>& profile, RefreshReason reason) {
    if (!profile->cache.begin_refresh()) {
        return;
    }
    auto stamps = identity_stamps(profile->config.identity);
    const bool reload = !profile->session || profile->settings_changed || stamps != profile->stamps;
    profile->settings_changed = false;
    auto session = profile->session;
    auto settings = profile->worker_config;
    std::weak_ptr<Profile> weak = profile;
    net::post(workers_, [this, weak, reason, reload, session, settings, stamps = std::move(stamps),
                         name = profile->config.name]() mutable {
        auto outcome = std::make_shared<RefreshOutcome>();
        outcome->reason = reason;
        outcome->stamps = std::move(stamps);
        // Signing and the HTTPS exchange happen here, on a worker: the event loop keeps serving
        // meanwhile.
        if (reload) {
            auto prepared = prepare_session(*settings, Diagnostics{false, stderr});
            if (!prepared) {
                // A rotation that fails its checks (e.g. a key that does not match the new certificate)
                // is an error of this refresh; signing on with the old key in memory would hide it.
                outcome->credentials = prepared.error();
                outcome->identity_failed = true;
                session = nullptr;
            } else {
                session = std::make_shared<const PreparedSession>(std::move(*prepared));
                outcome->new_session = session;
            }
        }
        if (session) {
            RetryOptions once;
            once.max_attempts = 1;  // the cache's own backoff decides when to try again
            const auto started = SteadyClock::now();
            outcome->credentials = fetch_credentials(session->identity, session->params, session->endpoint,
                                                     once, production_hooks(session->client, Diagnostics{}));
            outcome->create_session_seconds =
                std::chrono::duration<double>(SteadyClock::now() - started).count();
            log_.debug(
                "create_session",
                {{"profile", name},
                 {"ms", std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started)
                            .count()}});
        }
        net::post(io_, [this, weak, outcome] {
            if (auto p = weak.lock()) {
                finish_refresh(p, *outcome);
            }
        });
    });
}

void Agent::finish_refresh(const std::shared_ptr<Profile>& profile, RefreshOutcome& outcome) {
    if (stopping_) {
        return;
    }
    if (!std::exchange(profile->first_refresh_done, true)) {
        release_listeners(*profile);
    }
    if (outcome.identity_failed) {
        profile->identity_failed_stamps = outcome.stamps;
    } else {
        profile->identity_failed_stamps.reset();
    }
    if (outcome.new_session) {
        const bool rotated = profile->session != nullptr;
        profile->session = outcome.new_session;
        profile->stamps = std::move(outcome.stamps);
        if (rotated) {
            log_.info("identity_reloaded", {{"profile", profile->config.name}});
        }
        log_identity(*profile);
    }
    const auto now = SteadyClock::now();
    const double jitter = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    if (outcome.create_session_seconds) {
        profile->create_session_seconds.observe(*outcome.create_session_seconds);
    }
    if (outcome.credentials) {
        ++profile->refresh_outcomes["ok"];
        const std::string key = signer::redact_access_key_id(outcome.credentials->access_key_id);
        profile->last_updated = WallClock::now();
        profile->cache.complete_success(std::move(*outcome.credentials), WallClock::now(), now, jitter);
        const auto& held = *profile->cache.held();
        write_credentials_file_soon(profile);
        store_handover();
        log_.info("refresh_ok", {{"profile", profile->config.name},
                                 {"reason", refresh_reason_name(outcome.reason)},
                                 {"access_key", key},
                                 {"expiration", format_iso8601(held.credentials.expiration)},
                                 {"next_refresh_in", whole_seconds(profile->cache.next_refresh() - now)}});
    } else {
        const Error error = outcome.credentials.error();
        const auto decision = profile->cache.complete_failure(error, now, jitter);
        ++profile->refresh_outcomes[decision.retryable ? "retryable" : "rejected"];
        const bool serving = static_cast<bool>(profile->cache.current(now, WallClock::now()));
        const std::initializer_list<LogField> fields{{"profile", profile->config.name},
                                                     {"reason", refresh_reason_name(outcome.reason)},
                                                     {"class", decision.retryable ? "retryable" : "rejected"},
                                                     {"code", errc_name(error.code)},
                                                     {"error", error.message},
                                                     {"retry_in", whole_seconds(decision.retry_at - now)},
                                                     {"serving", serving ? "last-good" : "nothing"},
                                                     {"failures", profile->cache.consecutive_failures()}};
        if (decision.retryable && serving) {
            log_.warning("refresh_failed", fields);
        } else {
            log_.error("refresh_failed", fields);
        }
    }
    if (profile->settings_changed) {
        // A SIGHUP arrived while this refresh ran with the old settings: go again with the new ones.
        profile->cache.request_refresh_by(now);
    }
    auto waiters = std::move(profile->waiters);
    profile->waiters.clear();
    for (auto& waiter : waiters) {
        waiter();
    }
    schedule(profile);
    notify_status();
}

// write_credentials_file_soon writes the credentials held now to the profile's credentials file on a
// worker; a write already running is followed by one more with whatever is held when it ends.
void Agent::write_credentials_file_soon(const std::shared_ptr<Profile>& profile) {
    if (profile->file_write_in_flight) {
        profile->file_write_again = true;
        return;
    }
    const auto& held = profile->cache.held();
    if (!held || profile->config.credentials_file_profile.empty()) {
        return;
    }
    profile->file_write_in_flight = true;
    auto credentials = std::make_shared<const signer::Credentials>(clone_credentials(held->credentials));
    std::weak_ptr<Profile> weak = profile;
    net::post(workers_, [this, weak, credentials, path = credentials_path(*profile),
                         section = profile->config.credentials_file_profile]() mutable {
        auto result = std::make_shared<Result<void>>(write_credentials_file(path, section, *credentials));
        credentials.reset();
        net::post(io_, [this, weak, result, path] {
            if (auto p = weak.lock()) {
                finish_credentials_file_write(p, *result, path);
            }
        });
    });
}

void Agent::finish_credentials_file_write(const std::shared_ptr<Profile>& profile,
                                          const Result<void>& result,
                                          const std::filesystem::path& path) {
    profile->file_write_in_flight = false;
    if (!result) {
        surface_failed(profile, "credentials_file", result.error());
        return;
    }
    log_.debug("credentials_file_written", {{"profile", profile->config.name}, {"file", path.string()}});
    surface_ok(profile, "credentials_file");
    if (std::exchange(profile->file_write_again, false)) {
        write_credentials_file_soon(profile);
    }
}

// --- Surfaces that fail on their own
// ---------------------------------------------------------------------
// surface_failed records the failure (status, /healthz, /metrics), logs it and retries the profile's
// failing surfaces after 1, 2, 4 ... 60 s: local I/O costs no CreateSession.
void Agent::surface_failed(const std::shared_ptr<Profile>& profile,
                           const std::string& surface,
                           const Error& error) {
    auto& state = profile->surfaces[surface];
    state.error = error;
    ++state.failures;
    const auto delay = std::chrono::seconds(1 << std::min(profile->surface_retry_attempts, 6));
    const auto retry = std::min(delay, std::chrono::seconds(60));
    log_.error("surface_failed", {{"profile", profile->config.name},
                                  {"surface", surface},
                                  {"code", errc_name(error.code)},
                                  {"error", error.message},
                                  {"retry_in", retry.count()}});
    if (stopping_) {
        return;
    }
    ++profile->surface_retry_attempts;
    profile->surface_retry.expires_after(retry);
    std::weak_ptr<Profile> weak = profile;
    profile->surface_retry.async_wait([this, weak](boost::system::error_code ec) {
        auto p = weak.lock();
        if (!ec && p && !stopping_) {
            retry_surfaces(p);
        }
    });
}

void Agent::surface_ok(const std::shared_ptr<Profile>& profile, const std::string& surface) {
    auto& state = profile->surfaces[surface];
    if (state.error) {
        log_.info("surface_recovered", {{"profile", profile->config.name}, {"surface", surface}});
    }
    state.error.reset();
    const bool all_ok = std::all_of(profile->surfaces.begin(), profile->surfaces.end(),
                                    [](const auto& entry) { return !entry.second.error; });
    if (all_ok) {
        profile->surface_retry_attempts = 0;
    }
}

void Agent::retry_surfaces(const std::shared_ptr<Profile>& profile) {
    const auto failing = [&](const char* surface) {
        const auto it = profile->surfaces.find(surface);
        return it != profile->surfaces.end() && it->second.error;
    };
    if (failing("credentials_file")) {
        write_credentials_file_soon(profile);
    }
    if (failing("ecs_token")) {
        load_ecs_token(profile);
    }
    if (failing("imds") && profile->imds_servers.empty()) {
        open_imds_or_record(profile);
    }
}

// load_ecs_token reads (or creates) the profile's ECS token file; a failure is the surface's.
bool Agent::load_ecs_token(const std::shared_ptr<Profile>& profile) {
    auto token = ensure_token_file(profile->config.ecs_token_file);
    if (!token) {
        surface_failed(profile, "ecs_token", token.error());
        return false;
    }
    profile->ecs_token = std::move(*token);
    surface_ok(profile, "ecs_token");
    return true;
}

// refresh_if_rotated refreshes a profile whose certificate, key or secret files changed since its
// identity was loaded (or since it last failed to load); true when it did.
bool Agent::refresh_if_rotated(const std::shared_ptr<Profile>& profile) {
    const auto stamps = identity_stamps(profile->config.identity);
    const auto& reference =
        profile->identity_failed_stamps ? *profile->identity_failed_stamps : profile->stamps;
    if (stamps == reference) {
        return false;
    }
    refresh_now(profile, RefreshReason::rotation);
    return true;
}

}  // namespace rad::daemon::agent_detail
