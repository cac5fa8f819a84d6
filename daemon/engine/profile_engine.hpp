#pragma once
// ProfileEngine is one profile's life over time: when to load its identity, when to call CreateSession, what
// to serve, how to back off, when to rewrite its credentials file. It is a plain state machine: events come
// in with the time they happen at, commands come out, and nothing else happens. It reads no clock, opens no
// file or socket and starts no thread; its random numbers come from a generator seeded by its owner. The
// agent runs it on its event loop with the real clocks and executes the commands (agent/profile_runtime.cpp);
// the simulations run the very same engine on a virtual clock against a virtual service (tests/sim,
// tools/fleet-sim).
//
// What it promises, whatever the order of events:
//  - single flight: at most one CreateSession (SendCreateSession ... SessionAnswered) at a time;
//  - never stale: servable() hands out credentials only while they have more than serve_margin left by both
//    clocks, and keeps the last good ones in service through failures until then;
//  - no expired certificate signs: SendCreateSession is only issued while the wall clock is within the loaded
//    certificate's [notBefore, notAfter]; outside it the refresh fails with certificate_expired or
//    certificate_not_yet_valid, and nothing is sent;
//  - bounded calls: after a success the next refresh is at least half the lifetime away (credentials too
//    short for that are refused as credentials_too_short and backed off); after a failure, the policy's
//    backoff; a refresh asked for on demand (a client, a reload, a renewal, the wall clock) comes at least
//    on_demand_spacing after the previous one asked for, and a client asks for one only while nothing is
//    servable after a network failure, or when a fast-path client needs more lifetime than held;
//  - a changed identity (renewed certificate, new key, new settings) is loaded at once and used for a
//    CreateSession at once, while the credentials held stay in service;
//  - every RefreshRequested is answered by one RefreshDone.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/error.hpp"
#include "common/log.hpp"
#include "config/config.hpp"
#include "daemon/policy/credentials_answer.hpp"
#include "daemon/policy/refresh_policy.hpp"
#include "daemon/policy/snapshot.hpp"
#include "signer/credentials.hpp"

namespace rad::engine {

using policy::HeldCredentials;
using policy::Millis;
using policy::RefreshSettings;
using policy::SteadyTime;
using policy::WallTime;

// Instant is a reading of both clocks: the monotonic one orders the engine's timers and expiries, the wall
// clock compares with the service's Expiration and the certificate's validity.
struct Instant {
    SteadyTime steady;
    WallTime wall;
};

// EngineSettings are the parts of the configuration the engine decides with.
struct EngineSettings {
    RefreshSettings refresh;
    // startup_jitter: the first CreateSession is delayed by a random 0..startup_jitter.
    Millis startup_jitter{0};
    // credentials_file: the profile keeps a credentials file (written after every new set).
    bool credentials_file = false;
};

// engine_settings are the engine's settings of a profile of the configuration.
EngineSettings engine_settings(const config::AgentSettings& agent, const config::ProfileConfig& profile);

// IdentityInfo is what the engine needs to know of a loaded identity.
struct IdentityInfo {
    std::string fingerprint;  // of the leaf certificate: a renewal changes it
    WallTime not_before;
    WallTime not_after;
    std::string subject;
    std::string serial;           // decimal
    std::string key_description;  // "EC P-256", "RSA-2048 on PKCS#11 token \"host\"", ...
};

// RefreshReason says why a refresh ran (the refresh_ok / refresh_failed lines carry it).
enum class RefreshReason {
    startup,     // the first refresh of a profile
    timer,       // the scheduled refresh point of the credentials held
    retry,       // the scheduled retry after a failure
    fast_path,   // a credential-process client needed more lifetime than held
    reload,      // a reload changed the profile's identity or CreateSession settings, or added it
    rotation,    // the certificate or key changed on disk
    wall_clock,  // the wall clock says the credentials held have expired (suspend, clock set forward)
    command,     // an operator ran `rolesanywhere-agent refresh`
    client,      // a client found nothing to serve
};

const char* refresh_reason_name(RefreshReason reason) noexcept;

// on_demand: the refresh was asked for, not scheduled by the policy (see RefreshSettings::on_demand_spacing).
bool on_demand(RefreshReason reason) noexcept;

// HandedOver are credentials a previous process of the agent held for this profile (a restart under
// systemd), with the fingerprint of the certificate they were issued for ("" when not known).
struct HandedOver {
    signer::Credentials credentials;
    WallTime received;
    std::string certificate_fingerprint;
};

// --- Events: what happened -------------------------------------------------------------------------------

struct Started {
    std::optional<HandedOver> handed_over;
};
// Tick: the timer armed at wake_at() fired, or the owner's periodic look at the clocks.
struct Tick {};
struct IdentityFilesChanged {};
struct IdentityLoaded {
    Result<IdentityInfo> identity;
};
struct SessionAnswered {
    Result<signer::Credentials> credentials;
};
// RefreshRequested: a fast-path client needs more lifetime than held (fast_path), or an operator asked
// (command). Answered by one RefreshDone.
struct RefreshRequested {
    RefreshReason reason;
};
// ClientWaiting: a client of IMDS or the container endpoint found nothing to serve.
struct ClientWaiting {};
struct Reconfigured {
    EngineSettings settings;
    bool credentials_changed = false;  // identity or CreateSession settings: load and refresh again
};
struct SurfaceFailed {
    std::string surface;  // "credentials_file", "ecs_token", "imds"
    Error error;
};
struct SurfaceRecovered {
    std::string surface;
};
struct Stopped {};

using Event = std::variant<Started,
                           Tick,
                           IdentityFilesChanged,
                           IdentityLoaded,
                           SessionAnswered,
                           RefreshRequested,
                           ClientWaiting,
                           Reconfigured,
                           SurfaceFailed,
                           SurfaceRecovered,
                           Stopped>;

// --- Commands: what the owner does next -------------------------------------------------------------------

// LoadIdentity: load the identity from its files (or token, or TPM) and answer with IdentityLoaded.
struct LoadIdentity {};
// SendCreateSession: sign a CreateSession request with the identity loaded last and send it; answer with
// SessionAnswered.
struct SendCreateSession {};
// WriteCredentialsFile: write the credentials held to the profile's credentials file; answer with
// SurfaceRecovered or SurfaceFailed ("credentials_file").
struct WriteCredentialsFile {};
// RetrySurface: try a failing surface again ("ecs_token", "imds"); answer as for WriteCredentialsFile.
struct RetrySurface {
    std::string surface;
};
// CredentialsChanged: new credentials are servable (or were handed over): clients held back may go, and what
// the agent hands to its next process changed.
struct CredentialsChanged {};
// RefreshDone: a refresh ended, well or not: answer the clients that waited for it.
struct RefreshDone {
    bool ok = false;
};
// Log: one line of the agent's log.
struct Log {
    LogLevel level;
    std::string event;
    LogFields fields;
};

using Command = std::variant<LoadIdentity,
                             SendCreateSession,
                             WriteCredentialsFile,
                             RetrySurface,
                             CredentialsChanged,
                             RefreshDone,
                             Log>;

// SplitMix64 is the engine's random generator: 8 bytes of state, so that a simulation holds a hundred
// thousand engines; its numbers only spread refreshes (jitter), so statistical quality is enough.
class SplitMix64 {
public:
    using result_type = std::uint64_t;
    explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
    static constexpr result_type min() { return 0; }
    static constexpr result_type max() { return ~result_type{0}; }
    result_type operator()() {
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }

private:
    std::uint64_t state_;
};

// ProfileState is how a profile stands (status, health, STATUS=).
enum class ProfileState {
    starting,  // nothing held yet, no refresh has failed
    fresh,     // credentials in service, the last refresh succeeded
    stale,     // credentials in service, the last refresh failed (retrying)
    failing,   // nothing servable, the last refresh failed
};

const char* profile_state_name(ProfileState state) noexcept;

class ProfileEngine {
public:
    // The engine starts idle; Started begins its life. `seed` seeds its random numbers (jitter).
    ProfileEngine(std::string name, EngineSettings settings, std::uint64_t seed);

    // handle applies one event at `now` and returns the commands it leads to, in order.
    [[nodiscard]] std::vector<Command> handle(const Event& event, Instant now);

    // wake_at is when the engine next needs a Tick (SteadyTime::max() when only an event can move it).
    SteadyTime wake_at() const noexcept;

    // servable is the credentials a surface may hand out at `now`, or why there are none.
    [[nodiscard]] Result<const HeldCredentials*> servable(Instant now) const;

    // can_sign is true when the identity is loaded and the certificate is valid at `now`: a CreateSession
    // could be sent.
    bool can_sign(Instant now) const;

    // answer decides a fast-path client's request for `min_seconds` of lifetime (negative: the default).
    policy::CredentialsAnswer answer(int min_seconds, Instant now) const;

    const std::string& name() const noexcept { return name_; }
    const EngineSettings& settings() const noexcept { return settings_; }
    ProfileState state(Instant now) const;
    const std::optional<HeldCredentials>& held() const noexcept { return held_; }
    const std::optional<Error>& last_error() const noexcept { return last_error_; }
    int consecutive_failures() const noexcept { return failures_; }
    bool refresh_in_flight() const noexcept { return in_flight_; }
    SteadyTime next_refresh() const noexcept { return next_refresh_; }
    const std::optional<IdentityInfo>& identity() const noexcept { return identity_; }
    // credentials_fingerprint is the certificate the held credentials were issued for ("" when unknown).
    const std::string& credentials_fingerprint() const noexcept { return credentials_fingerprint_; }
    // ever_served: credentials were held at some point (a refresh completed or some were handed over).
    bool ever_served() const noexcept { return ever_served_; }
    // fill_snapshot writes the engine's part of a status snapshot: state, credentials, refresh, last error,
    // certificate, surfaces, counters.
    void fill_snapshot(policy::ProfileSnapshot& snapshot, Instant now) const;

private:
    struct SurfaceState {
        std::optional<Error> error;
        std::uint64_t failures = 0;
        int attempts = 0;
        SteadyTime retry_at = SteadyTime::max();
    };
    using Out = std::vector<Command>;

    void on(const Started& e, Instant now, Out& out);
    void on(const Tick& e, Instant now, Out& out);
    void on(const IdentityFilesChanged& e, Instant now, Out& out);
    void on(const IdentityLoaded& e, Instant now, Out& out);
    void on(const SessionAnswered& e, Instant now, Out& out);
    void on(const RefreshRequested& e, Instant now, Out& out);
    void on(const ClientWaiting& e, Instant now, Out& out);
    void on(const Reconfigured& e, Instant now, Out& out);
    void on(const SurfaceFailed& e, Instant now, Out& out);
    void on(const SurfaceRecovered& e, Instant now, Out& out);
    void on(const Stopped& e, Instant now, Out& out);

    // advance issues what is due at `now`: surface retries, a wall-clock refresh, an identity load, a
    // CreateSession (or the local failure that stands in for it).
    void advance(Instant now, Out& out);
    void refresh_soon(Instant now, RefreshReason reason);
    void succeed(signer::Credentials credentials, Instant now, Out& out);
    void fail(Error error, Instant now, Out& out);
    void finish(bool ok, Out& out);
    void accept(signer::Credentials credentials, WallTime received, Instant now);
    std::optional<Error> validity_error(WallTime wall_now) const;
    void warn_if_expiring(Instant now, Out& out);
    double jitter();
    void log(Out& out, LogLevel level, std::string event, LogFields fields) const;

    std::string name_;
    EngineSettings settings_;
    SplitMix64 rng_;
    bool started_ = false;
    bool stopped_ = false;

    // The identity: the last one loaded (kept for status while a reload fails), whether it must be loaded
    // again before the next CreateSession, and whether a load is running.
    std::optional<IdentityInfo> identity_;
    bool identity_usable_ = false;  // identity_ is the current files' identity and may sign
    bool identity_stale_ = true;    // load again before signing (files or settings changed)
    bool loading_ = false;
    std::optional<Error> identity_error_;

    // The credentials and the refresh.
    std::optional<HeldCredentials> held_;
    std::string credentials_fingerprint_;
    bool ever_served_ = false;
    bool in_flight_ = false;
    SteadyTime sent_at_{};
    SteadyTime next_refresh_{};
    RefreshReason reason_ = RefreshReason::startup;
    int failures_ = 0;
    std::optional<Error> last_error_;
    std::optional<SteadyTime> last_on_demand_;  // when the last CreateSession asked for on demand went out
    SteadyTime wall_clock_refresh_for_{};       // `received` of the set a wall-clock refresh was started for
    int pending_done_ = 0;                      // RefreshRequested not yet answered by RefreshDone
    bool refresh_again_ = false;                // the settings changed while a CreateSession was in flight

    std::map<std::string, SurfaceState> surfaces_;
    std::optional<std::pair<std::string, WallTime>> expiry_warned_;  // serial, when

    std::map<std::string, std::uint64_t> outcomes_;  // "ok", "retryable", "rejected"
    policy::LatencyHistogram create_session_seconds_;
};

}  // namespace rad::engine
