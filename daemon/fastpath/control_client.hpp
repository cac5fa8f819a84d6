#pragma once
// The client side of the agent's Unix socket, in plain POSIX calls: `credential-process --profile` runs it on
// every AWS SDK credential fetch, so it must start and answer in about a millisecond.

#include <chrono>
#include <filesystem>

#include "common/error.hpp"
#include "common/secret.hpp"
#include "daemon/control/control_protocol.hpp"

namespace rad::daemon {

// send_control_request connects to `socket`, writes `request`, and reads the one-line reply within `timeout`
// (the whole exchange). It returns the ok payload or an Error: agent_unavailable when no agent listens
// (no socket file, connection refused) — the caller may then sign by itself; no other error allows that,
// since an agent that answers with its own upstream error (upstream_unreachable, throttled) is already
// retrying with backoff, and a client signing by itself would only add calls against the failing service —,
// unsafe_permissions when the socket refuses us (EACCES/EPERM, or the agent closed on a peer-credential
// check), upstream_timeout, or the error the agent reported.
[[nodiscard]] Result<Secret> send_control_request(const std::filesystem::path& socket,
                                                  const ControlRequest& request,
                                                  std::chrono::milliseconds timeout);

}  // namespace rad::daemon
