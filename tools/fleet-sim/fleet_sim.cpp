#include "tools/fleet-sim/fleet_sim.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>

#include "daemon/policy/credential_cache.hpp"

namespace rad::fleet {

namespace {

constexpr std::int64_t kMicro = 1'000'000;

// Simulated time 0 sits far from the clocks' epochs so that a steady start can place credentials that
// arrived before t = 0 (negative simulated times) without underflowing.
const daemon::SteadyTime kSteadyEpoch = daemon::SteadyTime{} + std::chrono::hours(24 * 365);
// 2025-01-01T00:00:00Z: any fixed instant works, the policy only looks at differences.
const daemon::WallTime kWallEpoch = daemon::WallTime{} + std::chrono::seconds(1735689600);

daemon::SteadyTime steady_at(std::int64_t ms) {
    return kSteadyEpoch + Millis(ms);
}

daemon::WallTime wall_at(std::int64_t ms) {
    return kWallEpoch + Millis(ms);
}

std::int64_t ms_of(daemon::SteadyTime t) {
    return std::chrono::duration_cast<Millis>(t - kSteadyEpoch).count();
}

enum class Outcome : std::uint8_t { ok, throttled, server_error, unreachable };

// One agent-profile: the agent's real cache plus the simulator's bookkeeping about it.
struct SlotBook {
    std::int64_t start_ms = 0;       // when its agent started
    std::int64_t covered_until = 0;  // first millisecond at which the held credentials are not servable
    std::int64_t due_since = -1;     // planned refresh after the last success (-1: none yet)
    std::int64_t sent_ms = 0;        // when the call in flight was sent
    Outcome pending = Outcome::ok;   // the answer of the call in flight
    bool credentialed = false;       // has had credentials at least once
};

class Simulation {
public:
    explicit Simulation(const Scenario& scenario)
        : s_(scenario),
          rng_(scenario.seed),
          bucket_(scenario.quota_rate, scenario.quota_burst),
          end_ms_(scenario.duration.count()),
          margin_ms_(scenario.refresh.serve_margin.count()),
          session_(scenario.session) {
        const auto seconds = static_cast<std::size_t>((end_ms_ + 999) / 1000);
        result_.per_second.resize(seconds);
        const std::size_t slots = static_cast<std::size_t>(s_.agents) * s_.profiles;
        caches_.reserve(slots);
        books_.resize(slots);
        result_.summary.slots = slots;
    }

    SimulationResult run() {
        if (s_.initial == InitialState::cold) {
            start_cold();
        } else {
            start_steady();
        }
        if (s_.sample_every_second) {
            queue_.push(0, EventKind::sample, 0);
        }
        while (!queue_.empty()) {
            const Event event = queue_.pop();
            if (event.at_ms >= end_ms_) {
                break;
            }
            switch (event.kind) {
                case EventKind::start:
                    for (std::uint32_t p = 0; p < s_.profiles; ++p) {
                        on_due(event.at_ms, event.index * s_.profiles + p);
                    }
                    break;
                case EventKind::due:
                    on_due(event.at_ms, event.index);
                    break;
                case EventKind::response:
                    on_response(event.at_ms, event.index);
                    break;
                case EventKind::sample:
                    on_sample(event.at_ms);
                    break;
            }
        }
        finish();
        return std::move(result_);
    }

private:
    double uniform01() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

    void start_cold() {
        for (std::uint32_t a = 0; a < s_.agents; ++a) {
            std::int64_t start = 0;
            if (s_.start_spread.count() > 0) {
                start = static_cast<std::int64_t>(uniform01() * static_cast<double>(s_.start_spread.count()));
            }
            for (std::uint32_t p = 0; p < s_.profiles; ++p) {
                caches_.emplace_back(s_.refresh, steady_at(start));
                SlotBook& book = books_[caches_.size() - 1];
                book.start_ms = start;
                book.covered_until = start;
            }
            queue_.push(start, EventKind::start, a);
        }
    }

    // A fleet that has run for a while: each slot's credentials arrived at a uniformly random point of its
    // refresh cycle, so its next refresh is uniformly spread over the cycle. The cycle is the one the policy
    // picks for the same jitter, which is handed to the real complete_success.
    void start_steady() {
        const double lifetime_ms = static_cast<double>(Millis(session_).count());
        for (std::uint32_t a = 0; a < s_.agents; ++a) {
            for (std::uint32_t p = 0; p < s_.profiles; ++p) {
                const double jitter = uniform01();
                const double fraction = daemon::refresh_fraction(s_.refresh, jitter);
                const auto received = -static_cast<std::int64_t>(uniform01() * fraction * lifetime_ms);
                caches_.emplace_back(s_.refresh, steady_at(received));
                const std::uint32_t slot = static_cast<std::uint32_t>(caches_.size() - 1);
                daemon::ProfileCache& cache = caches_[slot];
                cache.complete_success(credentials_issued_at(received), wall_at(received),
                                       steady_at(received), jitter);
                SlotBook& book = books_[slot];
                book.start_ms = 0;
                book.covered_until = ms_of(cache.held()->deadline) - margin_ms_;
                book.due_since = ms_of(cache.next_refresh());
                book.credentialed = true;
                queue_.push(std::max<std::int64_t>(book.due_since, 0), EventKind::due, slot);
            }
        }
        result_.summary.all_credentialed_after = Millis(0);
    }

    // The service states the expiry to the second, counted from when it handled the call.
    signer::Credentials credentials_issued_at(std::int64_t sent_ms) const {
        signer::Credentials credentials;
        credentials.expiration = std::chrono::floor<std::chrono::seconds>(wall_at(sent_ms)) + session_;
        return credentials;
    }

    SecondCounts& second(std::int64_t at_ms) {
        return result_.per_second[static_cast<std::size_t>(at_ms / 1000)];
    }

    void on_due(std::int64_t now, std::uint32_t slot) {
        daemon::ProfileCache& cache = caches_[slot];
        if (!cache.begin_refresh()) {
            return;  // single flight, as in the agent: the running refresh reschedules when it completes
        }
        SlotBook& book = books_[slot];
        book.sent_ms = now;
        // The quota is charged when the call is sent; its answer arrives one round trip later.
        if (now >= s_.outage_start.count() && now < s_.outage_end.count()) {
            book.pending = Outcome::unreachable;
            ++second(now).unreachable;
            ++result_.summary.unreachable;
        } else if (!bucket_.try_take(now)) {
            book.pending = Outcome::throttled;
            ++second(now).throttled;
        } else {
            ++second(now).accepted;
            book.pending = Outcome::ok;
            if (s_.failure_rate > 0.0 && uniform01() < s_.failure_rate) {
                book.pending = Outcome::server_error;
                ++result_.summary.server_errors;
            }
        }
        std::int64_t latency = s_.latency.count();
        if (s_.latency_jitter.count() > 0) {
            latency +=
                static_cast<std::int64_t>(uniform01() * static_cast<double>(s_.latency_jitter.count()));
        }
        queue_.push(now + latency, EventKind::response, slot);
    }

    void on_response(std::int64_t now, std::uint32_t slot) {
        daemon::ProfileCache& cache = caches_[slot];
        SlotBook& book = books_[slot];
        const double jitter = uniform01();  // the agent draws one per completed refresh
        if (book.pending == Outcome::ok) {
            cache.complete_success(credentials_issued_at(book.sent_ms), wall_at(now), steady_at(now), jitter);
            ++result_.summary.successes;
            if (now > book.covered_until) {
                result_.summary.unservable_time += Millis(now - book.covered_until);
            }
            book.covered_until = std::max(book.covered_until, ms_of(cache.held()->deadline) - margin_ms_);
            if (book.due_since >= 0) {
                worst_staleness_ms_ = std::max(worst_staleness_ms_, now - book.due_since);
            }
            if (!book.credentialed) {
                book.credentialed = true;
                last_first_credentials_ms_ = std::max(last_first_credentials_ms_, now);
            }
            book.due_since = ms_of(cache.next_refresh());
        } else {
            static_cast<void>(cache.complete_failure(failure_of(book.pending), steady_at(now), jitter));
        }
        queue_.push(std::max(ms_of(cache.next_refresh()), now), EventKind::due, slot);
    }

    Error failure_of(Outcome outcome) const {
        switch (outcome) {
            case Outcome::throttled:
                return Error{Errc::upstream_throttled, "CreateSession: ThrottlingException (simulated)",
                             s_.retry_after};
            case Outcome::server_error:
                return make_error(Errc::upstream_server_error, "CreateSession: HTTP 500 (simulated)");
            case Outcome::unreachable:
            case Outcome::ok:
                break;
        }
        return make_error(Errc::upstream_unreachable, "CreateSession: connection refused (simulated outage)");
    }

    void on_sample(std::int64_t now) {
        const daemon::SteadyTime at = steady_at(now);
        for (std::size_t i = 0; i < caches_.size(); ++i) {
            if (books_[i].start_ms <= now && !caches_[i].current(at, wall_at(now))) {
                ++result_.summary.sampled_unservable_seconds;
            }
        }
        queue_.push(now + 1000, EventKind::sample, 0);
    }

    void finish() {
        Summary& summary = result_.summary;
        std::uint64_t never = 0;
        for (const SlotBook& book : books_) {
            if (book.start_ms >= end_ms_) {
                continue;  // its agent had not started yet
            }
            if (book.covered_until < end_ms_) {
                summary.unservable_time += Millis(end_ms_ - book.covered_until);
            }
            if (book.due_since >= 0 && book.due_since < end_ms_) {
                worst_staleness_ms_ = std::max(worst_staleness_ms_, end_ms_ - book.due_since);
            }
            if (!book.credentialed) {
                ++never;
            }
        }
        summary.slots_never_credentialed = never;
        if (s_.initial == InitialState::cold && never == 0) {
            summary.all_credentialed_after = Millis(last_first_credentials_ms_);
        }
        summary.worst_staleness = Millis(worst_staleness_ms_);
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
    TokenBucket bucket_;
    EventQueue queue_;
    std::vector<daemon::ProfileCache> caches_;
    std::vector<SlotBook> books_;
    SimulationResult result_;
    std::int64_t end_ms_;
    std::int64_t margin_ms_;
    std::chrono::seconds session_;
    std::int64_t worst_staleness_ms_ = 0;
    std::int64_t last_first_credentials_ms_ = 0;
};

}  // namespace

TokenBucket::TokenBucket(double rate_per_second, double burst)
    : micro_per_ms_(std::max<std::int64_t>(std::llround(rate_per_second * 1000.0), 1)),
      capacity_(std::llround(burst * kMicro)),
      level_(capacity_) {}

std::int64_t TokenBucket::refilled(std::int64_t now_ms) const {
    if (now_ms <= last_ms_) {
        return level_;
    }
    const std::int64_t room = capacity_ - level_;
    const std::int64_t elapsed = now_ms - last_ms_;
    // Compare before multiplying: a long idle gap must not overflow.
    if (elapsed >= (room + micro_per_ms_ - 1) / micro_per_ms_) {
        return capacity_;
    }
    return level_ + elapsed * micro_per_ms_;
}

bool TokenBucket::try_take(std::int64_t now_ms) {
    level_ = refilled(now_ms);
    last_ms_ = std::max(last_ms_, now_ms);
    if (level_ < kMicro) {
        return false;
    }
    level_ -= kMicro;
    return true;
}

double TokenBucket::tokens(std::int64_t now_ms) const {
    return static_cast<double>(refilled(now_ms)) / kMicro;
}

void EventQueue::push(std::int64_t at_ms, EventKind kind, std::uint32_t index) {
    heap_.push(Event{at_ms, next_seq_++, kind, index});
}

Event EventQueue::pop() {
    Event event = heap_.top();
    heap_.pop();
    return event;
}

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
    if (s.start_spread.count() < 0 || s.latency.count() < 0 || s.latency_jitter.count() < 0 ||
        s.retry_after.count() < 0) {
        return make_error(Errc::usage,
                          "--spread, --latency-ms, --latency-jitter-ms and --retry-after "
                          "must not be negative");
    }
    if (!(s.failure_rate >= 0.0) || s.failure_rate > 1.0) {
        return make_error(Errc::usage, "--failure-rate must be in [0, 1]");
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
