#include "daemon/fastpath/control_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.hpp"

namespace rad::fastpath {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kWhereToLook = " (systemctl status rolesanywhere-agent)";

// no_agent is the error of a socket no agent answers on: none listens (`why`: no such socket, connection
// refused), or one accepted and closed without a reply. An agent always answers, a refused peer with a
// refusal line (peer_refused): a close without a word is a socket whose service is not running — systemd
// holds the listening socket of a socket-activated service that failed to start, accepts, and closes.
Error no_agent(const std::filesystem::path& socket, const char* why) {
    return make_error(Errc::agent_unavailable,
                      "no agent answers on " + socket.string() + ": " + why + kWhereToLook);
}

Error closed_without_answer(const std::filesystem::path& socket) {
    return make_error(
        Errc::agent_unavailable,
        "no agent answered on " + socket.string() +
            ": the connection was closed without an answer; the service is not running or failed "
            "to start" +
            kWhereToLook);
}

int remaining_ms(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
}

// wait_for polls `fd` for `events` until the deadline; false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
    for (;;) {
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, remaining_ms(deadline));
        if (n > 0) {
            return true;
        }
        if (n == 0) {
            return false;
        }
        if (errno != EINTR) {
            return true;  // let the following read/write report the error
        }
    }
}

}  // namespace

Result<Secret> send_control_request(const std::filesystem::path& socket_path,
                                    const control::ControlRequest& request,
                                    std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    const std::string where = "agent socket " + socket_path.string();
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (socket_path.native().size() >= sizeof(address.sun_path)) {
        return make_error(Errc::usage, where + ": path too long");
    }
    std::memcpy(address.sun_path, socket_path.c_str(), socket_path.native().size() + 1);

    UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (sock.get() < 0) {
        return make_error(Errc::internal, where + ": socket: " + std::strerror(errno));
    }
    // A Unix socket whose backlog is full refuses a non-blocking connect with EAGAIN instead of queueing it
    // (a burst of clients while the agent's loop is busy); the client tries again until its deadline.
    while (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
        const int err = errno;
        if (err == EACCES || err == EPERM) {
            return make_error(Errc::unsafe_permissions, where + ": permission denied");
        }
        if (err == EINTR) {
            continue;
        }
        if (err == EAGAIN) {
            if (remaining_ms(deadline) == 0) {
                return make_error(Errc::upstream_timeout,
                                  where + ": connect timed out (the agent's backlog is full)");
            }
            ::poll(nullptr, 0, 1);
            continue;
        }
        if (err == ENOENT) {
            return no_agent(socket_path, "no such socket");
        }
        if (err == ECONNREFUSED) {
            return no_agent(socket_path, "connection refused");
        }
        if (err != EINPROGRESS) {
            return make_error(Errc::agent_unavailable, where + ": " + std::strerror(err));
        }
        if (!wait_for(sock.get(), POLLOUT, deadline)) {
            return make_error(Errc::upstream_timeout, where + ": connect timed out");
        }
        break;
    }

    const std::string line = control::format_control_request(request);
    std::string_view pending = line;
    while (!pending.empty()) {
        const ssize_t n = ::send(sock.get(), pending.data(), pending.size(), MSG_NOSIGNAL);
        if (n > 0) {
            pending.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_for(sock.get(), POLLOUT, deadline)) {
                return make_error(Errc::upstream_timeout, where + ": write timed out");
            }
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            return closed_without_answer(socket_path);
        }
        return make_error(Errc::agent_unavailable, where + ": " + std::strerror(errno));
    }

    Secret reply;
    std::string& buffer = reply.reveal_mutable();
    buffer.reserve(4096);
    char chunk[4096];
    while (buffer.empty() || buffer.back() != '\n') {
        if (!wait_for(sock.get(), POLLIN, deadline)) {
            explicit_bzero(chunk, sizeof chunk);
            return make_error(Errc::upstream_timeout,
                              where + ": no answer within " + std::to_string(timeout.count()) + " ms");
        }
        const ssize_t n = ::recv(sock.get(), chunk, sizeof chunk, 0);
        if (n > 0) {
            buffer.append(chunk, static_cast<std::size_t>(n));
            if (buffer.size() > control::kMaxControlLine) {
                explicit_bzero(chunk, sizeof chunk);
                return make_error(Errc::upstream_malformed, where + ": reply too long");
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (buffer.empty()) {
            explicit_bzero(chunk, sizeof chunk);
            return closed_without_answer(socket_path);
        }
        break;
    }
    explicit_bzero(chunk, sizeof chunk);
    return control::parse_control_reply(buffer);
}

}  // namespace rad::fastpath
