#pragma once
// Socket options the local HTTP server applies to raw descriptors. Private to the daemon; defined in
// http_server.cpp and unit-tested on real sockets.

#include "common/error.hpp"

namespace rad::surfaces {

// apply_hop_limit sets the unicast TTL of `fd` to `hops` (1..255): IP_TTL for AF_INET; IPV6_UNICAST_HOPS and
// IP_TTL for AF_INET6, so that IPv4-mapped peers of a dual-stack socket are bounded too. hops == 0 leaves the
// system default. Errors (a value out of range, a failing setsockopt) are Errc::internal naming the option.
[[nodiscard]] Result<void> apply_hop_limit(int fd, int family, int hops);

}  // namespace rad::surfaces
