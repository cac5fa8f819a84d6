#include "daemon/engine/profile_engine.hpp"

#include <algorithm>
#include <random>

#include "common/time_format.hpp"
#include "daemon/policy/backoff.hpp"

namespace rad::engine {

namespace {

// Surfaces that fail on their own are local I/O (a file, a listener): retried after 1, 2, 4 ... 60 s, which
// costs no CreateSession.
constexpr policy::BackoffPolicy kSurfaceRetry{Millis(1000), Millis(60000)};

// kCertificateWarning: a certificate with less left than this is warned about in the log once a day.
constexpr auto kCertificateWarning = std::chrono::hours(24 * policy::kCertificateWarningDays);

std::int64_t whole_seconds(std::chrono::steady_clock::duration d) {
    return std::chrono::duration_cast<std::chrono::seconds>(d).count();
}

// steady_at is the monotonic instant at which the wall clock will read `wall`, if it keeps running.
SteadyTime steady_at(WallTime wall, Instant now) {
    return now.steady + std::chrono::duration_cast<std::chrono::steady_clock::duration>(wall - now.wall);
}

signer::Credentials clone(const signer::Credentials& c) {
    return signer::Credentials{c.access_key_id, c.secret_access_key.clone(), c.session_token.clone(),
                               c.expiration};
}

}  // namespace

EngineSettings engine_settings(const config::AgentSettings& agent, const config::ProfileConfig& profile) {
    EngineSettings settings;
    settings.refresh.refresh_at_min = agent.refresh_window_min;
    settings.refresh.refresh_at_max = agent.refresh_window_max;
    settings.refresh.retry_cap = std::chrono::seconds(agent.retry_cap_seconds);
    settings.startup_jitter = std::chrono::seconds(agent.startup_jitter_seconds);
    settings.credentials_file = !profile.credentials_file_profile.empty();
    return settings;
}

bool on_demand(RefreshReason reason) noexcept {
    switch (reason) {
        case RefreshReason::fast_path:
        case RefreshReason::reload:
        case RefreshReason::rotation:
        case RefreshReason::wall_clock:
        case RefreshReason::client:
            return true;
        case RefreshReason::startup:
        case RefreshReason::timer:
        case RefreshReason::retry:
        case RefreshReason::command:
            return false;
    }
    return false;
}

const char* refresh_reason_name(RefreshReason reason) noexcept {
    switch (reason) {
        case RefreshReason::startup:
            return "startup";
        case RefreshReason::timer:
            return "timer";
        case RefreshReason::retry:
            return "retry";
        case RefreshReason::fast_path:
            return "fast_path";
        case RefreshReason::reload:
            return "reload";
        case RefreshReason::rotation:
            return "rotation";
        case RefreshReason::wall_clock:
            return "wall_clock";
        case RefreshReason::command:
            return "command";
        case RefreshReason::client:
            return "client";
    }
    return "timer";
}

const char* profile_state_name(ProfileState state) noexcept {
    switch (state) {
        case ProfileState::starting:
            return "starting";
        case ProfileState::fresh:
            return "fresh";
        case ProfileState::stale:
            return "stale";
        case ProfileState::failing:
            return "failing";
    }
    return "unknown";
}

ProfileEngine::ProfileEngine(std::string name, EngineSettings settings, std::uint64_t seed)
    : name_(std::move(name)), settings_(settings), rng_(seed) {}

std::vector<Command> ProfileEngine::handle(const Event& event, Instant now) {
    Out out;
    if (stopped_) {
        return out;
    }
    std::visit([&](const auto& e) { on(e, now, out); }, event);
    advance(now, out);
    return out;
}

SteadyTime ProfileEngine::wake_at() const noexcept {
    if (!started_ || stopped_) {
        return SteadyTime::max();
    }
    SteadyTime at = SteadyTime::max();
    if (!in_flight_ && !loading_) {
        at = identity_stale_ ? SteadyTime::min() : next_refresh_;
    }
    for (const auto& [name, surface] : surfaces_) {
        at = std::min(at, surface.retry_at);
    }
    return at;
}

// --- Events ----------------------------------------------------------------------------------------------

void ProfileEngine::on(const Started& e, Instant now, Out& out) {
    if (started_) {
        return;
    }
    started_ = true;
    // A fleet restarting together (power event, mass deploy) would otherwise call CreateSession in the same
    // second everywhere; startup_jitter spreads the first calls.
    const auto delay = std::chrono::duration_cast<Millis>(settings_.startup_jitter * jitter());
    next_refresh_ = now.steady + delay;
    reason_ = RefreshReason::startup;
    if (e.handed_over && e.handed_over->credentials.expiration - now.wall > settings_.refresh.serve_margin) {
        accept(clone(e.handed_over->credentials), e.handed_over->received, now);
        credentials_fingerprint_ = e.handed_over->certificate_fingerprint;
        reason_ = RefreshReason::timer;
        log(out, LogLevel::info, "credentials_adopted",
            {{"profile", name_},
             {"access_key", signer::redact_access_key_id(held_->credentials.access_key_id)},
             {"expiration", format_iso8601(held_->credentials.expiration)},
             {"next_refresh_in", whole_seconds(next_refresh_ - now.steady)}});
        out.emplace_back(CredentialsChanged{});
    }
}

void ProfileEngine::on(const Tick&, Instant, Out&) {}

void ProfileEngine::on(const IdentityFilesChanged&, Instant, Out&) {
    // Loaded at once (advance): loading local files costs no CreateSession, and a renewal is to be used now.
    identity_stale_ = true;
}

void ProfileEngine::on(const IdentityLoaded& e, Instant now, Out& out) {
    loading_ = false;
    if (!e.identity) {
        // A renewal caught half-way (the new certificate before its key), a corrected file not there yet, a
        // token that went away: the credentials held stay in service, and signing on with the identity in
        // memory would hide the problem. The next change of the files is tried at once.
        identity_usable_ = false;
        identity_error_ = e.identity.error();
        fail(e.identity.error(), now, out);
        return;
    }
    const IdentityInfo& info = *e.identity;
    const bool renewed = identity_ && identity_->fingerprint != info.fingerprint;
    const bool had_failed = identity_error_.has_value() || (last_error_ && !identity_usable_);
    identity_ = info;
    identity_usable_ = true;
    identity_error_.reset();
    if (renewed) {
        log(out, LogLevel::info, "identity_reloaded", {{"profile", name_}});
    }
    log(out, LogLevel::info, "identity_loaded",
        {{"profile", name_},
         {"subject", info.subject},
         {"serial", info.serial},
         {"not_before", format_iso8601(info.not_before)},
         {"not_after", format_iso8601(info.not_after)},
         {"key", info.key_description}});
    if (held_ && credentials_fingerprint_.empty()) {
        // Handed over by an agent that did not say which certificate they came from: taken as this one's.
        credentials_fingerprint_ = info.fingerprint;
    }
    if (held_ && credentials_fingerprint_ != info.fingerprint) {
        // A renewed certificate (or a new key with it) is used for a CreateSession at once; the credentials
        // held stay in service meanwhile.
        refresh_soon(now, RefreshReason::rotation);
    } else if (had_failed && failures_ > 0) {
        // The files that failed to load were fixed: no reason to wait out the failure's backoff.
        refresh_soon(now, RefreshReason::rotation);
    }
}

void ProfileEngine::on(const SessionAnswered& e, Instant now, Out& out) {
    if (!in_flight_) {
        return;
    }
    in_flight_ = false;
    create_session_seconds_.observe(std::chrono::duration<double>(now.steady - sent_at_).count());
    if (!e.credentials) {
        fail(e.credentials.error(), now, out);
    } else if (policy::too_short(settings_.refresh, e.credentials->expiration, now.wall)) {
        // Served as long as they may be, but as a failure: a success would schedule the next refresh within
        // seconds, and a host whose clock runs ahead would then call CreateSession in a loop.
        const auto left = whole_seconds(e.credentials->expiration - now.wall);
        Error error = make_error(
            Errc::credentials_too_short,
            "the credentials expire " + std::to_string(left) + " s from now by this host's clock (" +
                format_iso8601(e.credentials->expiration) +
                "), too soon to be served: is this host's clock ahead of the service's, or the session cut "
                "that short?");
        if (!held_ || e.credentials->expiration > held_->credentials.expiration) {
            accept(clone(*e.credentials), now.wall, now);
            credentials_fingerprint_ = identity_ ? identity_->fingerprint : "";
            if (servable(now)) {
                out.emplace_back(CredentialsChanged{});
            }
        }
        fail(std::move(error), now, out);
    } else {
        succeed(clone(*e.credentials), now, out);
    }
    if (std::exchange(refresh_again_, false)) {
        // The settings changed while this CreateSession ran with the old ones.
        refresh_soon(now, RefreshReason::reload);
    }
}

void ProfileEngine::on(const RefreshRequested& e, Instant now, Out&) {
    ++pending_done_;
    if (!in_flight_) {
        refresh_soon(now, e.reason);
        if (!identity_usable_) {
            identity_stale_ = true;  // a failed identity is tried again: local, and the reason may be gone
        }
    }
}

void ProfileEngine::on(const ClientWaiting&, Instant now, Out&) {
    if (in_flight_ || loading_ || servable(now) || !policy::client_may_hurry(last_error_) ||
        next_refresh_ <= now.steady) {
        return;
    }
    refresh_soon(now, RefreshReason::client);
}

void ProfileEngine::on(const Reconfigured& e, Instant now, Out& out) {
    const bool file_added = e.settings.credentials_file && !settings_.credentials_file;
    if (!e.settings.credentials_file) {
        surfaces_.erase("credentials_file");
    }
    settings_ = e.settings;
    if (e.credentials_changed) {
        identity_stale_ = true;
        identity_usable_ = false;
        if (in_flight_) {
            refresh_again_ = true;
        } else {
            refresh_soon(now, RefreshReason::reload);
        }
    }
    if (file_added && held_) {
        out.emplace_back(WriteCredentialsFile{});
    }
}

void ProfileEngine::on(const SurfaceFailed& e, Instant now, Out& out) {
    auto& surface = surfaces_[e.surface];
    surface.error = e.error;
    ++surface.failures;
    ++surface.attempts;
    const Millis wait = policy::backoff_delay(kSurfaceRetry, surface.attempts, 1.0, std::chrono::seconds(0));
    surface.retry_at = now.steady + wait;
    log(out, LogLevel::error, "surface_failed",
        {{"profile", name_},
         {"surface", e.surface},
         {"code", errc_name(e.error.code)},
         {"error", e.error.message},
         {"retry_in", whole_seconds(wait)}});
}

void ProfileEngine::on(const SurfaceRecovered& e, Instant, Out& out) {
    const auto it = surfaces_.find(e.surface);
    if (it == surfaces_.end()) {
        surfaces_[e.surface] = SurfaceState{};
        return;
    }
    if (it->second.error) {
        log(out, LogLevel::info, "surface_recovered", {{"profile", name_}, {"surface", e.surface}});
    }
    it->second.error.reset();
    it->second.attempts = 0;
    it->second.retry_at = SteadyTime::max();
}

void ProfileEngine::on(const Stopped&, Instant, Out&) {
    stopped_ = true;
}

// --- What is due -----------------------------------------------------------------------------------------

void ProfileEngine::advance(Instant now, Out& out) {
    if (!started_ || stopped_) {
        return;
    }
    for (auto& [name, surface] : surfaces_) {
        if (surface.retry_at <= now.steady) {
            surface.retry_at = SteadyTime::max();
            if (name == "credentials_file") {
                out.emplace_back(WriteCredentialsFile{});
            } else {
                out.emplace_back(RetrySurface{name});
            }
        }
    }
    // The refresh timers run on the monotonic clock, which stands still while the host sleeps and ignores a
    // clock set forward: after either, credentials that are really expired would wait for a timer that has
    // not fired. Each set held triggers at most one such refresh, so that a wall clock that stays ahead
    // cannot turn this into a loop.
    if (held_ && !in_flight_ && held_->deadline - now.steady > settings_.refresh.serve_margin &&
        !servable(now) && held_->received != wall_clock_refresh_for_) {
        wall_clock_refresh_for_ = held_->received;
        log(out, LogLevel::warning, "wall_clock_expired",
            {{"profile", name_},
             {"expiration", format_iso8601(held_->credentials.expiration)},
             {"monotonic_left", whole_seconds(held_->deadline - now.steady)}});
        refresh_soon(now, RefreshReason::wall_clock);
    }
    warn_if_expiring(now, out);
    if (in_flight_ || loading_) {
        return;
    }
    if (identity_stale_ || (!identity_usable_ && now.steady >= next_refresh_)) {
        identity_stale_ = false;
        loading_ = true;
        out.emplace_back(LoadIdentity{});
        return;
    }
    if (now.steady < next_refresh_) {
        return;
    }
    const bool asked_for = on_demand(reason_);
    if (asked_for && last_on_demand_ && now.steady - *last_on_demand_ < settings_.refresh.on_demand_spacing) {
        next_refresh_ = *last_on_demand_ + settings_.refresh.on_demand_spacing;
        return;
    }
    if (auto error = validity_error(now.wall)) {
        const bool early = error->code == Errc::certificate_not_yet_valid;
        fail(std::move(*error), now, out);
        if (early) {
            // Try again the moment it becomes valid (if that comes before the policy's retry).
            next_refresh_ = std::min(next_refresh_, steady_at(identity_->not_before, now));
        }
        return;
    }
    in_flight_ = true;
    sent_at_ = now.steady;
    if (asked_for) {
        last_on_demand_ = now.steady;
    }
    out.emplace_back(SendCreateSession{});
}

std::optional<Error> ProfileEngine::validity_error(WallTime wall_now) const {
    const std::string which = identity_->subject + ", serial " + identity_->serial;
    if (wall_now < identity_->not_before) {
        return make_error(Errc::certificate_not_yet_valid,
                          "the certificate (" + which + ") is not yet valid: it is valid from " +
                              format_iso8601(identity_->not_before) + " (is this host's clock behind?)");
    }
    if (wall_now >= identity_->not_after) {
        return make_error(Errc::certificate_expired, "the certificate (" + which + ") expired at " +
                                                         format_iso8601(identity_->not_after) +
                                                         "; renew it (nothing was sent)");
    }
    return std::nullopt;
}

void ProfileEngine::refresh_soon(Instant now, RefreshReason reason) {
    if (now.steady < next_refresh_) {
        next_refresh_ = now.steady;
        reason_ = reason;
    }
}

void ProfileEngine::accept(signer::Credentials credentials, WallTime received, Instant now) {
    const SteadyTime deadline = policy::monotonic_deadline(credentials.expiration, now.wall, now.steady);
    const SteadyTime arrived = received < now.wall ? now.steady - (now.wall - received) : now.steady;
    held_ = HeldCredentials{std::move(credentials), arrived, deadline, received};
    ever_served_ = true;
    next_refresh_ = policy::next_refresh_after_success(settings_.refresh, arrived, deadline, jitter());
}

void ProfileEngine::succeed(signer::Credentials credentials, Instant now, Out& out) {
    accept(std::move(credentials), now.wall, now);
    credentials_fingerprint_ = identity_ ? identity_->fingerprint : "";
    failures_ = 0;
    last_error_.reset();
    ++outcomes_["ok"];
    const RefreshReason reason = std::exchange(reason_, RefreshReason::timer);
    log(out, LogLevel::info, "refresh_ok",
        {{"profile", name_},
         {"reason", refresh_reason_name(reason)},
         {"access_key", signer::redact_access_key_id(held_->credentials.access_key_id)},
         {"expiration", format_iso8601(held_->credentials.expiration)},
         {"next_refresh_in", whole_seconds(next_refresh_ - now.steady)}});
    out.emplace_back(CredentialsChanged{});
    if (settings_.credentials_file) {
        out.emplace_back(WriteCredentialsFile{});
    }
    finish(true, out);
}

void ProfileEngine::fail(Error error, Instant now, Out& out) {
    ++failures_;
    const bool serving = static_cast<bool>(servable(now));
    const std::optional<SteadyTime> served_deadline =
        serving ? std::optional<SteadyTime>(held_->deadline) : std::nullopt;
    const auto decision = policy::next_refresh_after_failure(settings_.refresh, now.steady, error, failures_,
                                                             jitter(), served_deadline);
    next_refresh_ = decision.retry_at;
    ++outcomes_[decision.retryable ? "retryable" : "rejected"];
    const RefreshReason reason = std::exchange(reason_, RefreshReason::retry);
    log(out, decision.retryable && serving ? LogLevel::warning : LogLevel::error, "refresh_failed",
        {{"profile", name_},
         {"reason", refresh_reason_name(reason)},
         {"class", decision.retryable ? "retryable" : "rejected"},
         {"code", errc_name(error.code)},
         {"error", error.message},
         {"retry_in", whole_seconds(decision.retry_at - now.steady)},
         {"serving", serving ? "last-good" : "nothing"},
         {"failures", failures_}});
    last_error_ = std::move(error);
    finish(false, out);
}

void ProfileEngine::finish(bool ok, Out& out) {
    if (pending_done_ > 0) {
        pending_done_ = 0;
        out.emplace_back(RefreshDone{ok});
    }
}

void ProfileEngine::warn_if_expiring(Instant now, Out& out) {
    if (!identity_ || !identity_usable_) {
        return;
    }
    const auto left = identity_->not_after - now.wall;
    if (left <= WallTime::duration::zero() || left >= kCertificateWarning) {
        return;
    }
    // Once a day per certificate: a renewal that is overdue deserves a reminder, not a log full of them.
    if (expiry_warned_ && expiry_warned_->first == identity_->serial &&
        now.wall - expiry_warned_->second < std::chrono::hours(24)) {
        return;
    }
    expiry_warned_ = std::pair(identity_->serial, now.wall);
    log(out, LogLevel::warning, "certificate_expiring",
        {{"profile", name_},
         {"days_left", std::chrono::duration_cast<std::chrono::hours>(left).count() / 24},
         {"not_after", format_iso8601(identity_->not_after)}});
}

double ProfileEngine::jitter() {
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
}

void ProfileEngine::log(Out& out, LogLevel level, std::string event, LogFields fields) const {
    out.emplace_back(Log{level, std::move(event), std::move(fields)});
}

// --- Queries ---------------------------------------------------------------------------------------------

Result<const HeldCredentials*> ProfileEngine::servable(Instant now) const {
    if (held_ && policy::servable(settings_.refresh, *held_, now.steady, now.wall)) {
        return &*held_;
    }
    if (last_error_) {
        // The surfaces report the reason, but as "unavailable": the client cannot fix our upstream problem.
        return Error{last_error_->code, "no valid credentials: " + last_error_->message, {}};
    }
    if (held_) {
        return make_error(Errc::upstream_unreachable,
                          "no valid credentials: the ones held expire within " +
                              std::to_string(settings_.refresh.serve_margin.count() / 1000) +
                              " s and a refresh is in progress");
    }
    return make_error(Errc::upstream_unreachable,
                      "no credentials yet: the first CreateSession is in progress");
}

policy::CredentialsAnswer ProfileEngine::answer(int min_seconds, Instant now) const {
    const auto current = servable(now);
    policy::RefreshView view;
    view.servable = current ? *current : nullptr;
    view.in_flight = in_flight_ || loading_;
    view.on_demand_allowed =
        !last_on_demand_ || now.steady - *last_on_demand_ >= settings_.refresh.on_demand_spacing;
    // A retry that is not due yet holds, unless nothing is servable after a network failure: the network may
    // well be back, and the client would otherwise get nothing until the backoff ends.
    const bool hurry = !view.servable && policy::client_may_hurry(last_error_);
    view.backing_off = failures_ > 0 && next_refresh_ > now.steady && !hurry;
    return policy::answer_credentials(view, min_seconds, now.steady, now.wall);
}

bool ProfileEngine::can_sign(Instant now) const {
    return identity_ && identity_usable_ && !validity_error(now.wall);
}

ProfileState ProfileEngine::state(Instant now) const {
    const bool in_service = static_cast<bool>(servable(now));
    if (!last_error_) {
        return in_service ? ProfileState::fresh : ProfileState::starting;
    }
    return in_service ? ProfileState::stale : ProfileState::failing;
}

void ProfileEngine::fill_snapshot(policy::ProfileSnapshot& p, Instant now) const {
    p.name = name_;
    p.state = profile_state_name(state(now));
    p.servable = static_cast<bool>(servable(now));
    if (held_) {
        p.access_key_id = signer::redact_access_key_id(held_->credentials.access_key_id);
        p.expiration = format_iso8601(held_->credentials.expiration);
        p.credentials_seconds_left = std::chrono::duration<double>(held_->deadline - now.steady).count();
    }
    p.refreshing = in_flight_ || loading_;
    p.next_refresh_in_seconds = next_refresh_ == SteadyTime::max()
                                    ? 0
                                    : std::max<long long>(0, whole_seconds(next_refresh_ - now.steady));
    if (last_error_) {
        p.last_error_code = errc_name(last_error_->code);
        p.last_error_message = last_error_->message;
        p.consecutive_failures = failures_;
    }
    if (identity_) {
        const auto left = identity_->not_after - now.wall;
        p.certificate = policy::CertificateSnapshot{
            identity_->subject, identity_->serial, format_iso8601(identity_->not_after),
            std::chrono::duration_cast<std::chrono::hours>(left).count() / 24,
            format_iso8601(identity_->not_before)};
        p.certificate_seconds_left = std::chrono::duration<double>(left).count();
    }
    for (const auto& [surface, state] : surfaces_) {
        p.surfaces.push_back(policy::SurfaceHealth{surface, !state.error,
                                                   state.error ? errc_name(state.error->code) : "",
                                                   state.failures, state.error ? state.error->message : ""});
    }
    p.refreshes = outcomes_;
    p.create_session_seconds = create_session_seconds_;
}

}  // namespace rad::engine
