#pragma once
// The client side of the agent's Unix socket, in plain POSIX calls: `credential-process --profile` runs it on
// every AWS SDK credential fetch, so it must start and answer in about a millisecond.

#include <chrono>
#include <filesystem>

#include "common/error.hpp"
#include "common/secret.hpp"
#include "daemon/control/control_protocol.hpp"

namespace rad::fastpath {

// send_control_request connects to `socket`, writes `request`, and reads the one-line reply within `timeout`
// (the whole exchange). It returns the ok payload or an Error: agent_unavailable when no agent answers (no
// socket file, connection refused, or a connection closed without a reply, as systemd's socket does while
// the service behind it fails), with a message that says which and where to look — the caller may then sign
// by itself; no other error allows that, since an agent that answers with its own upstream error
// (upstream_unreachable, throttled) is already retrying with backoff, and a client signing by itself would
// only add calls against the failing service —, unsafe_permissions when the socket file refuses us
// (EACCES/EPERM), upstream_timeout, or the error the agent reported (peer_refused for a user its allow-lists
// do not name).
[[nodiscard]] Result<Secret> send_control_request(const std::filesystem::path& socket,
                                                  const control::ControlRequest& request,
                                                  std::chrono::milliseconds timeout);

}  // namespace rad::fastpath
