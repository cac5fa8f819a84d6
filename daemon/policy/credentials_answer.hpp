#pragma once
// How the agent answers a client that asks for a profile's credentials with a minimum lifetime left: the
// `credential-process --profile` fast path over the Unix socket. A pure function of the cache's state, the
// request and the time, so that its rules are tested as a table (credentials_answer_test.cpp).

#include "daemon/policy/credential_cache.hpp"

namespace rad::daemon {

// kDefaultMinLifetimeCap is what a client that names no minimum asks for at most: botocore runs
// credential_process again whenever its cached credentials have less than 15 minutes left.
inline constexpr std::chrono::seconds kDefaultMinLifetimeCap{900};

// default_min_lifetime is the lifetime a client that names no minimum gets: min(15 min, 40 % of the lifetime
// the service actually issued for the held set). The background refresh runs at 50-60 % of that lifetime, so
// the cache always holds at least 40 % of it: a shorter session than configured (the service may cap it)
// must not turn every call into a CreateSession.
std::chrono::seconds default_min_lifetime(const CachedCredentials& held);

enum class CredentialsAnswer {
    // serve: the cache holds credentials with the asked lifetime left; hand them out.
    serve,
    // what_cache_holds: a refresh is backing off after failures; the client gets the credentials still in
    // service (whatever their lifetime) or the error, and the retry stays where the policy put it, so that
    // clients do not add CreateSession calls against a failing or throttling service.
    what_cache_holds,
    // refresh_first: start a refresh now (or join the one in flight) and answer with what the cache holds
    // when it completes.
    refresh_first,
};

// answer_credentials decides for a request asking for `min_seconds` of lifetime (kDefaultMinSeconds, i.e.
// negative: default_min_lifetime()) at `now` / `wall_now`.
CredentialsAnswer answer_credentials(const ProfileCache& cache,
                                     int min_seconds,
                                     SteadyTime now,
                                     WallTime wall_now);

}  // namespace rad::daemon
