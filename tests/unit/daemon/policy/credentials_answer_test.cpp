// answer_credentials as a table: the cache's state, the asked lifetime and the time in; serve, answer with
// what the cache holds, or refresh first out.
#include "daemon/policy/credentials_answer.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace rad::daemon {
namespace {

using namespace std::chrono_literals;

const SteadyTime t0 = SteadyTime{} + 1000h;
const WallTime w0 = WallTime{} + 480000h;

signer::Credentials issued(std::chrono::seconds lifetime) {
    return signer::Credentials{"ASIAEXAMPLE", Secret(std::string_view("secret")),
                               Secret(std::string_view("token")), w0 + lifetime};
}

// A cache that received credentials of `lifetime` at t0 (and, with `failures`, failed that many refreshes
// since, at `failed_at`).
ProfileCache cache_with(std::chrono::seconds lifetime, int failures = 0, SteadyTime failed_at = t0) {
    ProfileCache cache(RefreshSettings{}, t0);
    cache.begin_refresh();
    cache.complete_success(issued(lifetime), w0, t0, 0.0);
    for (int i = 0; i < failures; ++i) {
        cache.begin_refresh();
        cache.complete_failure(make_error(Errc::upstream_server_error, "HTTP 500"), failed_at, 1.0);
    }
    return cache;
}

TEST(DefaultMinLifetime, IsFortyPercentOfTheIssuedLifetimeAtMostFifteenMinutes) {
    const struct {
        std::chrono::seconds issued, expected;
    } rows[] = {{3600s, 900s}, {2250s, 900s}, {900s, 360s}, {240s, 96s}, {125s, 50s}, {43200s, 900s}};
    for (const auto& row : rows) {
        const CachedCredentials held{issued(row.issued), t0, t0 + row.issued};
        EXPECT_EQ(default_min_lifetime(held), row.expected) << row.issued.count();
    }
}

TEST(AnswerCredentials, Table) {
    const struct {
        const char* what;
        std::function<ProfileCache()> cache;
        int min_seconds;
        std::chrono::seconds elapsed;  // since the credentials arrived
        CredentialsAnswer expected;
    } rows[] = {
        {"3600 s session, fresh, default", [] { return cache_with(3600s); }, -1, 0s,
         CredentialsAnswer::serve},
        {"3600 s session at its refresh point (50 %), default", [] { return cache_with(3600s); }, -1, 1800s,
         CredentialsAnswer::serve},
        {"3600 s session with 14 min left, default", [] { return cache_with(3600s); }, -1, 2760s,
         CredentialsAnswer::refresh_first},
        // The service issued 240 s although the profile asked for more: 40 % of 240 s is what a client gets,
        // so the cache satisfies it until the background refresh at 50-60 %.
        {"240 s issued, fresh, default", [] { return cache_with(240s); }, -1, 0s, CredentialsAnswer::serve},
        {"240 s issued, at 60 %, default", [] { return cache_with(240s); }, -1, 144s,
         CredentialsAnswer::serve},
        {"240 s issued, 90 s left, default", [] { return cache_with(240s); }, -1, 150s,
         CredentialsAnswer::refresh_first},
        {"explicit minimum above what is held", [] { return cache_with(3600s); }, 3650, 0s,
         CredentialsAnswer::refresh_first},
        {"explicit minimum met", [] { return cache_with(3600s); }, 3000, 0s, CredentialsAnswer::serve},
        {"explicit zero", [] { return cache_with(3600s); }, 0, 3000s, CredentialsAnswer::serve},
        {"nothing held yet", [] { return ProfileCache(RefreshSettings{}, t0); }, -1, 0s,
         CredentialsAnswer::refresh_first},
        // After a failure the retry is scheduled later: clients get what is held, even short of the minimum.
        {"backing off, short of the minimum", [] { return cache_with(3600s, 1, t0 + 2760s); }, -1, 2760s,
         CredentialsAnswer::what_cache_holds},
        {"backing off, nothing servable", [] { return cache_with(3600s, 2, t0 + 3550s); }, -1, 3550s,
         CredentialsAnswer::what_cache_holds},
        {"backing off but enough life left", [] { return cache_with(3600s, 1, t0 + 100s); }, -1, 100s,
         CredentialsAnswer::serve},
    };
    for (const auto& row : rows) {
        const ProfileCache cache = row.cache();
        EXPECT_EQ(answer_credentials(cache, row.min_seconds, t0 + row.elapsed, w0 + row.elapsed),
                  row.expected)
            << row.what;
    }
}

TEST(AnswerCredentials, ARetryThatIsDueIsNotHeldBack) {
    ProfileCache cache = cache_with(3600s, 1, t0 + 2760s);
    const SteadyTime due = cache.next_refresh();
    EXPECT_EQ(answer_credentials(cache, -1, due, w0 + (due - t0)), CredentialsAnswer::refresh_first);
}

TEST(AnswerCredentials, ARefreshInFlightIsJoined) {
    ProfileCache cache = cache_with(3600s, 1, t0 + 2760s);
    cache.begin_refresh();
    EXPECT_EQ(answer_credentials(cache, -1, t0 + 2761s, w0 + 2761s), CredentialsAnswer::refresh_first);
}

}  // namespace
}  // namespace rad::daemon
