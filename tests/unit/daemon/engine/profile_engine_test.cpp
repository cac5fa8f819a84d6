// The engine's orchestration through its seams: events in at chosen instants, commands out. Each test walks
// one story of a profile's life and checks what the engine asked for and when; the decisions that are tables
// (which failures a client may hurry, what each reason counts as) are tables here too.
#include "daemon/engine/profile_engine.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rad::engine {
namespace {

using namespace std::chrono_literals;

const SteadyTime t0 = SteadyTime{} + 1000h;
const WallTime w0 = WallTime{} + 490000h;

IdentityInfo certificate(std::string fingerprint, WallTime not_before, WallTime not_after) {
    return IdentityInfo{std::move(fingerprint), not_before, not_after, "CN=host", "42", "EC P-256"};
}

signer::Credentials issued(WallTime expiration, std::string key = "ASIAFIRST") {
    return signer::Credentials{std::move(key), Secret(std::string_view("secret")),
                               Secret(std::string_view("token")), expiration};
}

// Story drives one engine on a clock the test moves, keeping every command it yields.
class Story {
public:
    explicit Story(EngineSettings settings = {}) : engine_("web", settings, 7) {}

    Instant at() const { return Instant{t0 + elapsed_, w0 + elapsed_ + wall_offset_}; }
    void pass(std::chrono::milliseconds d) { elapsed_ += d; }
    void step_wall(std::chrono::milliseconds d) { wall_offset_ += d; }
    std::chrono::milliseconds elapsed() const { return elapsed_; }

    std::vector<Command> on(Event event) {
        auto commands = engine_.handle(event, at());
        all_.insert(all_.end(), commands.begin(), commands.end());
        return commands;
    }
    // start begins with an identity valid from a day ago for `valid_for`, loaded at once.
    void start(std::chrono::hours valid_for = 24h * 30,
               std::optional<HandedOver> handed_over = std::nullopt) {
        expect_one<LoadIdentity>(on(Started{std::move(handed_over)}));
        on(IdentityLoaded{certificate("cert-1", w0 - 24h, w0 + valid_for)});
    }
    // succeed answers the CreateSession in flight with credentials of `lifetime`.
    std::vector<Command> succeed(std::chrono::seconds lifetime = 3600s, std::string key = "ASIAFIRST") {
        return on(SessionAnswered{issued(at().wall + lifetime, std::move(key))});
    }
    std::vector<Command> failure(Errc code, std::chrono::seconds retry_after = 0s) {
        return on(SessionAnswered{Error{code, "simulated", retry_after}});
    }
    // tick_at moves to the engine's wake time and ticks.
    std::vector<Command> tick_at_wake() {
        const auto wake = engine_.wake_at();
        if (wake > at().steady) {
            elapsed_ += std::chrono::duration_cast<std::chrono::milliseconds>(wake - at().steady);
        }
        return on(Tick{});
    }

    template <class C>
    static bool has(const std::vector<Command>& commands) {
        for (const auto& c : commands) {
            if (std::holds_alternative<C>(c)) {
                return true;
            }
        }
        return false;
    }
    template <class C>
    static void expect_one(const std::vector<Command>& commands) {
        int n = 0;
        for (const auto& c : commands) {
            n += std::holds_alternative<C>(c) ? 1 : 0;
        }
        EXPECT_EQ(n, 1);
    }
    static std::string logged(const std::vector<Command>& commands, const std::string& event) {
        for (const auto& c : commands) {
            if (const auto* line = std::get_if<Log>(&c); line != nullptr && line->event == event) {
                return format_log_line(line->level, LogFormat::text, line->event, line->fields);
            }
        }
        return "";
    }

    ProfileEngine& engine() { return engine_; }
    const std::vector<Command>& all() const { return all_; }

private:
    ProfileEngine engine_;
    std::chrono::milliseconds elapsed_{0};
    std::chrono::milliseconds wall_offset_{0};
    std::vector<Command> all_;
};

TEST(ProfileEngine, StartsByLoadingThenSendsAndServes) {
    Story s;
    s.start();
    EXPECT_TRUE(s.engine().refresh_in_flight()) << "a start with no jitter sends at once";
    EXPECT_EQ(s.engine().state(s.at()), ProfileState::starting);
    EXPECT_FALSE(s.engine().servable(s.at()));
    s.pass(200ms);
    const auto done = s.succeed();
    EXPECT_TRUE(Story::has<CredentialsChanged>(done));
    EXPECT_NE(Story::logged(done, "refresh_ok").find("reason=startup"), std::string::npos);
    ASSERT_TRUE(s.engine().servable(s.at()));
    EXPECT_EQ((*s.engine().servable(s.at()))->credentials.access_key_id, "ASIAFIRST");
    EXPECT_EQ(s.engine().state(s.at()), ProfileState::fresh);
    // The next refresh at 50-60 % of the hour.
    const auto next = s.engine().wake_at() - s.at().steady;
    EXPECT_GE(next, 1800s);
    EXPECT_LE(next, 2160s);
}

TEST(ProfileEngine, StartupJitterDelaysTheFirstCall) {
    EngineSettings settings;
    settings.startup_jitter = 600s;
    Story s(settings);
    s.start();
    EXPECT_FALSE(s.engine().refresh_in_flight());
    EXPECT_GT(s.engine().wake_at(), s.at().steady);
    EXPECT_LE(s.engine().wake_at(), s.at().steady + 600s);
    EXPECT_TRUE(Story::has<SendCreateSession>(s.tick_at_wake()));
}

// B4: a certificate that expires while the agent runs is checked before every signature: nothing is sent,
// the failure says "expired", and the credentials held stay in service until they run out.
TEST(ProfileEngine, AnExpiredCertificateNeverSigns) {
    Story s;
    s.start(1h);  // expires an hour from now
    s.pass(200ms);
    s.succeed(3600s);
    // The refresh due at 50-60 % of the hour goes out: the certificate is still valid then.
    ASSERT_TRUE(Story::has<SendCreateSession>(s.tick_at_wake()));
    s.pass(200ms);
    s.succeed(3600s);
    // The next one falls past notAfter: it fails here, and nothing is sent.
    const auto commands = s.tick_at_wake();
    ASSERT_GT(s.at().wall, w0 + 1h);
    EXPECT_FALSE(Story::has<SendCreateSession>(commands));
    const std::string line = Story::logged(commands, "refresh_failed");
    EXPECT_NE(line.find("code=certificate_expired"), std::string::npos) << line;
    EXPECT_NE(line.find("expired at"), std::string::npos) << line;
    EXPECT_NE(line.find("class=rejected"), std::string::npos) << line;
    EXPECT_NE(line.find("serving=last-good"), std::string::npos) << line;
    EXPECT_FALSE(s.engine().can_sign(s.at()));
    // Never, however often it is asked or reloaded.
    for (int i = 0; i < 50; ++i) {
        s.pass(10min);
        EXPECT_FALSE(Story::has<SendCreateSession>(s.on(RefreshRequested{RefreshReason::command})));
        EXPECT_FALSE(
            Story::has<SendCreateSession>(s.on(IdentityLoaded{certificate("cert-1", w0 - 24h, w0 + 1h)})));
        EXPECT_FALSE(Story::has<SendCreateSession>(s.tick_at_wake()));
    }
}

// R11: a certificate that is not valid yet is reported as such, and used the moment it becomes valid.
TEST(ProfileEngine, ANotYetValidCertificateIsUsedWhenItBecomesValid) {
    Story s;
    s.on(Started{});
    const auto loaded = s.on(IdentityLoaded{certificate("cert-1", w0 + 90s, w0 + 24h)});
    EXPECT_FALSE(Story::has<SendCreateSession>(loaded));
    const std::string line = Story::logged(loaded, "refresh_failed");
    EXPECT_NE(line.find("code=certificate_not_yet_valid"), std::string::npos) << line;
    EXPECT_NE(line.find("not yet valid"), std::string::npos) << line;
    EXPECT_EQ(s.engine().wake_at(), t0 + 90s);
    EXPECT_TRUE(Story::has<SendCreateSession>(s.tick_at_wake()));
}

// B7: credentials that arrive nearly expired are a failure with backoff, whose message names the likely
// cause; no sequence of such answers makes the engine call more often than its backoff.
TEST(ProfileEngine, CredentialsTooShortToServeBackOff) {
    Story s;
    s.start();
    std::vector<std::chrono::milliseconds> sends{s.elapsed()};
    std::string first_failure;
    while (s.elapsed() < 2h) {
        s.pass(200ms);
        const auto answered = s.succeed(40s);
        if (first_failure.empty()) {
            first_failure = Story::logged(answered, "refresh_failed");
        }
        for (auto commands = s.tick_at_wake(); !Story::has<SendCreateSession>(commands);
             commands = s.tick_at_wake()) {
        }
        sends.push_back(s.elapsed());
    }
    EXPECT_NE(first_failure.find("code=credentials_too_short"), std::string::npos) << first_failure;
    EXPECT_NE(first_failure.find("is this host's clock ahead"), std::string::npos) << first_failure;
    // Refused as a refusal is: every 5-10 minutes, so at most 25 calls in two hours (the loop was 2,295 in 10
    // s).
    EXPECT_LE(sends.size(), 25u);
    for (std::size_t i = 1; i < sends.size(); ++i) {
        EXPECT_GE(sends[i] - sends[i - 1], 300s) << i;
    }
    EXPECT_FALSE(s.engine().servable(s.at())) << "40 s credentials are inside the serve margin";
}

// The same for a host whose clock runs 59 minutes ahead of the service's: an hour's credentials look like a
// minute's.
TEST(ProfileEngine, AClockFarAheadDoesNotMakeALoop) {
    Story s;
    s.step_wall(59min);
    s.start(24h * 30);
    int sends = 1;
    while (s.elapsed() < 1h) {
        s.pass(200ms);
        s.on(SessionAnswered{issued(s.at().wall - 59min + 1h)});
        for (auto commands = s.tick_at_wake(); !Story::has<SendCreateSession>(commands);
             commands = s.tick_at_wake()) {
        }
        ++sends;
    }
    EXPECT_LE(sends, 13);
    EXPECT_EQ(s.engine().last_error()->code, Errc::credentials_too_short);
}

// R7: a refused refresh waits 5-10 minutes, whatever is held: no rush of retries as the credentials run out.
TEST(ProfileEngine, RefusalsWaitFiveToTenMinutes) {
    Story s;
    s.start();
    s.succeed();
    auto commands = s.tick_at_wake();
    ASSERT_TRUE(Story::has<SendCreateSession>(commands));
    std::vector<std::chrono::milliseconds> waits;
    while (s.engine().servable(s.at()) && waits.size() < 20) {
        s.pass(200ms);
        s.failure(Errc::upstream_rejected);
        const auto before = s.elapsed();
        commands = s.tick_at_wake();
        ASSERT_TRUE(Story::has<SendCreateSession>(commands));
        waits.push_back(s.elapsed() - before);
    }
    ASSERT_FALSE(waits.empty());
    for (const auto wait : waits) {
        EXPECT_GE(wait, 300s);
        EXPECT_LE(wait, 600s);
    }
}

// R6: after a network failure with nothing to serve, a client's request starts a refresh at once (single
// flight, on-demand spacing); after throttling it does not.
TEST(ProfileEngine, AClientHurriesARefreshAfterANetworkFailureOnly) {
    const struct {
        Errc failure;
        bool hurried;
    } rows[] = {{Errc::upstream_unreachable, true}, {Errc::upstream_timeout, true},
                {Errc::upstream_throttled, false},  {Errc::upstream_server_error, false},
                {Errc::upstream_rejected, false},   {Errc::credentials_too_short, false}};
    for (const auto& row : rows) {
        Story s;
        s.start();
        s.pass(200ms);
        for (int i = 0; i < 12; ++i) {  // a long outage: the backoff grows to minutes
            s.failure(row.failure);
            s.tick_at_wake();
            s.pass(200ms);
        }
        s.failure(row.failure);
        ASSERT_FALSE(s.engine().servable(s.at()));
        s.pass(6s);
        EXPECT_EQ(Story::has<SendCreateSession>(s.on(ClientWaiting{})), row.hurried)
            << errc_name(row.failure);
    }
}

TEST(ProfileEngine, OnDemandRefreshesAreSpaced) {
    Story s;
    s.start();
    s.pass(200ms);
    s.succeed();
    // A storm of reloads that change the credentials settings: one CreateSession per spacing, not one each.
    int sends = 0;
    for (int i = 0; i < 100; ++i) {
        const auto commands = s.on(Reconfigured{EngineSettings{}, true});
        if (Story::has<LoadIdentity>(commands)) {
            s.on(IdentityLoaded{certificate("cert-1", w0 - 24h, w0 + 24h * 30)});
        }
        if (s.engine().refresh_in_flight()) {
            ++sends;
            s.pass(200ms);
            s.succeed();
        }
        s.pass(100ms);
        s.on(Tick{});
        if (s.engine().refresh_in_flight()) {
            ++sends;
            s.pass(200ms);
            s.succeed();
        }
    }
    // 100 reloads over 40 s: at most one call per 5 s.
    EXPECT_LE(sends, static_cast<int>(s.elapsed() / 5s) + 1);
    EXPECT_GE(sends, 2);
}

// A renewal is loaded when its files change and used for a CreateSession at once; the credentials held stay
// in service meanwhile. A renewal caught half-way is a failure of its own, tried again when the files change.
TEST(ProfileEngine, ARenewalIsUsedAtOnce) {
    Story s;
    s.start();
    s.pass(200ms);
    s.succeed();
    s.pass(10min);
    EXPECT_TRUE(Story::has<LoadIdentity>(s.on(IdentityFilesChanged{})));
    const auto torn = s.on(IdentityLoaded{Error{Errc::key_cert_mismatch, "the key does not match", {}}});
    EXPECT_FALSE(Story::has<SendCreateSession>(torn));
    EXPECT_TRUE(s.engine().servable(s.at())) << "the credentials held stay in service";
    s.pass(30s);
    EXPECT_TRUE(Story::has<LoadIdentity>(s.on(IdentityFilesChanged{})));
    const auto renewed = s.on(IdentityLoaded{certificate("cert-2", w0, w0 + 24h * 60)});
    EXPECT_TRUE(Story::has<SendCreateSession>(renewed));
    EXPECT_FALSE(Story::logged(renewed, "identity_reloaded").empty());
    s.pass(200ms);
    s.succeed(3600s, "ASIASECOND");
    EXPECT_EQ(s.engine().credentials_fingerprint(), "cert-2");
    // The same files touched again (same certificate): loaded, nothing sent.
    EXPECT_TRUE(Story::has<LoadIdentity>(s.on(IdentityFilesChanged{})));
    EXPECT_FALSE(
        Story::has<SendCreateSession>(s.on(IdentityLoaded{certificate("cert-2", w0, w0 + 24h * 60)})));
}

// Credentials handed over by a restart are served at once; if they were issued for another certificate than
// the one now on disk (a renewal restarted the service), the new one is used at once.
TEST(ProfileEngine, HandedOverCredentialsAndARenewalAcrossARestart) {
    for (const std::string fingerprint : {"cert-1", "cert-0", ""}) {
        Story s;
        const auto started = s.on(Started{HandedOver{issued(w0 + 40min), w0 - 20min, fingerprint}});
        EXPECT_TRUE(Story::has<CredentialsChanged>(started)) << fingerprint;
        EXPECT_TRUE(s.engine().servable(s.at())) << fingerprint;
        const auto loaded = s.on(IdentityLoaded{certificate("cert-1", w0 - 24h, w0 + 24h * 30)});
        // cert-1 (the same) and "" (an agent that did not say) wait for the policy's point; cert-0 does not.
        EXPECT_EQ(Story::has<SendCreateSession>(loaded), fingerprint == "cert-0") << fingerprint;
    }
}

TEST(ProfileEngine, EveryRefreshRequestIsAnswered) {
    // In flight, loading, failing to load, outside validity, or fine: a RefreshDone comes.
    Story s;
    s.start();
    s.on(RefreshRequested{RefreshReason::command});
    s.pass(200ms);
    EXPECT_TRUE(Story::has<RefreshDone>(s.succeed()));
    auto asked = s.on(RefreshRequested{RefreshReason::command});
    ASSERT_TRUE(Story::has<SendCreateSession>(asked));
    s.pass(200ms);
    EXPECT_TRUE(Story::has<RefreshDone>(s.failure(Errc::upstream_unreachable)));
    s.on(IdentityFilesChanged{});
    s.on(IdentityLoaded{Error{Errc::key_cert_mismatch, "mismatch", {}}});
    asked = s.on(RefreshRequested{RefreshReason::command});
    ASSERT_TRUE(Story::has<LoadIdentity>(asked)) << "a failed identity is tried again";
    EXPECT_TRUE(
        Story::has<RefreshDone>(s.on(IdentityLoaded{Error{Errc::key_cert_mismatch, "mismatch", {}}})));
}

TEST(ProfileEngine, SettingsChangedDuringACallRefreshAgain) {
    Story s;
    s.start();
    EXPECT_TRUE(s.engine().refresh_in_flight());
    EXPECT_FALSE(Story::has<LoadIdentity>(s.on(Reconfigured{EngineSettings{}, true})));
    s.pass(200ms);
    const auto answered = s.succeed();
    EXPECT_TRUE(Story::has<LoadIdentity>(answered)) << "the new settings are loaded once the call is back";
    s.pass(5s);
    EXPECT_TRUE(
        Story::has<SendCreateSession>(s.on(IdentityLoaded{certificate("cert-1", w0 - 24h, w0 + 24h)})));
}

TEST(ProfileEngine, FailingSurfacesAreRetriedAfterOneTwoFourUpToSixtySeconds) {
    EngineSettings settings;
    settings.credentials_file = true;
    Story s(settings);
    s.start();
    s.pass(200ms);
    EXPECT_TRUE(Story::has<WriteCredentialsFile>(s.succeed()));
    std::vector<std::chrono::milliseconds> waits;
    for (int i = 0; i < 9; ++i) {
        s.on(SurfaceFailed{"credentials_file", make_error(Errc::internal, "disk full")});
        const auto before = s.elapsed();
        EXPECT_TRUE(Story::has<WriteCredentialsFile>(s.tick_at_wake()));
        waits.push_back(s.elapsed() - before);
    }
    const std::vector<std::chrono::milliseconds> expected{1s, 2s, 4s, 8s, 16s, 32s, 60s, 60s, 60s};
    EXPECT_EQ(waits, expected);
    s.on(SurfaceRecovered{"credentials_file"});
    policy::ProfileSnapshot snapshot;
    s.engine().fill_snapshot(snapshot, s.at());
    ASSERT_EQ(snapshot.surfaces.size(), 1u);
    EXPECT_TRUE(snapshot.surfaces[0].ok);
    EXPECT_EQ(snapshot.surfaces[0].failures, 9u);
}

// The wall clock set forward (or a host that slept) ends the credentials by the wall clock: served no more,
// and refreshed once, not in a loop.
TEST(ProfileEngine, AWallClockSetForwardRefreshesOnce) {
    Story s;
    s.start();
    s.pass(200ms);
    s.succeed();
    s.pass(10s);
    s.step_wall(2h);
    EXPECT_FALSE(s.engine().servable(s.at()));
    const auto ticked = s.on(Tick{});
    EXPECT_TRUE(Story::has<SendCreateSession>(ticked));
    EXPECT_FALSE(Story::logged(ticked, "wall_clock_expired").empty());
    s.pass(200ms);
    s.failure(Errc::upstream_rejected);  // the service refuses a request dated two hours ahead
    s.pass(1s);
    EXPECT_FALSE(Story::has<SendCreateSession>(s.on(Tick{}))) << "one wall-clock refresh per set held";
}

TEST(OnDemand, TheReasonsThatAreAskedFor) {
    const struct {
        RefreshReason reason;
        bool on_demand;
    } rows[] = {
        {RefreshReason::startup, false}, {RefreshReason::timer, false},     {RefreshReason::retry, false},
        {RefreshReason::command, false}, {RefreshReason::fast_path, true},  {RefreshReason::reload, true},
        {RefreshReason::rotation, true}, {RefreshReason::wall_clock, true}, {RefreshReason::client, true}};
    for (const auto& row : rows) {
        EXPECT_EQ(on_demand(row.reason), row.on_demand) << refresh_reason_name(row.reason);
    }
}

}  // namespace
}  // namespace rad::engine
