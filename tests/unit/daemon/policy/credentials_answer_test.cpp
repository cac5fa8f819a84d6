// answer_credentials as a table: what is held, how the refresh stands, the asked lifetime and the time in;
// serve, answer with what is held, or refresh first out.
#include "daemon/policy/credentials_answer.hpp"

#include <gtest/gtest.h>

#include <string>

namespace rad::policy {
namespace {

using namespace std::chrono_literals;

const SteadyTime t0 = SteadyTime{} + 1000h;
const WallTime w0 = WallTime{} + 480000h;

// held_for is a set of `lifetime` received at t0.
HeldCredentials held_for(std::chrono::seconds lifetime) {
    return HeldCredentials{signer::Credentials{"ASIAEXAMPLE", Secret(std::string_view("secret")),
                                               Secret(std::string_view("token")), w0 + lifetime},
                           t0, t0 + lifetime, w0};
}

TEST(DefaultMinLifetime, IsFortyPercentOfTheIssuedLifetimeAtMostFifteenMinutes) {
    const struct {
        std::chrono::seconds issued, expected;
    } rows[] = {{3600s, 900s}, {2250s, 900s}, {900s, 360s}, {240s, 96s}, {125s, 50s}, {43200s, 900s}};
    for (const auto& row : rows) {
        EXPECT_EQ(default_min_lifetime(held_for(row.issued)), row.expected) << row.issued.count();
    }
}

TEST(AnswerCredentials, Table) {
    const HeldCredentials hour = held_for(3600s);
    const HeldCredentials short_issue = held_for(240s);
    struct Row {
        const char* what;
        const HeldCredentials* servable;
        bool in_flight, backing_off, on_demand_allowed;
        int min_seconds;
        std::chrono::seconds elapsed;  // since the credentials arrived
        CredentialsAnswer expected;
    };
    const Row rows[] = {
        {"3600 s session, fresh, default", &hour, false, false, true, -1, 0s, CredentialsAnswer::serve},
        {"3600 s session at its refresh point (50 %)", &hour, false, false, true, -1, 1800s,
         CredentialsAnswer::serve},
        {"3600 s session with 14 min left", &hour, false, false, true, -1, 2760s,
         CredentialsAnswer::refresh_first},
        // The service issued 240 s although the profile asked for more: 40 % of 240 s is what a client gets,
        // so what is held satisfies it until the background refresh at 50-60 %.
        {"240 s issued, fresh", &short_issue, false, false, true, -1, 0s, CredentialsAnswer::serve},
        {"240 s issued, at 60 %", &short_issue, false, false, true, -1, 144s, CredentialsAnswer::serve},
        {"240 s issued, 90 s left", &short_issue, false, false, true, -1, 150s,
         CredentialsAnswer::refresh_first},
        {"explicit minimum above what is held", &hour, false, false, true, 3650, 0s,
         CredentialsAnswer::refresh_first},
        {"explicit minimum met", &hour, false, false, true, 3000, 0s, CredentialsAnswer::serve},
        {"explicit zero", &hour, false, false, true, 0, 3000s, CredentialsAnswer::serve},
        {"nothing held yet", nullptr, false, false, true, -1, 0s, CredentialsAnswer::refresh_first},
        // After a failure the retry is scheduled later: clients get what is held, even short of the minimum.
        {"backing off, short of the minimum", &hour, false, true, true, -1, 2760s,
         CredentialsAnswer::what_cache_holds},
        {"backing off, nothing servable", nullptr, false, true, true, -1, 3550s,
         CredentialsAnswer::what_cache_holds},
        {"backing off but enough life left", &hour, false, true, true, -1, 100s, CredentialsAnswer::serve},
        // A refresh in flight is joined: it costs nothing more.
        {"in flight, short of the minimum", &hour, true, true, false, -1, 2761s,
         CredentialsAnswer::refresh_first},
        // A refresh asked for a moment ago: the next client gets what is held rather than wait for the
        // spacing.
        {"a refresh asked for a moment ago", &hour, false, false, false, 3650, 0s,
         CredentialsAnswer::what_cache_holds},
    };
    for (const auto& row : rows) {
        const RefreshView view{row.servable, row.in_flight, row.backing_off, row.on_demand_allowed};
        EXPECT_EQ(answer_credentials(view, row.min_seconds, t0 + row.elapsed, w0 + row.elapsed), row.expected)
            << row.what;
    }
}

}  // namespace
}  // namespace rad::policy
