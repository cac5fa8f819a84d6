// Tables for the refresh policy: when to refresh after a success, how long to wait after each kind of
// failure, and when credentials stop being served.
#include "daemon/policy/refresh_policy.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "tests/support/case_name.hpp"

namespace rad::policy {
namespace {

using namespace std::chrono_literals;

const SteadyTime t0 = SteadyTime{} + 1000h;

TEST(MonotonicDeadline, ConvertsWallExpirationOnce) {
    const WallTime wall_now = WallTime{} + 500000h;
    EXPECT_EQ(monotonic_deadline(wall_now + 3600s, wall_now, t0), t0 + 3600s);
    // An expiration already past gives a deadline of "now", never one in the past that wraps.
    EXPECT_EQ(monotonic_deadline(wall_now - 10s, wall_now, t0), t0);
}

struct SuccessCase {
    std::chrono::seconds lifetime;
    double jitter;
    std::chrono::seconds expected_after;
};

class RefreshAfterSuccess : public ::testing::TestWithParam<SuccessCase> {};

TEST_P(RefreshAfterSuccess, PicksPointInFiftyToSixtyPercent) {
    const auto& c = GetParam();
    const RefreshSettings settings;
    EXPECT_EQ(next_refresh_after_success(settings, t0, t0 + c.lifetime, c.jitter), t0 + c.expected_after);
}

INSTANTIATE_TEST_SUITE_P(
    Table,
    RefreshAfterSuccess,
    ::testing::Values(SuccessCase{3600s, 0.0, 1800s},   // 50 % of an hour
                      SuccessCase{3600s, 0.25, 1980s},  // sqrt(0.25) = 0.5 of the window: 55 %
                      SuccessCase{3600s, 0.81, 2124s},  // sqrt(0.81) = 0.9: 59 %
                      SuccessCase{3600s, 1.0, 2160s},   // 60 %
                      SuccessCase{3600s, 7.0, 2160s},   // jitter clamped to 1
                      SuccessCase{3600s, -1.0, 1800s},  // and to 0
                      SuccessCase{43200s, 0.0, 21600s},
                      // 15 minutes: 50 % = 450 s, still before expiry - 120 s lead
                      SuccessCase{900s, 0.0, 450s},
                      // 5 minutes: 60 % = 180 s would leave 120 s... exactly the lead
                      SuccessCase{300s, 1.0, 180s},
                      // 4 minutes: 60 % = 144 s would leave 96 s; the 120 s lead moves it to 120 s
                      SuccessCase{240s, 1.0, 120s},
                      // 3 minutes: the lead would mean 60 s; never before half the lifetime: 90 s
                      SuccessCase{180s, 1.0, 90s},
                      // 1 minute (refused as too short before it gets here): still half the lifetime
                      SuccessCase{60s, 0.5, 30s}),
    [](const ::testing::TestParamInfo<SuccessCase>& row) {
        return "lifetime" + std::to_string(row.param.lifetime.count()) + "s_jitter" +
               test::number_name(row.param.jitter);
    });

TEST(RefreshAfterSuccess, EveryJitterLandsInsideTheWindow) {
    const RefreshSettings settings;
    for (int i = 0; i <= 100; ++i) {
        const double jitter = i / 100.0;
        const auto at = next_refresh_after_success(settings, t0, t0 + 3600s, jitter);
        EXPECT_GE(at, t0 + 1800s);
        EXPECT_LE(at, t0 + 2160s);
    }
}

// N4 of the test plan: 10 000 refresh points drawn with a fixed seed all fall in [0.5, 0.6] of the lifetime,
// spread widely enough that a fleet started together does not refresh together (standard deviation > 0.02),
// and their mean is late enough (> 0.556) that 10 000 agents with 1 h sessions stay under 5 CreateSession/s.
TEST(RefreshAfterSuccess, TenThousandSchedulesSpreadInsideTheWindow) {
    const RefreshSettings settings;
    std::mt19937_64 rng(20261126);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    double sum = 0, sum_sq = 0, lowest = 1, highest = 0;
    constexpr int kSchedules = 10000;
    for (int i = 0; i < kSchedules; ++i) {
        const auto at = next_refresh_after_success(settings, t0, t0 + 3600s, uniform(rng));
        const double fraction = std::chrono::duration<double>(at - t0).count() / 3600.0;
        sum += fraction;
        sum_sq += fraction * fraction;
        lowest = std::min(lowest, fraction);
        highest = std::max(highest, fraction);
    }
    const double mean = sum / kSchedules;
    const double stddev = std::sqrt(sum_sq / kSchedules - mean * mean);
    std::printf("N4: refresh fraction min %.4f max %.4f mean %.4f stddev %.4f\n", lowest, highest, mean,
                stddev);
    EXPECT_GE(lowest, 0.5);
    EXPECT_LE(highest, 0.6);
    EXPECT_GT(stddev, 0.02);
    EXPECT_GT(mean, 0.556);
    EXPECT_LT(mean, 0.58);
}

struct FailureCase {
    Errc code;
    int failures;
    double jitter;
    std::chrono::seconds retry_after;
    Millis expected_wait;
    bool retryable;
};

class RefreshAfterFailure : public ::testing::TestWithParam<FailureCase> {};

TEST_P(RefreshAfterFailure, BacksOffByClass) {
    const auto& c = GetParam();
    const RefreshSettings settings;
    Error error = make_error(c.code, "x");
    error.retry_after = c.retry_after;
    const auto decision = next_refresh_after_failure(settings, t0, error, c.failures, c.jitter, std::nullopt);
    EXPECT_EQ(decision.retryable, c.retryable);
    EXPECT_EQ(decision.retry_at - t0, c.expected_wait);
}

INSTANTIATE_TEST_SUITE_P(
    Table,
    RefreshAfterFailure,
    ::testing::Values(
        // full jitter: jitter × min(cap, 1 s × 2^(n-1))
        FailureCase{Errc::upstream_unreachable, 1, 1.0, 0s, 1000ms, true},
        FailureCase{Errc::upstream_unreachable, 1, 0.5, 0s, 500ms, true},
        FailureCase{Errc::upstream_timeout, 3, 1.0, 0s, 4000ms, true},
        FailureCase{Errc::upstream_server_error, 9, 1.0, 0s, 256000ms, true},
        FailureCase{Errc::upstream_server_error, 10, 1.0, 0s, 300000ms, true},  // capped at 5 min
        FailureCase{Errc::upstream_server_error, 40, 0.25, 0s, 75000ms, true},  // no overflow at high n
        FailureCase{Errc::upstream_server_error, 2, 0.0, 0s, 0ms, true},
        // throttling backs off from its own 10 s base: the whole fleet shares the quota
        FailureCase{Errc::upstream_throttled, 1, 1.0, 0s, 10000ms, true},
        FailureCase{Errc::upstream_throttled, 3, 0.5, 0s, 20000ms, true},
        FailureCase{Errc::upstream_throttled, 6, 1.0, 0s, 300000ms, true},  // 320 s capped at 5 min
        // Retry-After is a floor, itself capped at 5 min
        FailureCase{Errc::upstream_throttled, 1, 0.1, 30s, 30000ms, true},
        FailureCase{Errc::upstream_throttled, 1, 0.1, 3600s, 300000ms, true},
        // not retryable: 5..10 min
        FailureCase{Errc::upstream_rejected, 1, 0.0, 0s, 300000ms, false},
        FailureCase{Errc::upstream_rejected, 7, 1.0, 0s, 600000ms, false},
        FailureCase{Errc::key_cert_mismatch, 1, 0.5, 0s, 450000ms, false}),
    [](const ::testing::TestParamInfo<FailureCase>& row) {
        const auto& c = row.param;
        return std::string(errc_name(c.code)) + "_failure" + std::to_string(c.failures) + "_jitter" +
               test::number_name(c.jitter) + "_retry_after" + std::to_string(c.retry_after.count()) + "s";
    });

TEST(RefreshAfterFailure, RetryableWaitsShrinkToFitBeforeServedCredentialsRunOut) {
    const RefreshSettings settings;
    // A 5xx after 9 failures would wait up to 256 s, but the credentials in service stop being servable in
    // 4 min (deadline 5 min, 60 s margin): the next attempt comes after half of that.
    const auto decision = next_refresh_after_failure(
        settings, t0, make_error(Errc::upstream_server_error, "x"), 9, 1.0, t0 + 300s);
    EXPECT_EQ(decision.retry_at, t0 + 120s);
    // Never a hot loop: with 61 s left the wait is still at least min_retry_wait (5 s)...
    const auto late = next_refresh_after_failure(settings, t0, make_error(Errc::upstream_server_error, "x"),
                                                 9, 1.0, t0 + 61s);
    EXPECT_EQ(late.retry_at, t0 + 5s);
    // ...and never shorter than the server's Retry-After.
    Error throttled = make_error(Errc::upstream_throttled, "x");
    throttled.retry_after = 30s;
    EXPECT_EQ(next_refresh_after_failure(settings, t0, throttled, 6, 1.0, t0 + 100s).retry_at, t0 + 30s);
}

TEST(RefreshAfterFailure, RefusalsWaitFiveToTenMinutesWhateverIsHeld) {
    // Trying a refused request again sooner would not change the answer; retrying as the credentials run
    // out only spends calls (the README promises 5-10 min after a refusal).
    const RefreshSettings settings;
    for (const auto left : {3600s, 300s, 61s}) {
        const auto decision = next_refresh_after_failure(
            settings, t0, make_error(Errc::upstream_rejected, "x"), 1, 0.5, t0 + left);
        EXPECT_EQ(decision.retry_at, t0 + 450s) << left.count();
    }
}

HeldCredentials held_until(SteadyTime deadline, WallTime expiration) {
    return HeldCredentials{
        signer::Credentials{"ASIA", Secret(std::string_view("s")), Secret(std::string_view("t")), expiration},
        t0, deadline, expiration - 3600s};
}

TEST(Servable, StopsSixtySecondsBeforeTheDeadlineByEitherClock) {
    const RefreshSettings settings;
    const WallTime w0 = WallTime{} + 500000h;
    EXPECT_TRUE(servable(settings, held_until(t0 + 61s, w0 + 61s), t0, w0));
    EXPECT_FALSE(servable(settings, held_until(t0 + 60s, w0 + 61s), t0, w0));
    EXPECT_FALSE(servable(settings, held_until(t0 - 1s, w0 + 61s), t0, w0));
    // The wall clock set forward (or a host that slept) ends them before the monotonic deadline does.
    EXPECT_FALSE(servable(settings, held_until(t0 + 3000s, w0 + 60s), t0, w0));
}

TEST(TooShort, CredentialsLeavingLessThanTwoMinutesAreRefused) {
    const RefreshSettings settings;
    const WallTime w0 = WallTime{} + 500000h;
    EXPECT_TRUE(too_short(settings, w0 + 40s, w0));
    EXPECT_TRUE(too_short(settings, w0 + 119s, w0));
    EXPECT_FALSE(too_short(settings, w0 + 120s, w0));
    EXPECT_FALSE(too_short(settings, w0 + 900s, w0));
}

TEST(ClientMayHurry, OnlyAfterTheNetworkFailed) {
    EXPECT_TRUE(client_may_hurry(std::nullopt));
    EXPECT_TRUE(client_may_hurry(make_error(Errc::upstream_unreachable, "x")));
    EXPECT_TRUE(client_may_hurry(make_error(Errc::upstream_timeout, "x")));
    for (const Errc code :
         {Errc::upstream_throttled, Errc::upstream_server_error, Errc::upstream_rejected,
          Errc::certificate_expired, Errc::credentials_too_short, Errc::key_cert_mismatch}) {
        EXPECT_FALSE(client_may_hurry(make_error(code, "x"))) << errc_name(code);
    }
}

}  // namespace
}  // namespace rad::policy
