// fleet_sim: the determinism of a run, small scenarios whose figures are known in size, and the exact
// unservable-time bookkeeping against what the engines serve.
#include "tools/fleet-sim/fleet_sim.hpp"

#include <gtest/gtest.h>

#include <unistd.h>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tools/fleet-sim/report.hpp"

namespace rad::fleet {
namespace {

using namespace std::chrono_literals;

TEST(RateStats, PeakP99Mean) {
    std::vector<std::uint32_t> series(200, 1);
    series[17] = 50;
    series[100] = 40;
    series[150] = 30;
    const RateStats stats = rate_stats(series);
    EXPECT_EQ(stats.total, 197 + 120);
    EXPECT_EQ(stats.peak, 50u);
    EXPECT_EQ(stats.p99, 30u);  // rank 198 of 200
    EXPECT_DOUBLE_EQ(stats.mean, 317.0 / 200.0);
}

Scenario small_cold_start() {
    Scenario s;
    s.agents = 200;
    s.quota_rate = 10;
    s.quota_burst = 10;
    s.session = 3600s;
    s.duration = 2h;
    s.latency = 200ms;
    s.latency_jitter = 100ms;
    return s;
}

bool same_series(const std::vector<SecondCounts>& a, const std::vector<SecondCounts>& b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (a[i].accepted != b[i].accepted || a[i].throttled != b[i].throttled ||
            a[i].unreachable != b[i].unreachable) {
            return false;
        }
    }
    return true;
}

TEST(Simulation, SameSeedSameRunOtherSeedOtherRun) {
    Scenario s = small_cold_start();
    s.failure_rate = 0.05;
    s.seed = 42;
    auto a = simulate(s);
    auto b = simulate(s);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(format_summary(s, a->summary), format_summary(s, b->summary));
    EXPECT_TRUE(same_series(a->per_second, b->per_second));
    EXPECT_EQ(a->summary.unservable_time, b->summary.unservable_time);

    s.seed = 43;
    auto c = simulate(s);
    ASSERT_TRUE(c);
    EXPECT_FALSE(same_series(a->per_second, c->per_second));
    EXPECT_NE(format_summary(s, a->summary), format_summary(s, c->summary));
}

TEST(Simulation, SmallColdStartStaysWithinQuotaAndConverges) {
    Scenario s = small_cold_start();
    s.sample_every_second = true;
    auto run = simulate(s);
    ASSERT_TRUE(run);
    const Summary& r = run->summary;
    ASSERT_EQ(run->per_second.size(), 7200u);
    // The bucket never lets more than rate + burst through in one second, and rate once it is drained.
    EXPECT_LE(r.accepted.peak, 20u);
    EXPECT_LE(r.accepted.p99, 10u);
    // Token bucket bound: any 10 consecutive seconds accept at most burst + 10 × rate.
    for (std::size_t i = 0; i + 10 <= run->per_second.size(); ++i) {
        std::uint32_t window = 0;
        for (std::size_t j = i; j < i + 10; ++j) {
            window += run->per_second[j].accepted;
        }
        ASSERT_LE(window, 110u) << "seconds " << i << ".." << i + 9;
    }
    // 200 agents at 10/s need 20 s at best; the policy's backoff must get them all within 2 minutes.
    ASSERT_TRUE(r.all_credentialed_after);
    EXPECT_GE(*r.all_credentialed_after, 19s);
    EXPECT_LE(*r.all_credentialed_after, 120s);
    EXPECT_EQ(r.slots_never_credentialed, 0u);
    // Every agent refreshes about every 0.55 h: two hours make 200 first calls + ~3 refreshes each.
    EXPECT_GE(r.successes, 200 + 3 * 200 - 50);
    EXPECT_LE(r.successes, 200 + 4 * 200);
    EXPECT_EQ(r.accepted.total, r.successes);  // no failure injected
    EXPECT_LE(r.throttled.total, 10 * 200);
    EXPECT_GT(r.throttled.total, 0);
    // Without credentials only while starting: 200 agents × at most 120 s, at least the ideal 200 × 10 s.
    EXPECT_GE(r.unservable_time, 200 * 9s);
    EXPECT_LE(r.unservable_time, 200 * 120s);
    // The exact integration agrees with asking the engines once per second: at most one sample
    // more per gap (the sample at the start of a partly covered second).
    const double integrated = static_cast<double>(r.unservable_time.count()) / 1000.0;
    EXPECT_GE(static_cast<double>(r.sampled_unservable_seconds), integrated - 1.0);
    EXPECT_LE(static_cast<double>(r.sampled_unservable_seconds), integrated + 200.0);
}

TEST(Simulation, SteadyStateLoadIsFleetOverCycle) {
    Scenario s = small_cold_start();
    s.initial = InitialState::steady;
    s.duration = 4h;
    auto run = simulate(s);
    ASSERT_TRUE(run);
    const Summary& r = run->summary;
    EXPECT_EQ(r.throttled.total, 0);
    EXPECT_EQ(r.unservable_time, 0ms);
    ASSERT_TRUE(r.all_credentialed_after);
    EXPECT_EQ(*r.all_credentialed_after, 0ms);
    // 200 slots / (0.55 × 3600 s) ≈ 0.101 calls per second.
    EXPECT_NEAR(r.accepted.mean, 200.0 / (0.55 * 3600.0), 0.015);
    EXPECT_LE(r.accepted.peak, 3u);
    // Refreshes happen when planned, plus one round trip.
    EXPECT_LE(r.worst_staleness, 300ms);
}

// With refreshes at 0.5..0.6 of a 1 h lifetime, a slot keeps at least 0.4 h − serve_margin = 23 min of
// servable credentials when its refresh starts failing: an outage shorter than that costs nothing, a
// 30-minute one does unless the refresh window moves earlier, and one longer than a session drains everyone.
TEST(Simulation, OutageAgainstTheRefreshWindow) {
    Scenario s = small_cold_start();
    s.initial = InitialState::steady;
    s.duration = 6h;
    s.outage_start = 2h;
    s.outage_end = 2h + 20min;
    s.sample_every_second = true;
    auto short_outage = simulate(s);
    ASSERT_TRUE(short_outage);
    EXPECT_GT(short_outage->summary.unreachable, 0);
    EXPECT_EQ(short_outage->summary.unservable_time, 0ms);
    EXPECT_EQ(short_outage->summary.sampled_unservable_seconds, 0);
    EXPECT_GE(short_outage->summary.worst_staleness, 10min);

    s.outage_end = 2h + 30min;
    auto half_hour = simulate(s);
    ASSERT_TRUE(half_hour);
    EXPECT_GT(half_hour->summary.unservable_time, 0ms);
    EXPECT_LT(half_hour->summary.unservable_time, 200 * 7min);

    s.refresh.refresh_at_min = 0.40;
    s.refresh.refresh_at_max = 0.45;
    auto earlier_window = simulate(s);
    ASSERT_TRUE(earlier_window);
    EXPECT_EQ(earlier_window->summary.unservable_time, 0ms);
    EXPECT_EQ(earlier_window->summary.sampled_unservable_seconds, 0);

    s.refresh = policy::RefreshSettings{};
    s.outage_end = 4h;  // longer than a session: every slot runs dry
    auto long_outage = simulate(s);
    ASSERT_TRUE(long_outage);
    const Summary& r = long_outage->summary;
    EXPECT_GT(r.unservable_time, 200 * 10min);
    const double integrated = static_cast<double>(r.unservable_time.count()) / 1000.0;
    EXPECT_GE(static_cast<double>(r.sampled_unservable_seconds), integrated - 1.0);
    EXPECT_LE(static_cast<double>(r.sampled_unservable_seconds), integrated + 2.0 * 200);
}

TEST(Simulation, ServerErrorsAreRetriedAndCounted) {
    Scenario s = small_cold_start();
    s.failure_rate = 0.5;
    auto run = simulate(s);
    ASSERT_TRUE(run);
    const Summary& r = run->summary;
    EXPECT_GT(r.server_errors, 0);
    EXPECT_EQ(r.accepted.total, r.successes + r.server_errors);
    EXPECT_NEAR(static_cast<double>(r.server_errors) / static_cast<double>(r.accepted.total), 0.5, 0.07);
    EXPECT_EQ(r.slots_never_credentialed, 0u);
}

TEST(Simulation, ValidateNamesTheKnob) {
    Scenario s;
    s.agents = 0;
    auto bad = simulate(s);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, Errc::usage);
    EXPECT_NE(bad.error().message.find("--agents"), std::string::npos);

    s = Scenario{};
    s.refresh.refresh_at_min = 0.7;
    s.refresh.refresh_at_max = 0.6;
    ASSERT_FALSE(validate(s));
    EXPECT_NE(validate(s).error().message.find("--refresh-min"), std::string::npos);

    s = Scenario{};
    s.outage_start = 10s;
    s.outage_end = 5s;
    ASSERT_FALSE(validate(s));
    EXPECT_NE(validate(s).error().message.find("--outage-end"), std::string::npos);

    s = Scenario{};
    s.failure_rate = 1.5;
    EXPECT_FALSE(validate(s));
    s = Scenario{};
    s.quota_burst = 0.5;
    EXPECT_FALSE(validate(s));
    EXPECT_TRUE(validate(Scenario{}));
}

TEST(Report, CsvAndSvgAreWritten) {
    Scenario s = small_cold_start();
    s.duration = 10min;
    auto run = simulate(s);
    ASSERT_TRUE(run);
    const auto dir =
        std::filesystem::temp_directory_path() / ("fleet_sim_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    ASSERT_TRUE(write_csv(dir / "a.csv", run->per_second));
    ASSERT_TRUE(write_svg(dir / "a.svg", s, run->per_second));
    std::ifstream csv(dir / "a.csv");
    std::string line;
    std::getline(csv, line);
    EXPECT_EQ(line, "second,accepted,throttled,unreachable");
    int rows = 0;
    std::int64_t accepted = 0;
    while (std::getline(csv, line)) {
        ++rows;
        std::istringstream fields(line);
        std::string second, a;
        std::getline(fields, second, ',');
        std::getline(fields, a, ',');
        accepted += std::stoll(a);
    }
    EXPECT_EQ(rows, 600);
    EXPECT_EQ(accepted, run->summary.accepted.total);
    std::ifstream svg_file(dir / "a.svg");
    std::stringstream svg;
    svg << svg_file.rdbuf();
    EXPECT_EQ(svg.str().rfind("<svg", 0), 0u);
    EXPECT_NE(svg.str().find("<polyline"), std::string::npos);
    EXPECT_NE(svg.str().find("</svg>"), std::string::npos);
    EXPECT_FALSE(write_csv(dir / "missing" / "a.csv", run->per_second));
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace rad::fleet
