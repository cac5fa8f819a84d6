// One agent's life, 30 simulated days per scenario and seed, with the real engine (tests/sim/agent_life.hpp
// checks the invariants after every event). A failure names the seed, the simulated time and what broke;
// RAD_SIM_SEED=<seed> replays that life alone.
#include <gtest/gtest.h>

#include <functional>

#include "tests/sim/agent_life.hpp"

namespace rad::simtest {
namespace {

constexpr Ms kMonth = 30 * kDay;
constexpr int kSeeds = 4;

// live runs the scenario `script` wrote for every seed and checks that no invariant broke; `after` checks
// what the scenario itself promises.
void live(const std::function<void(AgentLife&)>& script,
          const std::function<void(const AgentLife&)>& after = nullptr,
          int profiles = 1) {
    for (const std::uint64_t seed : sim_seeds(kSeeds)) {
        AgentLife life(seed, profiles);
        script(life);
        life.run(kMonth);
        const std::string replay =
            "seed " + std::to_string(seed) + " (replay: RAD_SIM_SEED=" + std::to_string(seed) +
            " sim_tests --gtest_filter=" +
            ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name() + "." +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() + ")";
        ASSERT_FALSE(life.violation()) << replay << ": " << *life.violation();
        if (after) {
            SCOPED_TRACE(replay);
            after(life);
        }
    }
}

// A month with nothing wrong: a refresh every 0.5-0.6 hour, never more.
TEST(AgentLife, QuietMonth) {
    live([](AgentLife&) {},
         [](const AgentLife& life) {
             const double per_day = static_cast<double>(life.counters().sends) / 30.0;
             EXPECT_GT(per_day, 24.0 / 0.61);
             EXPECT_LT(per_day, 24.0 / 0.49);
             // The first client, at the start, waits for the first CreateSession; no other ever waits.
             EXPECT_LE(life.counters().clients_unserved, 1);
         });
}

// Weekly renewals, each certificate valid ten days: both files at once, or the key half a minute after.
TEST(AgentLife, Renewals) {
    live([](AgentLife& life) {
        for (Ms day = 7; day < 30; day += 7) {
            life.at(day * kDay + life.uniform(0, kDay), [&life] { life.renew(10 * kDay); });
        }
        life.at(0, [&life] { life.renew(10 * kDay); });
    });
}

TEST(AgentLife, TornRenewals) {
    live([](AgentLife& life) {
        life.at(0, [&life] { life.renew(10 * kDay); });
        for (Ms day = 7; day < 30; day += 7) {
            life.at(day * kDay + life.uniform(0, kDay),
                    [&life] { life.renew_torn(10 * kDay, life.uniform(kSecond, 5 * kMinute)); });
        }
    });
}

// The network goes away for longer than a session, several times: nothing is served once the credentials
// run out, and they are back within seconds of the network (the invariant's 15 s).
TEST(AgentLife, OutagesLongerThanASession) {
    live(
        [](AgentLife& life) {
            life.every(3 * kDay, [&life] {
                life.service(ServiceMode::unreachable);
                life.at(life.now_ms() + life.uniform(90 * kMinute, 5 * kHour),
                        [&life] { life.service(ServiceMode::ok); });
            });
        },
        [](const AgentLife& life) { EXPECT_GT(life.counters().clients_unserved, 0); });
}

TEST(AgentLife, Throttling) {
    live([](AgentLife& life) {
        life.every(2 * kDay, [&life] {
            life.service(life.uniform(0, 1) == 0 ? ServiceMode::throttled
                                                 : ServiceMode::throttled_retry_after);
            life.at(life.now_ms() + life.uniform(kMinute, 2 * kHour),
                    [&life] { life.service(ServiceMode::ok); });
        });
    });
}

TEST(AgentLife, ServerErrorsAndRefusals) {
    live([](AgentLife& life) {
        life.every(3 * kDay, [&life] {
            life.service(life.uniform(0, 1) == 0 ? ServiceMode::server_error : ServiceMode::refusing);
            life.at(life.now_ms() + life.uniform(kMinute, 3 * kHour),
                    [&life] { life.service(ServiceMode::ok); });
        });
    });
}

// The wall clock is stepped both ways (NTP after a long suspend, an operator's mistake), by seconds to hours.
TEST(AgentLife, WallClockSteps) {
    live([](AgentLife& life) {
        life.every(kDay, [&life] {
            const Ms step = life.uniform(-2 * kHour, 2 * kHour);
            life.step_wall_clock(step);
            // Steps of more than the service tolerates are set right again later, as NTP does.
            life.at(life.now_ms() + life.uniform(kMinute, 3 * kHour),
                    [&life, step] { life.step_wall_clock(-step); });
        });
    });
}

// Configuration management rewrites the file and sends SIGHUP, sometimes dozens of times in a row.
TEST(AgentLife, ReloadStorms) {
    live(
        [](AgentLife& life) {
            life.every(kDay, [&life] {
                const int storm = static_cast<int>(life.uniform(1, 60));
                for (int i = 0; i < storm; ++i) {
                    life.at(life.now_ms() + life.uniform(0, 10 * kSecond),
                            [&life] { life.reload(life.uniform(0, 3) == 0); });
                }
            });
        },
        nullptr, 2);
}

// A certificate expires and is renewed hours late; a renewal arrives that is valid only from an hour on.
TEST(AgentLife, CertificatesThatExpireOrAreNotYetValid) {
    live([](AgentLife& life) {
        life.at(0, [&life] { life.renew(5 * kDay); });
        life.at(5 * kDay + 6 * kHour, [&life] { life.renew(6 * kDay, kHour); });
        life.at(12 * kDay, [&life] { life.renew(6 * kDay, life.uniform(kMinute, 3 * kHour)); });
        life.at(20 * kDay, [&life] { life.renew(20 * kDay); });
    });
}

TEST(AgentLife, FailingCredentialsFile) {
    live([](AgentLife& life) {
        life.every(2 * kDay, [&life] {
            life.fail_credentials_file(true);
            life.at(life.now_ms() + life.uniform(kMinute, 6 * kHour),
                    [&life] { life.fail_credentials_file(false); });
        });
    });
}

// The service hands out credentials that are already nearly expired (a session cut short, or, as the agent
// sees it, a host clock far ahead): never a loop of CreateSession calls.
TEST(AgentLife, CredentialsTooShortToServe) {
    live(
        [](AgentLife& life) {
            life.every(4 * kDay, [&life] {
                life.service(ServiceMode::short_lived);
                life.at(life.now_ms() + life.uniform(10 * kMinute, 6 * kHour),
                        [&life] { life.service(ServiceMode::ok); });
            });
        },
        [](const AgentLife& life) { EXPECT_LT(life.counters().max_sends_in_a_day, 200); });
}

// Everything at once.
TEST(AgentLife, EverythingTogether) {
    live(
        [](AgentLife& life) {
            life.at(0, [&life] { life.renew(8 * kDay); });
            life.every(6 * kDay, [&life] { life.renew_torn(8 * kDay, life.uniform(kSecond, 2 * kMinute)); });
            life.every(2 * kDay, [&life] {
                const ServiceMode modes[] = {
                    ServiceMode::unreachable,  ServiceMode::throttled, ServiceMode::throttled_retry_after,
                    ServiceMode::server_error, ServiceMode::refusing,  ServiceMode::short_lived};
                life.service(modes[life.uniform(0, 5)]);
                life.at(life.now_ms() + life.uniform(kMinute, 4 * kHour),
                        [&life] { life.service(ServiceMode::ok); });
            });
            life.every(3 * kDay, [&life] {
                const Ms step = life.uniform(-30 * kMinute, 30 * kMinute);
                life.step_wall_clock(step);
                life.at(life.now_ms() + life.uniform(kMinute, kHour),
                        [&life, step] { life.step_wall_clock(-step); });
            });
            life.every(kDay, [&life] { life.reload(life.uniform(0, 2) == 0); });
            life.every(4 * kDay, [&life] {
                life.fail_credentials_file(true);
                life.at(life.now_ms() + life.uniform(kMinute, kHour),
                        [&life] { life.fail_credentials_file(false); });
            });
        },
        nullptr, 2);
}

}  // namespace
}  // namespace rad::simtest
