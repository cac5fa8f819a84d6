#pragma once
// HttpServer serves the agent's local HTTP surfaces (IMDS, container endpoint, health) on an io_context the
// agent owns. Every connection runs on that one event loop; the handler is a pure function called on it.
// Beast stays inside http_server.cpp: this header only forward-declares the io_context.
//
// Promises: HTTP/1.1 with keep-alive; Content-Length on every response; bounded header size, read and idle
// timeouts (slowloris-safe); a connection cap (extra connections are closed at once); the IP TTL / IPv6 hop
// limit of accepted sockets set to hop_limit; optionally, peers on this host only; a response with status
// 400, 413 or 431 ends the connection; stop_accepting() closes the listeners, lets responses being written
// finish, and closes idle connections, so that the loop runs out of work and returns.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "daemon/surfaces/http_types.hpp"

namespace boost::asio {
class io_context;
}

namespace rad::surfaces {

struct HttpServerLimits {
    std::size_t max_header_bytes = 8 * 1024;
    std::size_t max_body_bytes = 1024;
    // read_timeout bounds the time from the first byte of a request to its last.
    std::chrono::milliseconds read_timeout{5000};
    // idle_timeout closes a keep-alive connection that sends nothing.
    std::chrono::milliseconds idle_timeout{30000};
    std::chrono::milliseconds write_timeout{5000};
    int max_connections = 256;
    // hop_limit: IP_TTL / IPV6_UNICAST_HOPS of accepted sockets (1 = cannot leave the host's link); 0 leaves
    // the system default.
    int hop_limit = 1;
    // same_host_peers_only closes, unanswered, connections that do not come from this host: those for which
    // is_same_host_peer is false. (Such connections are the ones the kernel carries over its loopback
    // interface: to 127.0.0.0/8 or ::1, or from one of the host's own addresses to itself.)
    bool same_host_peers_only = false;
};

// is_loopback_peer says whether an IP address (text form) is a loopback address, IPv4-mapped ones included.
bool is_loopback_peer(const std::string& address) noexcept;

// is_same_host_peer says whether a TCP connection with this peer address and this local address (text forms,
// IPv4-mapped IPv6 ones included) was opened from this host's network stack: the peer is a loopback address,
// or the peer's address is the very address it connected to — what a process of this host (or, in
// Kubernetes, a pod on the host network) gets when it connects to one of the host's own addresses. No other
// host can open such a connection: the handshake's answer to our own address never leaves the host, and
// Linux drops packets from outside whose source is one of its own addresses. A peer in another network
// namespace (a pod with its own network, a container) has an address of its own and is refused.
bool is_same_host_peer(const std::string& peer, const std::string& local) noexcept;

using HttpHandler = std::function<SurfaceResponse(const SurfaceRequest&)>;

class HttpServer {
public:
    HttpServer(boost::asio::io_context& io, HttpServerLimits limits, HttpHandler handler);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // listen binds host:port (an IP literal or "localhost"; port 0 picks one) and starts accepting. Returns
    // the bound port. Errors (address in use, not an address) are Errc::config_invalid naming the address.
    [[nodiscard]] Result<std::uint16_t> listen(const std::string& host, std::uint16_t port);
    // adopt starts accepting on an already listening TCP socket (systemd socket activation).
    [[nodiscard]] Result<void> adopt(int listening_fd);
    // stop_accepting closes the listeners and idle connections; in-flight responses are completed.
    void stop_accepting();
    // hold stops taking new connections off the listeners (present and future ones) until release(): clients
    // that connect meanwhile wait in the kernel's listen backlog instead of being answered, e.g. while the
    // agent has no credentials to serve yet. `waiting` is called, on the loop, the first time a client is
    // seen waiting during the hold (a listener becomes readable), so the caller can hurry what it waits for;
    // after that the server has no operation pending until release(). Calls on the loop's thread only.
    void hold(std::function<void()> waiting);
    void release();
    // set_limits applies new limits (a reload): the hop limit to the listeners at once, everything to the
    // connections accepted from now on. Calls on the loop's thread only.
    void set_limits(const HttpServerLimits& limits);
    // listening_fds are the listeners' descriptors, borrowed (to keep copies in systemd's store).
    std::vector<int> listening_fds() const;
    // open_connections is how many accepted connections hold a socket, the number max_connections caps; one
    // the server has closed no longer counts. Safe to call from any thread.
    std::size_t open_connections() const noexcept;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace rad::surfaces
