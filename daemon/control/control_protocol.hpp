#pragma once
// The agent's Unix-socket protocol (the credential_process fast path, `status` and `refresh`): the client
// writes one request line, the agent answers one line and closes.
//   "credentials <profile> <min-seconds|default>\n"
//        -> "ok <credential_process JSON>\n" | "error <errc> <message>\n"
//   "status\n" -> "ok <status JSON>\n"
//   "refresh <profile>\n" -> "ok <profile status JSON>\n" | "error <errc> <message>\n", once that profile's
//        refresh (started now, or the one already running) has completed; only root and the agent's own user
//        may ask (clients in allowed_uids/allowed_gids must not be able to drive CreateSession calls)
//   "reload\n" -> "ok <what changed, JSON>\n" | "error <errc> <message>\n", once the agent has read its
//        configuration again and applied it, or refused it (then nothing changed); root and the agent's own
//        user only
// <min-seconds> asks for credentials with at least that much life left; the agent refreshes first if the
// cached ones have less. A credentials request of an older client may end in " config=<identity>"; it is
// accepted and ignored. Plain text keeps the client free of any JSON or TLS library.

#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/secret.hpp"

namespace rad::control {

// kMaxControlLine bounds a request or reply line (a reply holds a session token of up to a few KiB).
inline constexpr std::size_t kMaxControlLine = 64 * 1024;

struct ControlRequest {
    enum class Kind { credentials, status, refresh, reload } kind = Kind::status;
    std::string profile;
    // min_seconds: the life the credentials must have left; kDefaultMinSeconds lets the agent choose
    // (sent as "default").
    int min_seconds = kDefaultMinSeconds;
    static constexpr int kDefaultMinSeconds = -1;
};

[[nodiscard]] Result<ControlRequest> parse_control_request(std::string_view line);
std::string format_control_request(const ControlRequest& request);

// format_ok_reply is "ok <payload>\n"; the payload may hold credentials, so the reply is a Secret.
Secret format_ok_reply(std::string_view payload);

// format_error_reply is "error <errc_name> <message>\n" (message on one line).
std::string format_error_reply(const Error& error);
// parse_control_reply returns the payload of an ok reply, or the Error the agent reported (its Errc kept so
// that the client exits with the same code as if it had signed itself).
[[nodiscard]] Result<Secret> parse_control_reply(std::string_view line);

}  // namespace rad::control
