#include "daemon/policy/backoff.hpp"

#include <gtest/gtest.h>

#include "tests/support/case_name.hpp"

namespace rad::policy {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct BackoffRow {
    int retry;
    double jitter;
    seconds retry_after;
    milliseconds expected;
};

class BackoffTableTest : public ::testing::TestWithParam<BackoffRow> {};

TEST_P(BackoffTableTest, DelayIsJitterTimesCappedExponentialRaisedToRetryAfter) {
    const BackoffPolicy policy{milliseconds(1000), milliseconds(20000)};
    const BackoffRow row = GetParam();
    EXPECT_EQ(backoff_delay(policy, row.retry, row.jitter, row.retry_after), row.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Table,
    BackoffTableTest,
    ::testing::Values(BackoffRow{1, 0.0, seconds(0), milliseconds(0)},       // full jitter reaches zero
                      BackoffRow{1, 1.0, seconds(0), milliseconds(1000)},    // first ceiling is the base
                      BackoffRow{2, 1.0, seconds(0), milliseconds(2000)},    // doubles
                      BackoffRow{3, 0.5, seconds(0), milliseconds(2000)},    // half of 4 s
                      BackoffRow{6, 1.0, seconds(0), milliseconds(20000)},   // 32 s capped at 20 s
                      BackoffRow{60, 1.0, seconds(0), milliseconds(20000)},  // huge exponents stay capped
                      BackoffRow{1, 0.1, seconds(7), milliseconds(7000)},    // Retry-After is a floor
                      BackoffRow{5, 1.0, seconds(7), milliseconds(16000)},   // ... not a ceiling
                      BackoffRow{1, 2.0, seconds(0), milliseconds(1000)},    // jitter is clamped to 1
                      BackoffRow{1, -1.0, seconds(0), milliseconds(0)},      // and to 0
                      BackoffRow{0, 1.0, seconds(0), milliseconds(1000)}),   // retry < 1 treated as 1
    [](const ::testing::TestParamInfo<BackoffRow>& row) {
        return "retry" + std::to_string(row.param.retry) + "_jitter" + test::number_name(row.param.jitter) +
               "_retry_after" + std::to_string(row.param.retry_after.count()) + "s";
    });

TEST(BackoffTest, EveryDelayLiesWithinFullJitterBounds) {
    const BackoffPolicy policy{milliseconds(1000), milliseconds(300000)};
    for (int retry = 1; retry <= 12; ++retry) {
        const double ceiling = std::min(300000.0, 1000.0 * static_cast<double>(1 << (retry - 1)));
        for (double j = 0.0; j < 1.0; j += 0.125) {
            const auto d = backoff_delay(policy, retry, j, seconds(0));
            EXPECT_GE(d.count(), 0);
            EXPECT_LE(static_cast<double>(d.count()), ceiling);
        }
    }
}

}  // namespace
}  // namespace rad::policy
