#pragma once
// ControlServer serves the agent's Unix socket (the credential_process fast path, `status`, `refresh`) on an
// io_context the agent owns, as HttpServer serves its TCP surfaces. It knows the socket and the line
// protocol's framing, not the requests: each request line goes to the handler with who sent it, and the
// handler answers through a ControlReply, at once or later (a client waiting for a refresh).
//
// Promises: a socket path it binds is created under a tight umask, then given the configured group and mode;
// a socket another process still accepts on is never taken over (the start fails instead), and a stale one is
// replaced (or, when this process may not remove it, named in the error); at stop only the socket this server
// bound (same inode) is removed, never one systemd passed in. Every connection is bounded: one request line
// of at most control::kMaxControlLine bytes, 30 s in all. stop() closes the listener and the connections that
// wait for their request or for a handler that has not answered; a reply being written is finished.

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/secret.hpp"

namespace boost::asio {
class io_context;
}

namespace rad::surfaces {

// PeerCredentials is who is at the other end of a connection (SO_PEERCRED, SO_PEERGROUPS), as the kernel
// recorded it when the peer connected.
struct PeerCredentials {
    uid_t uid = 0;
    gid_t gid = 0;
    pid_t pid = 0;
    std::vector<gid_t> groups;  // supplementary groups
};

// AccessList is who may use the socket besides root and the agent's own user.
struct AccessList {
    std::vector<std::uint32_t> uids;
    std::vector<std::uint32_t> gids;  // matched against the primary group and every supplementary group
};

// peer_allowed: root, the agent's own user (`self`), the listed uids, and members of the listed groups.
bool peer_allowed(const PeerCredentials& peer, uid_t self, const AccessList& access);

// may_ask_for_refresh: only root and the agent's own user may spend CreateSession calls on demand; clients
// admitted by the access list read credentials only.
bool may_ask_for_refresh(const PeerCredentials& peer, uid_t self);

// ControlReply answers one request, once (a second answer, or one after the connection closed, is dropped).
// Dropping it unanswered closes the connection.
class ControlReply {
public:
    struct Connection;
    explicit ControlReply(std::shared_ptr<Connection> connection);
    ControlReply(ControlReply&&) noexcept;
    ControlReply& operator=(ControlReply&&) noexcept;
    ~ControlReply();

    // send writes `line` (it ends in '\n'; it may hold credentials, hence a Secret) and closes.
    void send(Secret line);
    const PeerCredentials& peer() const;

private:
    std::shared_ptr<Connection> connection_;
};

using ControlHandler = std::function<void(std::string_view line, ControlReply reply)>;

struct ControlSocketSettings {
    std::filesystem::path path;
    unsigned mode = 0660;
    std::string group;  // empty: the agent's own
};

class ControlServer {
public:
    ControlServer(boost::asio::io_context& io, ControlHandler handler);
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // listen binds settings.path. Errors are config_invalid naming the path: not a socket, another agent
    // listening there, bind/listen failures, a group that does not exist, chmod.
    [[nodiscard]] Result<void> listen(const ControlSocketSettings& settings);
    // adopt serves a listening Unix socket passed by systemd; its path stays systemd's.
    [[nodiscard]] Result<void> adopt(int listening_fd);
    void stop();

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace rad::surfaces
