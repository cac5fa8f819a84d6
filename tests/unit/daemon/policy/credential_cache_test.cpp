// ProfileCache with a fake clock and a scripted sequence of refresh outcomes: single-flight, keep-last-good,
// never past expiry, and the schedule each outcome produces.
#include "daemon/policy/credential_cache.hpp"

#include <gtest/gtest.h>

namespace rad::daemon {
namespace {

using namespace std::chrono_literals;

const SteadyTime t0 = SteadyTime{} + 1000h;
const WallTime w0 = WallTime{} + 480000h;

signer::Credentials make_credentials(const std::string& id, std::chrono::seconds lifetime) {
    return signer::Credentials{id, Secret(std::string_view("secret-" + id)),
                               Secret(std::string_view("token-" + id)), w0 + lifetime};
}

TEST(ProfileCache, StartsWithoutCredentialsAndSaysWhy) {
    ProfileCache cache(RefreshSettings{}, t0);
    EXPECT_EQ(cache.state(t0, w0), CacheState::starting);
    auto served = cache.current(t0, w0);
    ASSERT_FALSE(served);
    EXPECT_NE(served.error().message.find("first CreateSession"), std::string::npos);
    EXPECT_EQ(cache.next_refresh(), t0);  // due at once
}

TEST(ProfileCache, SingleFlight) {
    ProfileCache cache(RefreshSettings{}, t0);
    EXPECT_TRUE(cache.begin_refresh());
    EXPECT_FALSE(cache.begin_refresh());
    EXPECT_FALSE(cache.begin_refresh());
    cache.complete_success(make_credentials("A", 3600s), w0, t0, 0.0);
    EXPECT_FALSE(cache.refresh_in_flight());
    EXPECT_TRUE(cache.begin_refresh());
}

TEST(ProfileCache, ServesUntilSixtySecondsBeforeExpiry) {
    ProfileCache cache(RefreshSettings{}, t0);
    ASSERT_TRUE(cache.begin_refresh());
    cache.complete_success(make_credentials("A", 3600s), w0, t0, 0.25);
    EXPECT_EQ(cache.next_refresh(), t0 + 1980s);  // sqrt(0.25): the middle of 50..60 %
    auto served = cache.current(t0 + 3539s, w0 + 3539s);
    ASSERT_TRUE(served);
    EXPECT_EQ((*served)->credentials.access_key_id, "A");
    EXPECT_EQ((*served)->credentials.secret_access_key.reveal(), "secret-A");
    EXPECT_FALSE(cache.current(t0 + 3540s, w0 + 3540s));
    EXPECT_FALSE(cache.current(t0 + 7200s, w0 + 7200s));
}

TEST(ProfileCache, AdoptedCredentialsAreServedAndRefreshedOnTheirOwnSchedule) {
    // Received 1000 s before this process started, 3600 s of life: the refresh point (50 % with jitter 0)
    // is 800 s away, and the lifetime a client's default minimum is based on is the one issued.
    ProfileCache cache(RefreshSettings{}, t0);
    cache.adopt(make_credentials("A", 2600s), w0 - 1000s, w0, t0, 0.0);
    EXPECT_EQ(cache.state(t0, w0), CacheState::fresh);
    auto served = cache.current(t0, w0);
    ASSERT_TRUE(served);
    EXPECT_EQ((*served)->credentials.access_key_id, "A");
    EXPECT_EQ((*served)->deadline - (*served)->received, 3600s);
    EXPECT_EQ(cache.next_refresh(), t0 + 800s);
    EXPECT_FALSE(cache.current(t0 + 2540s, w0 + 2540s));  // the serve margin holds as for any set
    // Past its refresh point already: due at once.
    ProfileCache late(RefreshSettings{}, t0);
    late.adopt(make_credentials("B", 600s), w0 - 3000s, w0, t0, 0.0);
    EXPECT_LE(late.next_refresh(), t0);
    EXPECT_TRUE(late.current(t0, w0));
}

TEST(ProfileCache, FailedRefreshKeepsLastGoodCredentials) {
    ProfileCache cache(RefreshSettings{}, t0);
    ASSERT_TRUE(cache.begin_refresh());
    cache.complete_success(make_credentials("A", 3600s), w0, t0, 0.0);
    ASSERT_TRUE(cache.begin_refresh());
    const auto decision =
        cache.complete_failure(make_error(Errc::upstream_server_error, "HTTP 500"), t0 + 1800s, 1.0);
    EXPECT_TRUE(decision.retryable);
    EXPECT_EQ(cache.next_refresh(), t0 + 1801s);
    EXPECT_EQ(cache.consecutive_failures(), 1);
    EXPECT_EQ(cache.state(t0 + 1800s, w0 + 1800s), CacheState::stale);
    auto served = cache.current(t0 + 1800s, w0 + 1800s);
    ASSERT_TRUE(served);
    EXPECT_EQ((*served)->credentials.access_key_id, "A");

    // Still failing when they run out: every surface gets the error, never the expired credentials.
    ASSERT_TRUE(cache.begin_refresh());
    cache.complete_failure(make_error(Errc::upstream_rejected, "AccessDeniedException: denied"), t0 + 3545s,
                           0.0);
    EXPECT_EQ(cache.state(t0 + 3545s, w0 + 3545s), CacheState::failing);
    auto refused = cache.current(t0 + 3545s, w0 + 3545s);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, Errc::upstream_rejected);
    EXPECT_NE(refused.error().message.find("AccessDeniedException"), std::string::npos);
    EXPECT_EQ(cache.consecutive_failures(), 2);
}

TEST(ProfileCache, SuccessClearsTheErrorAndReplacesCredentials) {
    ProfileCache cache(RefreshSettings{}, t0);
    ASSERT_TRUE(cache.begin_refresh());
    cache.complete_failure(make_error(Errc::upstream_timeout, "timed out"), t0, 0.5);
    EXPECT_EQ(cache.state(t0, w0), CacheState::failing);
    EXPECT_EQ(cache.next_refresh(), t0 + 500ms);
    ASSERT_TRUE(cache.begin_refresh());
    cache.complete_success(make_credentials("B", 900s), w0 + 1s, t0 + 1s, 0.0);
    EXPECT_EQ(cache.state(t0 + 1s, w0 + 1s), CacheState::fresh);
    EXPECT_FALSE(cache.last_error());
    EXPECT_EQ(cache.consecutive_failures(), 0);
    auto served = cache.current(t0 + 2s, w0 + 2s);
    ASSERT_TRUE(served);
    EXPECT_EQ((*served)->credentials.access_key_id, "B");
    // Issued at w0 + 900 s, received at w0 + 1 s: 899 s of life on the monotonic clock.
    EXPECT_EQ((*served)->deadline, t0 + 900s);
}

TEST(ProfileCache, WallClockJumpDoesNotExtendLife) {
    ProfileCache cache(RefreshSettings{}, t0);
    ASSERT_TRUE(cache.begin_refresh());
    cache.complete_success(make_credentials("A", 3600s), w0, t0, 0.0);
    // A wall clock set back by a day does not extend their life: at steady t0 + 3600 s they are gone.
    EXPECT_TRUE(cache.current(t0 + 3539s, w0 - 24h));
    EXPECT_FALSE(cache.current(t0 + 3600s, w0 - 24h));
    EXPECT_FALSE(cache.expired_by_wall_clock(t0 + 3600s, w0 - 24h));
}

TEST(ProfileCache, WallClockPastExpirationEndsServiceBeforeTheMonotonicDeadline) {
    // The host slept for two hours (the monotonic clock stood still) or its clock was set forward: the
    // Expiration has passed by the wall clock although the monotonic deadline is far away.
    ProfileCache cache(RefreshSettings{}, t0);
    ASSERT_TRUE(cache.begin_refresh());
    cache.complete_success(make_credentials("A", 3600s), w0, t0, 0.0);
    EXPECT_TRUE(cache.current(t0 + 10s, w0 + 10s));
    EXPECT_FALSE(cache.expired_by_wall_clock(t0 + 10s, w0 + 10s));

    EXPECT_FALSE(cache.current(t0 + 10s, w0 + 2h));
    EXPECT_TRUE(cache.expired_by_wall_clock(t0 + 10s, w0 + 2h));
    EXPECT_EQ(cache.state(t0 + 10s, w0 + 2h), CacheState::starting);
    // The same serve margin applies by either clock.
    EXPECT_TRUE(cache.current(t0 + 10s, w0 + 3539s));
    EXPECT_FALSE(cache.current(t0 + 10s, w0 + 3540s));

    // Once the monotonic deadline has passed too, this is plain expiry and not the clock watch's business.
    EXPECT_FALSE(cache.expired_by_wall_clock(t0 + 3600s, w0 + 2h));
}

TEST(ProfileCache, RequestRefreshByOnlyMovesEarlier) {
    ProfileCache cache(RefreshSettings{}, t0);
    ASSERT_TRUE(cache.begin_refresh());
    cache.complete_success(make_credentials("A", 3600s), w0, t0, 0.0);
    cache.request_refresh_by(t0 + 3000s);
    EXPECT_EQ(cache.next_refresh(), t0 + 1800s);
    cache.request_refresh_by(t0 + 10s);
    EXPECT_EQ(cache.next_refresh(), t0 + 10s);
}

}  // namespace
}  // namespace rad::daemon
