#pragma once
// The agent's Unix-socket protocol (the credential_process fast path and `status`): the client writes one
// request line, the agent answers one line and closes.
//   "credentials <profile> <min-seconds|default>[ config=<identity>]\n"
//        -> "ok <credential_process JSON>\n" | "error <errc> <message>\n" | "other-config\n"
//   "status\n" -> "ok <status JSON>\n"
//   "refresh <profile>\n" -> "ok <profile status JSON>\n" | "error <errc> <message>\n", once that profile's
//        refresh (started now, or the one already running) has completed; only root and the agent's own user
//        may ask (clients in allowed_uids/allowed_gids must not be able to drive CreateSession calls)
// <min-seconds> asks for credentials with at least that much life left; the agent refreshes first if the
// cached ones have less. config=<identity> (config::file_identity of the client's configuration file) asks
// the agent to answer only if it runs with that very file; otherwise it says "other-config" and the client
// loads the file itself. Plain text keeps the client free of any JSON or TLS library.

#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/secret.hpp"

namespace rad::daemon {

// kMaxControlLine bounds a request or reply line (a reply holds a session token of up to a few KiB).
inline constexpr std::size_t kMaxControlLine = 64 * 1024;

struct ControlRequest {
    enum class Kind { credentials, status, refresh } kind = Kind::status;
    std::string profile;
    // min_seconds: the life the credentials must have left; kDefaultMinSeconds lets the agent choose
    // (sent as "default").
    int min_seconds = kDefaultMinSeconds;
    static constexpr int kDefaultMinSeconds = -1;
    // config_identity: empty, or the client's configuration file identity the agent must be running with.
    std::string config_identity;
};

[[nodiscard]] Result<ControlRequest> parse_control_request(std::string_view line);
std::string format_control_request(const ControlRequest& request);

// format_ok_reply is "ok <payload>\n"; the payload may hold credentials, so the reply is a Secret.
Secret format_ok_reply(std::string_view payload);
// kOtherConfigReply answers a request whose config=<identity> is not the agent's own configuration.
inline constexpr std::string_view kOtherConfigReply = "other-config\n";

// format_error_reply is "error <errc_name> <message>\n" (message on one line).
std::string format_error_reply(const Error& error);
// parse_control_reply returns the payload of an ok reply, or the Error the agent reported (its Errc kept so
// that the client exits with the same code as if it had signed itself).
[[nodiscard]] Result<Secret> parse_control_reply(std::string_view line);

}  // namespace rad::daemon
