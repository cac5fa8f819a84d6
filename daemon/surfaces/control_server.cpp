#include "daemon/surfaces/control_server.hpp"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <optional>

#include "daemon/control/control_protocol.hpp"

namespace rad::surfaces {

namespace net = boost::asio;
using unix_stream = net::local::stream_protocol;

namespace {

constexpr std::chrono::seconds kConnectionTimeout{30};

// accepts_connections: something listens on the Unix socket at `path` (connect succeeds, or its backlog is
// full). A connection refused means a stale file of a process that is gone.
bool accepts_connections(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof(address.sun_path)) {
        return false;
    }
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return false;
    }
    const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    const int err = errno;
    ::close(fd);
    return rc == 0 || err == EAGAIN || err == EINPROGRESS;
}

std::optional<PeerCredentials> peer_of(int fd) {
    ucred cred{};
    socklen_t length = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
        return std::nullopt;
    }
    PeerCredentials peer{cred.uid, cred.gid, cred.pid, {}};
    std::vector<gid_t> groups(64);
    for (int attempt = 0; attempt < 2; ++attempt) {
        socklen_t size = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &size) == 0) {
            groups.resize(size / sizeof(gid_t));
            peer.groups = std::move(groups);
            break;
        }
        if (errno != ERANGE) {
            break;  // no supplementary groups known: the primary group still counts
        }
        groups.resize(size / sizeof(gid_t) + 1);
    }
    return peer;
}

}  // namespace

bool peer_allowed(const PeerCredentials& peer, uid_t self, const AccessList& access) {
    if (peer.uid == 0 || peer.uid == self) {
        return true;
    }
    const auto listed = [](const std::vector<std::uint32_t>& list, std::uint32_t id) {
        return std::find(list.begin(), list.end(), id) != list.end();
    };
    return listed(access.uids, peer.uid) || listed(access.gids, peer.gid) ||
           std::any_of(peer.groups.begin(), peer.groups.end(),
                       [&](gid_t gid) { return listed(access.gids, gid); });
}

bool may_ask_for_refresh(const PeerCredentials& peer, uid_t self) {
    return peer.uid == 0 || peer.uid == self;
}

// Connection is one accepted client: its socket, the deadline of the whole exchange, the request as read,
// and the reply being written (kept alive by the write until it completes).
struct ControlReply::Connection {
    explicit Connection(net::io_context& io) : socket(io), timer(io) {}
    unix_stream::socket socket;
    net::steady_timer timer;
    net::streambuf input{control::kMaxControlLine};
    Secret reply;
    PeerCredentials peer;
    bool answered = false;

    void close() {
        boost::system::error_code ignored;
        timer.cancel();
        socket.close(ignored);
    }
};

ControlReply::ControlReply(std::shared_ptr<Connection> connection) : connection_(std::move(connection)) {}
ControlReply::ControlReply(ControlReply&&) noexcept = default;
ControlReply& ControlReply::operator=(ControlReply&&) noexcept = default;

ControlReply::~ControlReply() {
    if (connection_ && !connection_->answered) {
        connection_->close();  // the handler let the request go unanswered
    }
}

const PeerCredentials& ControlReply::peer() const {
    return connection_->peer;
}

void ControlReply::send(Secret line) {
    if (!connection_ || connection_->answered || !connection_->socket.is_open()) {
        return;
    }
    auto connection = connection_;
    connection->answered = true;
    connection->reply = std::move(line);
    net::async_write(connection->socket, net::buffer(connection->reply.reveal()),
                     [connection](boost::system::error_code, std::size_t) {
                         connection->reply = Secret();
                         boost::system::error_code ignored;
                         connection->socket.shutdown(unix_stream::socket::shutdown_both, ignored);
                         connection->close();
                     });
}

struct ControlServer::Impl : std::enable_shared_from_this<ControlServer::Impl> {
    Impl(net::io_context& io_context, ControlHandler request_handler)
        : io(io_context), acceptor(io_context), handler(std::move(request_handler)) {}

    void accept();
    void read_request(const std::shared_ptr<ControlReply::Connection>& connection);

    net::io_context& io;
    unix_stream::acceptor acceptor;
    ControlHandler handler;
    std::vector<std::weak_ptr<ControlReply::Connection>> connections;
    // bound: the socket this server created (device and inode), removed at stop if still there.
    std::optional<std::pair<dev_t, ino_t>> bound;
    std::filesystem::path path;
    bool stopping = false;
};

void ControlServer::Impl::accept() {
    acceptor.async_accept(
        [self = shared_from_this()](boost::system::error_code ec, unix_stream::socket socket) {
            if (ec || self->stopping) {
                return;
            }
            self->accept();
            auto peer = peer_of(socket.native_handle());
            if (!peer) {
                return;  // closing: a peer that cannot be identified gets nothing
            }
            auto connection = std::make_shared<ControlReply::Connection>(self->io);
            connection->socket = std::move(socket);
            connection->peer = std::move(*peer);
            std::erase_if(self->connections, [](const auto& weak) { return weak.expired(); });
            self->connections.push_back(connection);
            connection->timer.expires_after(kConnectionTimeout);
            connection->timer.async_wait([connection](boost::system::error_code timer_ec) {
                if (!timer_ec) {
                    boost::system::error_code ignored;
                    connection->socket.close(ignored);
                }
            });
            self->read_request(connection);
        });
}

void ControlServer::Impl::read_request(const std::shared_ptr<ControlReply::Connection>& connection) {
    net::async_read_until(
        connection->socket, connection->input, '\n',
        [self = shared_from_this(), connection](boost::system::error_code ec, std::size_t n) {
            if (ec || self->stopping) {
                connection->close();
                return;
            }
            std::string line(n, '\0');
            connection->input.sgetn(line.data(), static_cast<std::streamsize>(n));
            self->handler(line, ControlReply(connection));
        });
}

ControlServer::ControlServer(net::io_context& io, ControlHandler handler)
    : impl_(std::make_shared<Impl>(io, std::move(handler))) {}

ControlServer::~ControlServer() {
    stop();
}

Result<void> ControlServer::listen(const ControlSocketSettings& settings) {
    const std::string path = settings.path.string();
    std::error_code ec;
    std::filesystem::create_directories(settings.path.parent_path(), ec);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            return make_error(Errc::config_invalid, path + ": exists and is not a socket");
        }
        // A socket someone still accepts on belongs to a running agent: replacing it would cut that agent's
        // clients off until it restarts. Only a socket nobody listens on is stale.
        if (accepts_connections(path)) {
            return make_error(Errc::config_invalid,
                              path +
                                  ": another agent is listening on this socket; stop it, or give this agent "
                                  "another socket_path");
        }
        // Stale: replaced. A file this process may not remove (a socket left by systemd's socket unit, in a
        // directory of root's) would only turn into "Address already in use" at bind: say what is in the way.
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
            return make_error(Errc::config_invalid,
                              path +
                                  ": a stale socket nobody listens on is in the way and cannot be removed (" +
                                  std::strerror(errno) +
                                  "); remove it, or start the agent with its socket unit "
                                  "(rolesanywhere-agent-fastpath.socket)");
        }
    }
    auto& acceptor = impl_->acceptor;
    boost::system::error_code bec;
    acceptor.open(unix_stream(), bec);
    // Bind under a tight umask, then widen to the configured mode: no window where others can connect.
    const mode_t old_mask = ::umask(0177);
    if (!bec) {
        acceptor.bind(unix_stream::endpoint(path), bec);
    }
    ::umask(old_mask);
    // The kernel's largest backlog, as the HTTP listeners have: every credential_process of a burst (a host
    // starting its services at once) must find room while the loop accepts.
    if (!bec) {
        acceptor.listen(net::socket_base::max_listen_connections, bec);
    }
    if (bec) {
        return make_error(Errc::config_invalid, "listen " + path + ": " + bec.message());
    }
    if (::lstat(path.c_str(), &st) == 0) {
        impl_->bound = std::make_pair(st.st_dev, st.st_ino);
        impl_->path = settings.path;
    }
    if (!settings.group.empty()) {
        const group* g = ::getgrnam(settings.group.c_str());
        if (g == nullptr || ::chown(path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0) {
            return make_error(Errc::config_invalid,
                              path + ": cannot give the socket to group " + settings.group);
        }
    }
    if (::chmod(path.c_str(), settings.mode) != 0) {
        return make_error(Errc::config_invalid, path + ": cannot chmod the socket");
    }
    impl_->accept();
    return {};
}

Result<void> ControlServer::adopt(int listening_fd) {
    boost::system::error_code bec;
    impl_->acceptor.assign(unix_stream(), listening_fd, bec);
    if (bec) {
        return make_error(Errc::config_invalid, "activated socket \"socket\": " + bec.message());
    }
    impl_->accept();
    return {};
}

void ControlServer::stop() {
    auto& impl = *impl_;
    if (impl.stopping) {
        return;
    }
    impl.stopping = true;
    boost::system::error_code ignored;
    // Connections still waiting for their request line, or for an answer that will not come now, are closed;
    // a reply being written is finished by its own handler.
    for (const auto& weak : impl.connections) {
        if (auto connection = weak.lock(); connection && !connection->answered) {
            connection->close();
        }
    }
    impl.acceptor.close(ignored);
    // Only the socket this server bound (not one systemd passed, nor one that replaced it since).
    struct stat st {};
    if (impl.bound && ::lstat(impl.path.c_str(), &st) == 0 && st.st_dev == impl.bound->first &&
        st.st_ino == impl.bound->second) {
        ::unlink(impl.path.c_str());
    }
}

}  // namespace rad::surfaces
