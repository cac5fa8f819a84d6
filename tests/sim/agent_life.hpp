#pragma once
// AgentLife simulates one agent's life for weeks on a virtual clock: the real engine of each of its profiles
// (tools/sim SimulatedProfile), a scripted Roles Anywhere service, the identity files, the credentials file,
// the host's wall clock, configuration reloads and the agent's clients. The script turns the world's knobs at
// chosen times; after every event the invariants the engine promises are checked, and the first one broken is
// kept with the simulated time it broke at:
//  - expired credentials are never served (by the service's clock, allowing only the skew of a host clock
//    that was behind when they arrived, which no agent can see);
//  - an expired (or not yet valid) certificate never signs, by the host's clock;
//  - the CreateSession rate stays within the policy: at most 20 calls of a profile in any minute, and 2000 in
//  a
//    day outside network outages (during which clients may hurry a call every few seconds);
//  - credentials are servable again soon after the world recovers: 15 s after a network outage (clients keep
//    asking), 15 s after a renewal fixes an expired certificate, the backoff's cap otherwise;
//  - a renewed certificate is used for a CreateSession within a minute of its key arriving, the world
//  healthy;
//  - no state is stuck: no CreateSession stays unanswered, every fast-path client is answered, and two hours
//  of
//    a healthy world leave every profile fresh.
// Everything random (when events happen, the engines' jitter) comes from the seed: the same seed replays the
// same life.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tools/sim/event_queue.hpp"
#include "tools/sim/simulated_profile.hpp"
#include "tools/sim/simulated_time.hpp"

namespace rad::simtest {

using sim::Ms;
inline constexpr Ms kSecond = 1000;
inline constexpr Ms kMinute = 60 * kSecond;
inline constexpr Ms kHour = 60 * kMinute;
inline constexpr Ms kDay = 24 * kHour;

// ServiceMode is how the simulated service answers every CreateSession from now on.
enum class ServiceMode {
    ok,                     // credentials of session_lifetime
    unreachable,            // the network is down: connection refused
    throttled,              // 429 ThrottlingException, no Retry-After
    throttled_retry_after,  // 429 with Retry-After: 30
    server_error,           // 500
    refusing,               // 403 AccessDeniedException (a trust anchor disabled, say)
    short_lived,            // credentials that expire 40 s after they are issued
};

struct Counters {
    std::int64_t sends = 0;
    std::int64_t successes = 0;
    std::int64_t refused_by_service = 0;
    std::int64_t clients_served = 0;
    std::int64_t clients_unserved = 0;
    std::int64_t max_sends_in_a_day = 0;
};

class AgentLife final : public sim::SimulatedWorld {
public:
    AgentLife(std::uint64_t seed, int profiles = 1);

    // --- The script ------------------------------------------------------------------------------------
    // at runs `what` at simulated time `when` (true time since the start).
    void at(Ms when, std::function<void()> what);
    // every runs `what` at random times `mean` apart on average (exponentially), from `from` until the end.
    void every(Ms mean, std::function<void()> what, Ms from = 0);
    std::mt19937_64& random() { return rng_; }
    Ms uniform(Ms low, Ms high);

    // --- Knobs (effective at once) ------------------------------------------------------------------------
    void service(ServiceMode mode);
    void step_wall_clock(Ms by);
    // renew writes a new certificate valid from now + not_before_in for `valid_for`, and its key, at once.
    void renew(Ms valid_for, Ms not_before_in = 0);
    // renew_torn writes the new certificate now and its key `key_delay` later.
    void renew_torn(Ms valid_for, Ms key_delay);
    void fail_credentials_file(bool failing);
    void reload(bool credentials_changed);

    void run(Ms duration);

    const std::optional<std::string>& violation() const noexcept { return violation_; }
    const Counters& counters() const noexcept { return counters_; }
    Ms now_ms() const noexcept { return now_; }
    const engine::ProfileEngine& engine(int profile = 0) const {
        return profiles_[static_cast<std::size_t>(profile)]->engine();
    }

    // SimulatedWorld.
    engine::Instant now() const override { return sim::instant_at(now_, wall_offset_); }
    Result<engine::IdentityInfo> load_identity(sim::SimulatedProfile& profile) override;
    void send_create_session(sim::SimulatedProfile& profile) override;
    Result<void> write_credentials_file(sim::SimulatedProfile& profile) override;
    void wake(sim::SimulatedProfile& profile, engine::SteadyTime at) override;
    void saw(sim::SimulatedProfile& profile, const engine::Command& command) override;

private:
    struct Certificate {
        std::string fingerprint;
        Ms not_before = 0;  // true time
        Ms not_after = 0;
    };
    struct Issued {
        Ms expiration = 0;   // true time
        Ms host_behind = 0;  // how far the host's clock was behind when they arrived
    };
    struct ProfileBook {
        std::uint64_t timer = 0;
        std::optional<Certificate> signing;  // the certificate of the identity loaded last
        std::optional<Ms> in_flight_since;
        std::optional<Ms> waiting_since;  // a fast-path client waits for a RefreshDone
        Ms nothing_since = -1;            // since when nothing is servable (-1: something is)
        std::optional<Ms> renewed_at;     // a renewal not yet used for a CreateSession
        std::deque<Ms> recent_sends;      // CreateSession calls of the last minute
        std::map<Ms, std::int64_t> sends_by_day;
    };
    enum class Cause { none, network, service, identity, clock, file };

    void check();
    void fail(const std::string& what);
    void notice_files_changed();
    void renewed();
    void client_asks();
    void fast_path_client_asks();
    std::optional<Cause> unhealthy_cause() const;
    Ms host_now() const { return now_ + wall_offset_; }
    engine::EngineSettings settings() const;

    std::mt19937_64 rng_;
    sim::EventQueue<std::function<void()>> queue_;
    std::vector<std::unique_ptr<sim::SimulatedProfile>> profiles_;
    std::vector<ProfileBook> books_;
    Ms now_ = 0;
    Ms end_ = 0;
    Ms wall_offset_ = 0;  // host wall clock minus true time
    ServiceMode mode_ = ServiceMode::ok;
    Certificate certificate_;  // on disk
    bool key_matches_ = true;  // the key on disk belongs to certificate_
    bool credentials_file_fails_ = false;
    int next_certificate_ = 1;
    std::int64_t next_key_ = 1;
    std::map<std::string, Issued> issued_;
    std::optional<Cause> cause_;          // what keeps the world unhealthy now
    Cause recovered_from_ = Cause::none;  // what kept it unhealthy last
    Ms healthy_since_ = 0;
    Counters counters_;
    std::optional<std::string> violation_;
};

// sim_seeds are the seeds a scenario runs with: 1..count, or only $RAD_SIM_SEED when set (to replay one).
std::vector<std::uint64_t> sim_seeds(int count);

// describe_time is "day 12 03:04:05.678".
std::string describe_time(Ms t);

}  // namespace rad::simtest
