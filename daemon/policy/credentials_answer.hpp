#pragma once
// How the agent answers a client that asks for a profile's credentials with a minimum lifetime left: the
// `credential-process --profile` fast path over the Unix socket. A pure function of what the profile holds,
// how its refresh stands, the request and the time, so that its rules are tested as a table
// (credentials_answer_test.cpp).

#include "daemon/policy/refresh_policy.hpp"

namespace rad::policy {

// kDefaultMinLifetimeCap is what a client that names no minimum asks for at most: botocore runs
// credential_process again whenever its cached credentials have less than 15 minutes left.
inline constexpr std::chrono::seconds kDefaultMinLifetimeCap{900};

// default_min_lifetime is the lifetime a client that names no minimum gets: min(15 min, 40 % of the lifetime
// the service actually issued for the held set). The background refresh runs at 50-60 % of that lifetime, so
// the cache always holds at least 40 % of it: a shorter session than configured (the service may cap it)
// must not turn every call into a CreateSession.
std::chrono::seconds default_min_lifetime(const HeldCredentials& held);

enum class CredentialsAnswer {
    // serve: the profile holds credentials with the asked lifetime left; hand them out.
    serve,
    // what_cache_holds: the client gets the credentials still in service (whatever their lifetime) or the
    // error, and the refresh stays where the policy put it: a refresh is backing off after failures (clients
    // must not add CreateSession calls against a failing or throttling service), or a client already started
    // refresh asked for within RefreshSettings::on_demand_spacing (the next would have to wait for it).
    what_cache_holds,
    // refresh_first: start a refresh now (or join the one in flight) and answer with what the profile holds
    // when it completes.
    refresh_first,
};

// RefreshView is what answer_credentials needs to know of a profile at the instant a client asks.
struct RefreshView {
    const HeldCredentials* servable = nullptr;  // the credentials held, if servable now
    bool in_flight = false;                     // a refresh is running: joining it costs nothing
    bool backing_off = false;                   // the last refresh failed and its retry is not due yet
    bool on_demand_allowed = true;              // no refresh asked for within on_demand_spacing
};

// answer_credentials decides for a request asking for `min_seconds` of lifetime (negative:
// default_min_lifetime()) at `now` / `wall_now`.
CredentialsAnswer answer_credentials(const RefreshView& view,
                                     int min_seconds,
                                     SteadyTime now,
                                     WallTime wall_now);

}  // namespace rad::policy
