#include "tools/fleet-sim/fleet_sim.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>

#include "tools/sim/event_queue.hpp"
#include "tools/sim/simulated_profile.hpp"
#include "tools/sim/simulated_time.hpp"
#include "tools/sim/token_bucket.hpp"

namespace rad::fleet {

namespace {

using sim::Ms;

enum class Outcome : std::uint8_t { ok, throttled, server_error, unreachable };

enum class EventKind : std::uint8_t {
    start,   // an agent process starts: its profiles' engines begin
    tick,    // a slot's timer fires (its engine's wake_at)
    answer,  // a slot's CreateSession answer arrives
    sample,  // once per simulated second when Scenario::sample_every_second is set
};

struct Payload {
    EventKind kind = EventKind::start;
    Outcome outcome = Outcome::ok;
    std::uint32_t index = 0;  // agent for `start`, slot otherwise
    std::int64_t aux = 0;     // tick: the timer's generation; answer: when the call was sent
};

// What the simulator tracks of one slot besides its engine.
struct SlotBook {
    Ms start = 0;               // when its agent started
    Ms covered_until = 0;       // first millisecond at which the held credentials are not servable
    Ms due_since = -1;          // planned refresh after the last success (-1: none yet)
    std::uint64_t timer = 0;    // generation of the armed tick; older ticks are stale
    bool credentialed = false;  // has held credentials at least once
};

class Simulation final : public sim::SimulatedWorld {
public:
    explicit Simulation(const Scenario& scenario)
        : s_(scenario),
          rng_(scenario.seed),
          bucket_(scenario.quota_rate, scenario.quota_burst),
          end_(scenario.duration.count()),
          margin_(scenario.refresh.serve_margin.count()),
          session_(scenario.session) {
        result_.per_second.resize(static_cast<std::size_t>((end_ + 999) / 1000));
        const std::size_t slots = static_cast<std::size_t>(s_.agents) * s_.profiles;
        books_.resize(slots);
        result_.summary.slots = slots;
        settings_.refresh = s_.refresh;
        settings_.startup_jitter = s_.startup_jitter;
        identity_.fingerprint = "fleet";
        identity_.not_before = sim::wall_at(
            -std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::hours(24)).count());
        identity_.not_after = sim::wall_at(end_ + 366LL * 24 * 3600 * 1000);
        identity_.subject = "CN=fleet";
        identity_.serial = "1";
        identity_.key_description = "EC P-256";
    }

    SimulationResult run() {
        for (std::uint32_t slot = 0; slot < books_.size(); ++slot) {
            // Each engine draws its own numbers, as each agent does; seeded from the scenario's seed.
            slots_.push_back(std::make_unique<sim::SimulatedProfile>(
                *this, slot, "p" + std::to_string(slot % s_.profiles), settings_, s_.seed * 1000003 + slot));
        }
        if (s_.initial == InitialState::cold) {
            start_cold();
        } else {
            start_steady();
        }
        if (s_.sample_every_second) {
            queue_.push(0, Payload{EventKind::sample});
        }
        while (!queue_.empty() && queue_.top().at < end_) {
            const auto event = queue_.pop();
            now_ = event.at;
            const Payload& e = event.payload;
            switch (e.kind) {
                case EventKind::start:
                    for (std::uint32_t p = 0; p < s_.profiles; ++p) {
                        slots_[e.index * s_.profiles + p]->dispatch(engine::Started{});
                    }
                    break;
                case EventKind::tick:
                    if (static_cast<std::uint64_t>(e.aux) == books_[e.index].timer) {
                        slots_[e.index]->dispatch(engine::Tick{});
                    }
                    break;
                case EventKind::answer:
                    answer(e);
                    break;
                case EventKind::sample:
                    on_sample();
                    break;
            }
        }
        now_ = end_;
        finish();
        return std::move(result_);
    }

    // SimulatedWorld.
    engine::Instant now() const override { return sim::instant_at(now_); }

    Result<engine::IdentityInfo> load_identity(sim::SimulatedProfile&) override { return identity_; }

    void send_create_session(sim::SimulatedProfile& profile) override {
        // The quota is charged when the call is sent; its answer arrives one round trip later.
        Payload answer{EventKind::answer, Outcome::ok, profile.index(), now_};
        if (now_ >= s_.outage_start.count() && now_ < s_.outage_end.count()) {
            answer.outcome = Outcome::unreachable;
            ++second(now_).unreachable;
            ++result_.summary.unreachable;
        } else if (!bucket_.try_take(now_)) {
            answer.outcome = Outcome::throttled;
            ++second(now_).throttled;
        } else {
            ++second(now_).accepted;
            if (s_.failure_rate > 0.0 && uniform01() < s_.failure_rate) {
                answer.outcome = Outcome::server_error;
                ++result_.summary.server_errors;
            }
        }
        Ms latency = s_.latency.count();
        if (!s_.latency_samples.empty()) {
            const auto pick =
                static_cast<std::size_t>(uniform01() * static_cast<double>(s_.latency_samples.size()));
            latency = s_.latency_samples[std::min(pick, s_.latency_samples.size() - 1)].count();
        } else if (s_.latency_jitter.count() > 0) {
            latency += static_cast<Ms>(uniform01() * static_cast<double>(s_.latency_jitter.count()));
        }
        queue_.push(now_ + latency, answer);
    }

    Result<void> write_credentials_file(sim::SimulatedProfile&) override { return {}; }

    void wake(sim::SimulatedProfile& profile, engine::SteadyTime at) override {
        SlotBook& book = books_[profile.index()];
        ++book.timer;
        if (at != engine::SteadyTime::max()) {
            queue_.push(std::max(sim::ms_of(at), now_), Payload{EventKind::tick, Outcome::ok, profile.index(),
                                                                static_cast<std::int64_t>(book.timer)});
        }
    }

    void saw(sim::SimulatedProfile& profile, const engine::Command& command) override {
        if (!std::holds_alternative<engine::CredentialsChanged>(command)) {
            return;
        }
        const auto& engine = profile.engine();
        SlotBook& book = books_[profile.index()];
        if (now_ > book.covered_until) {
            result_.summary.unservable_time += Millis(now_ - book.covered_until);
        }
        book.covered_until = std::max(book.covered_until, sim::ms_of(engine.held()->deadline) - margin_);
        if (book.due_since >= 0 && now_ > book.due_since) {
            worst_staleness_ = std::max(worst_staleness_, now_ - book.due_since);
        }
        if (!book.credentialed) {
            book.credentialed = true;
            last_first_credentials_ = std::max(last_first_credentials_, now_);
        }
        book.due_since = sim::ms_of(engine.next_refresh());
    }

private:
    double uniform01() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

    void start_cold() {
        for (std::uint32_t a = 0; a < s_.agents; ++a) {
            Ms start = 0;
            if (!s_.start_offsets.empty()) {
                start = s_.start_offsets[a].count();
            } else if (s_.start_spread.count() > 0) {
                start = static_cast<Ms>(uniform01() * static_cast<double>(s_.start_spread.count()));
            }
            for (std::uint32_t p = 0; p < s_.profiles; ++p) {
                SlotBook& book = books_[a * s_.profiles + p];
                book.start = start;
                book.covered_until = start;
            }
            queue_.push(start, Payload{EventKind::start, Outcome::ok, a});
        }
    }

    // A fleet that has run for a while: each slot's credentials arrived at a uniformly random point of the
    // earliest refresh point (refresh_at_min of the lifetime) before the start, and are handed to its engine
    // as a restarted agent's would be; the engine then picks its own refresh point, which lies ahead.
    void start_steady() {
        const double lifetime = static_cast<double>(Millis(session_).count());
        for (auto& slot : slots_) {
            const auto received = -static_cast<Ms>(uniform01() * s_.refresh.refresh_at_min * lifetime);
            SlotBook& book = books_[slot->index()];
            book.start = 0;
            book.credentialed = true;
            slot->dispatch(engine::Started{engine::HandedOver{
                credentials_issued_at(received), sim::wall_at(received), identity_.fingerprint}});
        }
        result_.summary.all_credentialed_after = Millis(0);
    }

    // The service states the expiry to the second, counted from when it handled the call.
    signer::Credentials credentials_issued_at(Ms sent) const {
        signer::Credentials credentials;
        credentials.access_key_id = "ASIAFLEETSIMULATION";
        credentials.secret_access_key = Secret(std::string_view("simulated"));
        credentials.session_token = Secret(std::string_view("simulated"));
        credentials.expiration = std::chrono::floor<std::chrono::seconds>(sim::wall_at(sent)) + session_;
        return credentials;
    }

    SecondCounts& second(Ms at) { return result_.per_second[static_cast<std::size_t>(at / 1000)]; }

    void answer(const Payload& e) {
        sim::SimulatedProfile& slot = *slots_[e.index];
        switch (e.outcome) {
            case Outcome::ok:
                ++result_.summary.successes;
                slot.dispatch(engine::SessionAnswered{credentials_issued_at(e.aux)});
                return;
            case Outcome::throttled:
                slot.dispatch(engine::SessionAnswered{Error{Errc::upstream_throttled,
                                                            "CreateSession: ThrottlingException (simulated)",
                                                            s_.retry_after}});
                return;
            case Outcome::server_error:
                slot.dispatch(engine::SessionAnswered{
                    make_error(Errc::upstream_server_error, "CreateSession: HTTP 500 (simulated)")});
                return;
            case Outcome::unreachable:
                slot.dispatch(engine::SessionAnswered{make_error(
                    Errc::upstream_unreachable, "CreateSession: connection refused (simulated outage)")});
                return;
        }
    }

    void on_sample() {
        for (const auto& slot : slots_) {
            if (books_[slot->index()].start <= now_ && !slot->engine().servable(now())) {
                ++result_.summary.sampled_unservable_seconds;
            }
        }
        queue_.push(now_ + 1000, Payload{EventKind::sample});
    }

    void finish() {
        Summary& summary = result_.summary;
        std::uint64_t never = 0;
        for (const SlotBook& book : books_) {
            if (book.start >= end_) {
                continue;  // its agent had not started yet
            }
            if (book.covered_until < end_) {
                summary.unservable_time += Millis(end_ - book.covered_until);
            }
            if (book.due_since >= 0 && book.due_since < end_) {
                worst_staleness_ = std::max(worst_staleness_, end_ - book.due_since);
            }
            if (!book.credentialed) {
                ++never;
            }
        }
        summary.slots_never_credentialed = never;
        if (s_.initial == InitialState::cold && never == 0) {
            summary.all_credentialed_after = Millis(last_first_credentials_);
        }
        summary.worst_staleness = Millis(worst_staleness_);
        std::vector<std::uint32_t> series(result_.per_second.size());
        std::transform(result_.per_second.begin(), result_.per_second.end(), series.begin(),
                       [](const SecondCounts& c) { return c.accepted; });
        summary.accepted = rate_stats(series);
        std::transform(result_.per_second.begin(), result_.per_second.end(), series.begin(),
                       [](const SecondCounts& c) { return c.throttled; });
        summary.throttled = rate_stats(series);
    }

    const Scenario& s_;
    std::mt19937_64 rng_;
    sim::TokenBucket bucket_;
    sim::EventQueue<Payload> queue_;
    engine::EngineSettings settings_;
    engine::IdentityInfo identity_;
    std::vector<std::unique_ptr<sim::SimulatedProfile>> slots_;
    std::vector<SlotBook> books_;
    SimulationResult result_;
    Ms now_ = 0;
    Ms end_;
    Ms margin_;
    std::chrono::seconds session_;
    Ms worst_staleness_ = 0;
    Ms last_first_credentials_ = 0;
};

}  // namespace

Result<void> validate(const Scenario& s) {
    if (s.agents == 0 || s.profiles == 0) {
        return make_error(Errc::usage, "--agents and --profiles must be at least 1");
    }
    if (static_cast<std::uint64_t>(s.agents) * s.profiles > std::numeric_limits<std::uint32_t>::max()) {
        return make_error(Errc::usage, "--agents × --profiles is too large");
    }
    if (!(s.quota_rate >= 0.001) || s.quota_rate > 1e6) {
        return make_error(Errc::usage, "--rate must be in [0.001, 1e6] calls per second");
    }
    if (!(s.quota_burst >= 1.0) || s.quota_burst > 1e9) {
        return make_error(Errc::usage, "--burst must be in [1, 1e9] tokens");
    }
    if (s.session.count() <= 0) {
        return make_error(Errc::usage, "--session must be a positive number of seconds");
    }
    if (!(s.refresh.refresh_at_min >= 0.0) || !(s.refresh.refresh_at_max <= 1.0) ||
        s.refresh.refresh_at_min > s.refresh.refresh_at_max) {
        return make_error(Errc::usage, "--refresh-min/--refresh-max must satisfy 0 <= min <= max <= 1");
    }
    if (s.refresh.retry_base.count() <= 0 || s.refresh.retry_cap < s.refresh.retry_base) {
        return make_error(Errc::usage, "--retry-base-ms must be positive and at most --retry-cap-ms");
    }
    if (s.refresh.throttled_base.count() <= 0) {
        return make_error(Errc::usage, "--throttled-base-ms must be positive");
    }
    if (s.start_spread.count() < 0 || s.startup_jitter.count() < 0 || s.latency.count() < 0 ||
        s.latency_jitter.count() < 0 || s.retry_after.count() < 0) {
        return make_error(Errc::usage,
                          "--spread, --startup-jitter, --latency-ms, --latency-jitter-ms and --retry-after "
                          "must not be negative");
    }
    if (!(s.failure_rate >= 0.0) || s.failure_rate > 1.0) {
        return make_error(Errc::usage, "--failure-rate must be in [0, 1]");
    }
    if (!s.start_offsets.empty() && s.start_offsets.size() != s.agents) {
        return make_error(Errc::usage, "--start-offsets must give one start time per agent (" +
                                           std::to_string(s.start_offsets.size()) + " for " +
                                           std::to_string(s.agents) + " agents)");
    }
    for (const auto& offset : s.start_offsets) {
        if (offset.count() < 0) {
            return make_error(Errc::usage, "--start-offsets must not hold a negative time");
        }
    }
    for (const auto& sample : s.latency_samples) {
        if (sample.count() < 0) {
            return make_error(Errc::usage, "--latency-samples must not hold a negative round trip");
        }
    }
    if (s.outage_end < s.outage_start) {
        return make_error(Errc::usage, "--outage-end must not be before --outage-start");
    }
    if (s.duration.count() <= 0 || s.duration > std::chrono::hours(24 * 366)) {
        return make_error(Errc::usage, "--duration must be between 1 ms and one year");
    }
    return {};
}

Result<SimulationResult> simulate(const Scenario& scenario) {
    if (auto ok = validate(scenario); !ok) {
        return ok.error();
    }
    Simulation simulation(scenario);
    return simulation.run();
}

RateStats rate_stats(const std::vector<std::uint32_t>& per_second) {
    RateStats stats;
    if (per_second.empty()) {
        return stats;
    }
    for (std::uint32_t c : per_second) {
        stats.total += c;
        stats.peak = std::max(stats.peak, c);
    }
    stats.mean = static_cast<double>(stats.total) / static_cast<double>(per_second.size());
    std::vector<std::uint32_t> sorted = per_second;
    // Nearest rank: the smallest count that at least 99 % of the seconds do not exceed.
    const auto rank = static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(sorted.size())));
    const auto nth = sorted.begin() + static_cast<std::ptrdiff_t>(std::max<std::size_t>(rank, 1) - 1);
    std::nth_element(sorted.begin(), nth, sorted.end());
    stats.p99 = *nth;
    return stats;
}

}  // namespace rad::fleet
