#include "tests/sim/agent_life.hpp"

#include <cstdio>
#include <cstdlib>

namespace rad::simtest {

namespace {

constexpr Ms kLatency = 200;
constexpr Ms kSession = kHour;
constexpr Ms kShortLived = 40 * kSecond;
constexpr Ms kMaxSkew = 5 * kMinute;  // SigV4: a request dated further off is refused
constexpr Ms kServeMargin = 60 * kSecond;
constexpr std::size_t kMaxSendsPerMinute = 20;
constexpr std::int64_t kMaxSendsPerDay = 2000;

// Clients of IMDS ask every minute, and every second while they get nothing (SDKs retry).
constexpr Ms kClientPeriod = kMinute;
constexpr Ms kClientRetry = kSecond;
constexpr Ms kFastPathPeriod = 10 * kMinute;

}  // namespace

std::string describe_time(Ms t) {
    char text[64];
    const Ms day = t / kDay;
    const Ms rest = t % kDay;
    std::snprintf(text, sizeof text, "day %lld %02lld:%02lld:%02lld.%03lld", static_cast<long long>(day),
                  static_cast<long long>(rest / kHour), static_cast<long long>(rest % kHour / kMinute),
                  static_cast<long long>(rest % kMinute / kSecond), static_cast<long long>(rest % kSecond));
    return text;
}

std::vector<std::uint64_t> sim_seeds(int count) {
    if (const char* seed = std::getenv("RAD_SIM_SEED"); seed != nullptr && *seed != '\0') {
        return {std::strtoull(seed, nullptr, 10)};
    }
    std::vector<std::uint64_t> seeds;
    for (int i = 1; i <= count; ++i) {
        seeds.push_back(static_cast<std::uint64_t>(i));
    }
    return seeds;
}

AgentLife::AgentLife(std::uint64_t seed, int profiles) : rng_(seed) {
    certificate_ = Certificate{"certificate-0", -kDay, 400 * kDay};
    for (int i = 0; i < profiles; ++i) {
        profiles_.push_back(std::make_unique<sim::SimulatedProfile>(
            *this, static_cast<std::uint32_t>(i), "p" + std::to_string(i), settings(),
            seed * 7919 + static_cast<std::uint64_t>(i)));
        books_.emplace_back();
    }
}

engine::EngineSettings AgentLife::settings() const {
    return engine::EngineSettings{engine::RefreshSettings{}, engine::Millis(0), true};
}

Ms AgentLife::uniform(Ms low, Ms high) {
    return std::uniform_int_distribution<Ms>(low, high)(rng_);
}

void AgentLife::at(Ms when, std::function<void()> what) {
    queue_.push(when, std::move(what));
}

void AgentLife::every(Ms mean, std::function<void()> what, Ms from) {
    const Ms next =
        from + static_cast<Ms>(std::exponential_distribution<double>(1.0 / static_cast<double>(mean))(rng_));
    at(next, [this, mean, what = std::move(what), next] {
        what();
        every(mean, what, next);
    });
}

// --- Knobs -----------------------------------------------------------------------------------------------

void AgentLife::service(ServiceMode mode) {
    mode_ = mode;
}

void AgentLife::step_wall_clock(Ms by) {
    wall_offset_ += by;
    // The agent looks at the clocks once a second.
    for (auto& profile : profiles_) {
        at(now_ + uniform(1, kSecond), [&profile] { profile->dispatch(engine::Tick{}); });
    }
}

void AgentLife::renew(Ms valid_for, Ms not_before_in) {
    certificate_ = Certificate{"certificate-" + std::to_string(next_certificate_++), now_ + not_before_in,
                               now_ + not_before_in + valid_for};
    key_matches_ = true;
    renewed();
}

void AgentLife::renewed() {
    for (auto& book : books_) {
        book.renewed_at = now_;
    }
    notice_files_changed();
}

void AgentLife::renew_torn(Ms valid_for, Ms key_delay) {
    certificate_ = Certificate{"certificate-" + std::to_string(next_certificate_++), now_, now_ + valid_for};
    key_matches_ = false;
    notice_files_changed();
    at(now_ + key_delay, [this] {
        key_matches_ = true;
        renewed();
    });
}

void AgentLife::fail_credentials_file(bool failing) {
    credentials_file_fails_ = failing;
}

void AgentLife::reload(bool credentials_changed) {
    for (auto& profile : profiles_) {
        profile->dispatch(engine::Reconfigured{settings(), credentials_changed});
    }
}

// The agent stats the identity files once a second: a change is seen within a second.
void AgentLife::notice_files_changed() {
    for (auto& profile : profiles_) {
        at(now_ + uniform(1, kSecond), [&profile] { profile->dispatch(engine::IdentityFilesChanged{}); });
    }
}

// --- The run -------------------------------------------------------------------------------------------

void AgentLife::run(Ms duration) {
    end_ = duration;
    for (auto& profile : profiles_) {
        profile->dispatch(engine::Started{});
    }
    at(0, [this] { client_asks(); });
    at(kFastPathPeriod, [this] { fast_path_client_asks(); });
    check();
    while (!queue_.empty() && !violation_) {
        auto event = queue_.pop();
        if (event.at >= end_) {
            break;
        }
        now_ = event.at;
        event.payload();
        check();
    }
}

void AgentLife::client_asks() {
    bool served_all = true;
    for (auto& profile : profiles_) {
        if (profile->engine().servable(now())) {
            ++counters_.clients_served;
        } else {
            ++counters_.clients_unserved;
            served_all = false;
            profile->dispatch(engine::ClientWaiting{});
        }
    }
    at(now_ + (served_all ? kClientPeriod : kClientRetry), [this] { client_asks(); });
}

void AgentLife::fast_path_client_asks() {
    for (std::size_t i = 0; i < profiles_.size(); ++i) {
        auto& profile = profiles_[i];
        if (profile->engine().answer(-1, now()) == policy::CredentialsAnswer::refresh_first) {
            if (!books_[i].waiting_since) {
                books_[i].waiting_since = now_;
            }
            profile->dispatch(engine::RefreshRequested{engine::RefreshReason::fast_path});
        }
    }
    at(now_ + kFastPathPeriod, [this] { fast_path_client_asks(); });
}

// --- The world -----------------------------------------------------------------------------------------

Result<engine::IdentityInfo> AgentLife::load_identity(sim::SimulatedProfile& profile) {
    if (!key_matches_) {
        return make_error(Errc::key_cert_mismatch, "the private key does not belong to the certificate");
    }
    books_[profile.index()].signing = certificate_;
    return engine::IdentityInfo{certificate_.fingerprint,
                                sim::wall_at(certificate_.not_before),
                                sim::wall_at(certificate_.not_after),
                                "CN=simulated",
                                certificate_.fingerprint,
                                "EC P-256"};
}

void AgentLife::send_create_session(sim::SimulatedProfile& profile) {
    ProfileBook& book = books_[profile.index()];
    ++counters_.sends;
    // An expired certificate never signs, by the clock the agent has: the host's.
    if (!book.signing) {
        fail("a CreateSession was sent with no identity loaded");
        return;
    }
    if (host_now() < book.signing->not_before || host_now() >= book.signing->not_after) {
        fail("a CreateSession was signed with " + book.signing->fingerprint + ", valid " +
             describe_time(book.signing->not_before) + " to " + describe_time(book.signing->not_after) +
             ", at host time " + describe_time(host_now()));
        return;
    }
    // The CreateSession rate stays within the policy.
    book.recent_sends.push_back(now_);
    while (!book.recent_sends.empty() && book.recent_sends.front() <= now_ - kMinute) {
        book.recent_sends.pop_front();
    }
    if (book.recent_sends.size() > kMaxSendsPerMinute) {
        fail(std::to_string(book.recent_sends.size()) +
             " CreateSession calls of one profile within a minute");
        return;
    }
    // Outside network outages (when clients may hurry a refresh every few seconds), the schedule rules.
    if (mode_ != ServiceMode::unreachable) {
        const std::int64_t today = ++book.sends_by_day[now_ / kDay];
        counters_.max_sends_in_a_day = std::max(counters_.max_sends_in_a_day, today);
        if (today > kMaxSendsPerDay) {
            fail(std::to_string(today) + " CreateSession calls in one day outside network outages");
            return;
        }
    }
    book.in_flight_since = now_;
    if (book.signing->fingerprint == certificate_.fingerprint) {
        book.renewed_at.reset();
    }

    // What the service answers, decided now, delivered one round trip later.
    Result<signer::Credentials> answer = make_error(Errc::internal, "unset");
    const Certificate signer = *book.signing;
    const Ms skew = wall_offset_ < 0 ? -wall_offset_ : wall_offset_;
    switch (mode_) {
        case ServiceMode::unreachable:
            answer = make_error(Errc::upstream_unreachable, "connect: connection refused (simulated)");
            break;
        case ServiceMode::throttled:
            answer = make_error(Errc::upstream_throttled, "HTTP 429 ThrottlingException (simulated)");
            break;
        case ServiceMode::throttled_retry_after:
            answer = Error{Errc::upstream_throttled, "HTTP 429 ThrottlingException (simulated)",
                           std::chrono::seconds(30)};
            break;
        case ServiceMode::server_error:
            answer = make_error(Errc::upstream_server_error, "HTTP 500 (simulated)");
            break;
        case ServiceMode::refusing:
            answer = make_error(Errc::upstream_rejected, "HTTP 403 AccessDeniedException (simulated)");
            break;
        case ServiceMode::ok:
        case ServiceMode::short_lived:
            if (skew > kMaxSkew) {
                answer = make_error(Errc::upstream_rejected, "HTTP 403 Signature expired (simulated)");
            } else if (now_ < signer.not_before || now_ >= signer.not_after) {
                answer = make_error(Errc::upstream_rejected,
                                    "HTTP 403 certificate outside its validity (simulated)");
            } else {
                const Ms lifetime = mode_ == ServiceMode::short_lived ? kShortLived : kSession;
                const std::string key = "ASIASIM" + std::to_string(next_key_++);
                issued_[key] = Issued{now_ + kLatency + lifetime, wall_offset_ < 0 ? -wall_offset_ : 0};
                answer = signer::Credentials{key, Secret(std::string_view("simulated-secret")),
                                             Secret(std::string_view("simulated-token")),
                                             sim::wall_at(now_ + kLatency + lifetime)};
            }
            break;
    }
    if (!answer && answer.error().code == Errc::upstream_rejected) {
        ++counters_.refused_by_service;
    }
    auto shared = std::make_shared<Result<signer::Credentials>>(std::move(answer));
    at(now_ + kLatency, [this, &profile, shared] {
        books_[profile.index()].in_flight_since.reset();
        if (*shared) {
            ++counters_.successes;
        }
        profile.dispatch(engine::SessionAnswered{std::move(*shared)});
    });
}

Result<void> AgentLife::write_credentials_file(sim::SimulatedProfile&) {
    if (credentials_file_fails_) {
        return make_error(Errc::internal, "credentials: No space left on device (simulated)");
    }
    return {};
}

void AgentLife::wake(sim::SimulatedProfile& profile, engine::SteadyTime at_time) {
    ProfileBook& book = books_[profile.index()];
    const std::uint64_t generation = ++book.timer;
    if (at_time == engine::SteadyTime::max()) {
        return;
    }
    const Ms when = std::max(sim::ms_of(at_time), now_);
    at(when, [this, &profile, generation] {
        if (books_[profile.index()].timer == generation) {
            profile.dispatch(engine::Tick{});
        }
    });
}

void AgentLife::saw(sim::SimulatedProfile& profile, const engine::Command& command) {
    if (std::holds_alternative<engine::RefreshDone>(command)) {
        books_[profile.index()].waiting_since.reset();
    }
    // RAD_SIM_TRACE=1 prints the agent's log as it would be written, with simulated times: what to read when
    // replaying a seed.
    static const bool trace = std::getenv("RAD_SIM_TRACE") != nullptr;
    if (const auto* line = std::get_if<engine::Log>(&command); line != nullptr && trace) {
        std::printf("%s %s\n", describe_time(now_).c_str(),
                    format_log_line(line->level, LogFormat::text, line->event, line->fields).c_str());
    }
}

// --- Health and invariants ---------------------------------------------------------------------------------

// unhealthy_cause says what in the world keeps the agent from getting credentials now, if anything.
std::optional<AgentLife::Cause> AgentLife::unhealthy_cause() const {
    if (mode_ == ServiceMode::unreachable) {
        return Cause::network;
    }
    if (mode_ != ServiceMode::ok) {
        return Cause::service;
    }
    if ((wall_offset_ < 0 ? -wall_offset_ : wall_offset_) > kMaxSkew - kMinute) {
        return Cause::clock;
    }
    // A certificate is healthy while it is valid by both clocks, with a day to spare (no renewal due).
    const Ms host = host_now();
    if (!key_matches_ || host < certificate_.not_before || now_ < certificate_.not_before ||
        host >= certificate_.not_after || now_ >= certificate_.not_after) {
        return Cause::identity;
    }
    if (credentials_file_fails_) {
        return Cause::file;
    }
    return std::nullopt;
}

void AgentLife::fail(const std::string& what) {
    if (!violation_) {
        violation_ = describe_time(now_) + ": " + what;
    }
}

void AgentLife::check() {
    const engine::Instant instant = now();
    // Health is looked at after every event: time alone changes it too (a certificate expires).
    const auto cause = unhealthy_cause();
    if (cause) {
        cause_ = cause;
        recovered_from_ = *cause;
    } else if (cause_) {
        cause_.reset();
        healthy_since_ = now_;
    }
    const bool healthy = !cause;
    for (std::size_t i = 0; i < profiles_.size(); ++i) {
        const auto& engine = profiles_[i]->engine();
        ProfileBook& book = books_[i];
        // Expired credentials are never served.
        if (auto served = engine.servable(instant)) {
            const auto& credentials = (*served)->credentials;
            const auto it = issued_.find(credentials.access_key_id);
            if (it == issued_.end()) {
                fail("served credentials the service never issued: " + credentials.access_key_id);
                return;
            }
            if (now_ >= it->second.expiration - kServeMargin + it->second.host_behind) {
                fail("served " + credentials.access_key_id + ", which expire at " +
                     describe_time(it->second.expiration));
                return;
            }
            book.nothing_since = -1;
        } else if (book.nothing_since < 0) {
            book.nothing_since = now_;
        }
        // No CreateSession stays unanswered, no fast-path client waits forever.
        if (book.in_flight_since && now_ - *book.in_flight_since > kLatency) {
            fail("a CreateSession is unanswered since " + describe_time(*book.in_flight_since));
            return;
        }
        if (book.waiting_since && now_ - *book.waiting_since > kLatency + kSecond) {
            fail("a fast-path client waits since " + describe_time(*book.waiting_since));
            return;
        }
        if (engine.wake_at() < instant.steady - std::chrono::milliseconds(1)) {
            fail("the engine's timer is in the past");
            return;
        }
        if (!healthy) {
            continue;
        }
        // Credentials are servable again soon after the world recovered.
        const Ms healthy_for = now_ - healthy_since_;
        const Ms bound = recovered_from_ == Cause::network || recovered_from_ == Cause::identity
                             ? 15 * kSecond
                             : 11 * kMinute;
        if (book.nothing_since >= 0 && healthy_for > bound && now_ - book.nothing_since > bound) {
            fail("nothing servable for " + std::to_string((now_ - book.nothing_since) / kSecond) +
                 " s, the world healthy for " + std::to_string(healthy_for / kSecond) + " s");
            return;
        }
        // A renewed certificate is used at once (the credentials held stay in service meanwhile).
        if (book.renewed_at && now_ - std::max(*book.renewed_at, healthy_since_) > kMinute) {
            fail("the certificate renewed at " + describe_time(*book.renewed_at) + " is not used yet");
            return;
        }
        // No state is stuck: two hours of a healthy world leave the profile fresh.
        if (healthy_for > 2 * kHour && engine.state(instant) != engine::ProfileState::fresh) {
            fail(std::string("the profile is ") + engine::profile_state_name(engine.state(instant)) +
                 " after two healthy hours" +
                 (engine.last_error() ? ": " + engine.last_error()->message : std::string()));
            return;
        }
    }
}

}  // namespace rad::simtest
