#include "daemon/surfaces/http_server.hpp"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <limits>
#include <optional>
#include <system_error>
#include <unordered_set>
#include <vector>

#include "common/secret.hpp"
#include "daemon/surfaces/http_request_conversion.hpp"
#include "daemon/surfaces/socket_options.hpp"

namespace rad::surfaces {

Result<void> apply_hop_limit(int fd, int family, int hops) {
    if (hops == 0) {
        return {};
    }
    if (hops < 0 || hops > 255) {
        return make_error(Errc::internal,
                          "hop limit " + std::to_string(hops) + ": must be between 1 and 255");
    }
    auto set = [&](int level, int name, const char* label) -> Result<void> {
        if (::setsockopt(fd, level, name, &hops, sizeof hops) != 0) {
            const int err = errno;
            return make_error(Errc::internal, std::string("setsockopt ") + label + ": " +
                                                  std::generic_category().message(err));
        }
        return {};
    };
    if (family == AF_INET) {
        return set(IPPROTO_IP, IP_TTL, "IP_TTL");
    }
    if (family == AF_INET6) {
        if (auto r = set(IPPROTO_IPV6, IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS"); !r) {
            return r;
        }
        // Linux applies IP_TTL to the IPv4 traffic of an AF_INET6 socket (IPv4-mapped peers of a dual-stack
        // listener, e.g. one handed over by systemd); without it those peers would get the default TTL.
        return set(IPPROTO_IP, IP_TTL, "IP_TTL");
    }
    return make_error(Errc::internal,
                      "hop limit: socket family " + std::to_string(family) + " is not IPv4 or IPv6");
}

bool is_loopback_peer(const std::string& address) noexcept {
    boost::system::error_code ec;
    const auto parsed = boost::asio::ip::make_address(address, ec);
    if (ec) {
        return false;
    }
    if (parsed.is_v6()) {
        const auto v6 = parsed.to_v6();
        // An IPv4 peer of a dual-stack listener arrives as ::ffff:a.b.c.d.
        if (v6.is_v4_mapped()) {
            return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).is_loopback();
        }
        return v6.is_loopback();
    }
    return parsed.to_v4().is_loopback();  // 127.0.0.0/8
}

bool is_same_host_peer(const std::string& peer, const std::string& local) noexcept {
    if (is_loopback_peer(peer)) {
        return true;
    }
    auto plain = [](const std::string& text) -> std::optional<boost::asio::ip::address> {
        boost::system::error_code ec;
        auto parsed = boost::asio::ip::make_address(text, ec);
        if (ec) {
            return std::nullopt;
        }
        // A dual-stack listener sees an IPv4 peer, and its own IPv4 address, as ::ffff:a.b.c.d.
        if (parsed.is_v6() && parsed.to_v6().is_v4_mapped()) {
            return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, parsed.to_v6());
        }
        return parsed;
    };
    const auto peer_address = plain(peer);
    const auto local_address = plain(local);
    // An unspecified address is never the address of a connection; refused rather than trusted.
    return peer_address && local_address && !peer_address->is_unspecified() &&
           *peer_address == *local_address;
}

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// Bytes read ahead while waiting for the start of a request.
constexpr std::size_t kFirstRead = 4096;
// After a response that ends the connection, the unread rest of the request (e.g. an oversized body) is
// drained for at most this long and this many bytes before the socket is closed: closing with unread data
// makes the kernel send a reset, which can destroy the response before the client has read it.
constexpr std::chrono::milliseconds kLingerTime{1000};
constexpr std::size_t kLingerBytes = 256 * 1024;
constexpr std::chrono::milliseconds kAcceptRetry{100};

std::string endpoint_text(const std::string& host, std::uint16_t port) {
    const bool bracket = host.find(':') != std::string::npos && host.front() != '[';
    return (bracket ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// System messages start with a capital ("Address already in use"); ours continue a sentence.
std::string sentence_part(std::string message) {
    if (!message.empty() && message[0] >= 'A' && message[0] <= 'Z') {
        message[0] = static_cast<char>(message[0] - 'A' + 'a');
    }
    return message;
}

// A header the handler set goes out only if it cannot break the framing: no CR/LF/NUL (response splitting),
// a non-empty token as name.
bool header_is_safe(const std::string& name, const std::string& value) {
    if (name.empty()) {
        return false;
    }
    for (const char c : name) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == ':') {
            return false;
        }
    }
    return std::none_of(value.begin(), value.end(),
                        [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

SurfaceResponse plain_response(int status) {
    SurfaceResponse response;
    response.status = status;
    response.headers.emplace_back("Content-Type", "text/plain");
    response.body =
        Secret(std::string_view(http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)))));
    response.body.reveal_mutable().push_back('\n');
    return response;
}

}  // namespace

namespace server_detail {

class Connection;

struct Listener {
    explicit Listener(net::io_context& io) : acceptor(io), retry(io) {}
    tcp::acceptor acceptor;
    net::steady_timer retry;  // backs off after accept errors such as EMFILE
};

}  // namespace server_detail

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
    Impl(net::io_context& io_context, HttpServerLimits server_limits, HttpHandler request_handler)
        : io(io_context), limits(server_limits), handler(std::move(request_handler)) {}

    Result<std::uint16_t> listen(const std::string& host, std::uint16_t port);
    Result<void> adopt(int fd);
    void accept(const std::shared_ptr<server_detail::Listener>& listener);
    void on_accept(const std::shared_ptr<server_detail::Listener>& listener,
                   const beast::error_code& ec,
                   tcp::socket socket);
    // make_room is true when a newly accepted connection may be served: below the cap, or after closing the
    // connection that has waited longest on its peer.
    bool make_room();
    void stop_accepting();
    void shut_down();
    void hold(std::function<void()> waiting);
    void release();
    void watch_while_held(const std::shared_ptr<server_detail::Listener>& listener);
    SurfaceResponse call_handler(const SurfaceRequest& request);

    net::io_context& io;
    HttpServerLimits limits;
    HttpHandler handler;
    std::vector<std::shared_ptr<server_detail::Listener>> listeners;
    // Connections register themselves on construction and leave on destruction; the set does not own them
    // (their pending operations do), so a connection lives exactly as long as it has work.
    std::unordered_set<server_detail::Connection*> connections;
    // open_count is how many of them hold a socket: a connection closed by the server (let go at the cap,
    // or at stop) leaves the count at once, though it stays in the set until its last handler has run.
    std::atomic<std::size_t> open_count{0};
    bool stopping = false;  // stop_accepting() was called: finish exchanges in progress, then close
    bool closed = false;    // the HttpServer is gone: the handler must not be called any more
    bool held = false;      // hold(): listeners are watched, not accepted from
    std::function<void()> on_waiting;  // hold()'s callback, called once per hold
};

namespace server_detail {

// Connection serves one accepted socket: wait for a request (idle_timeout), read it (read_timeout), call the
// handler, write the answer (write_timeout), repeat while keep-alive holds. The tcp_stream's expiry closes
// the socket when a deadline passes, which ends whatever operation is pending.
class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(std::shared_ptr<HttpServer::Impl> server, tcp::socket socket)
        : server_(std::move(server)),
          stream_(std::move(socket)),
          buffer_(server_->limits.max_header_bytes + server_->limits.max_body_bytes + 2 * kFirstRead) {
        server_->connections.insert(this);
        ++server_->open_count;
    }

    ~Connection() {
        // Request headers carry tokens; do not leave them in freed memory.
        buffer_.consume(buffer_.size());
        auto storage = buffer_.prepare(std::min(buffer_.capacity(), buffer_.max_size()));
        explicit_bzero(storage.data(), storage.size());
        wipe_string(wire_);
        server_->connections.erase(this);
        if (state_ != State::closed) {
            --server_->open_count;
        }
    }

    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    void start() { wait_for_request(); }

    // close_if_idle ends a keep-alive connection that waits for its next request (its client retries on a new
    // connection); one in the middle of an exchange finishes it (the answer carries Connection: close because
    // the server is stopping). A connection accepted but not yet read from gets kStopGrace for its request:
    // its client connected while the server still listened, and its bytes are normally already here, so it is
    // answered rather than reset (under systemd the next process takes over the listening socket at once).
    void close_if_idle() {
        if (state_ != State::idle) {
            return;
        }
        if (exchanges_ > 0) {
            close();
        } else {
            stream_.expires_after(kStopGrace);
        }
    }

    void close() {
        if (state_ != State::closed) {
            --server_->open_count;
        }
        state_ = State::closed;
        stream_.close();
    }

    bool closed() const noexcept { return state_ == State::closed; }

    // waiting_since is when this connection started waiting on its peer (for a request, or for the rest of
    // one); nullopt while the server works on its answer or once it is closed. The eldest waiter is the one
    // the server lets go when it is full.
    std::optional<std::chrono::steady_clock::time_point> waiting_since() const noexcept {
        if (state_ == State::idle || state_ == State::reading || state_ == State::lingering) {
            return waiting_since_;
        }
        return std::nullopt;
    }

private:
    enum class State { idle, reading, writing, lingering, closed };
    static constexpr std::chrono::seconds kStopGrace{1};

    void wait_for_request() {
        if (server_->stopping) {
            close();
            return;
        }
        if (buffer_.size() > 0) {
            read_request();  // a pipelined request is already here
            return;
        }
        state_ = State::idle;
        waiting_since_ = std::chrono::steady_clock::now();
        stream_.expires_after(server_->limits.idle_timeout);
        stream_.async_read_some(buffer_.prepare(kFirstRead),
                                [self = shared_from_this()](const beast::error_code& ec, std::size_t n) {
                                    self->on_first_bytes(ec, n);
                                });
    }

    void on_first_bytes(const beast::error_code& ec, std::size_t n) {
        if (ec || state_ == State::closed) {
            close();
            return;
        }
        buffer_.commit(n);
        read_request();
    }

    void read_request() {
        if (state_ != State::idle) {
            waiting_since_ = std::chrono::steady_clock::now();  // a pipelined request starts its own wait
        }
        state_ = State::reading;
        const auto& limits = server_->limits;
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(
            std::min<std::size_t>(limits.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
        parser_->body_limit(limits.max_body_bytes);
        stream_.expires_after(limits.read_timeout);
        http::async_read(
            stream_, buffer_, *parser_,
            [self = shared_from_this()](const beast::error_code& ec, std::size_t) { self->on_request(ec); });
    }

    void on_request(const beast::error_code& ec) {
        if (state_ == State::closed || server_->closed) {
            close();
            return;
        }
        request_read_ = !ec;
        if (ec) {
            if (ec == http::error::header_limit) {
                respond(plain_response(431), false, false);
            } else if (ec == http::error::body_limit || ec == http::error::buffer_overflow) {
                respond(plain_response(413), false, false);
            } else if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
                       ec != http::error::end_of_stream && ec != http::error::partial_message) {
                respond(plain_response(400), false, false);
            } else {
                close();  // timeout, reset, or the peer went away mid-request: nobody to answer
            }
            return;
        }
        auto& message = parser_->get();
        const SurfaceRequest request = to_surface_request(message);
        const bool wants_keep_alive = message.keep_alive();
        const bool head = message.method() == http::verb::head;
        wipe_string(message.body());  // SurfaceRequest carries no body; none of it is kept
        parser_.reset();
        SurfaceResponse response = server_->call_handler(request);
        // A request refused as malformed or ambiguous ends the connection: whatever follows it on the wire
        // was framed by rules the client and this server disagree on, and must not be read as a request.
        const bool malformed = response.status == 400 || response.status == 413 || response.status == 431;
        // Checked after the handler, which may itself have stopped the server.
        respond(std::move(response), wants_keep_alive && !malformed && !server_->stopping, head);
    }

    // respond serializes the answer into wire_ (our own buffer, so that the body can be wiped once sent).
    void respond(SurfaceResponse response, bool keep_alive, bool head) {
        if (response.status < 200 || response.status > 599) {
            response = plain_response(500);
        }
        const int status = response.status;
        // 204 and 304 never have a body; HEAD announces the length of the body it does not get.
        const bool no_body = head || status == 204 || status == 304;
        std::string head_text = "HTTP/1.1 " + std::to_string(status) + " ";
        head_text += http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
        head_text += "\r\n";
        for (const auto& [name, value] : response.headers) {
            if (beast::iequals(name, "Connection")) {
                if (beast::iequals(value, "close")) {
                    keep_alive = false;
                }
                continue;
            }
            if (beast::iequals(name, "Content-Length") || beast::iequals(name, "Transfer-Encoding") ||
                !header_is_safe(name, value)) {
                continue;
            }
            head_text.append(name).append(": ").append(value).append("\r\n");
        }
        if (status != 204) {
            head_text += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
        }
        head_text += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";

        const std::string_view body = no_body ? std::string_view() : response.body.reveal();
        wipe_string(wire_);
        wire_.reserve(head_text.size() + body.size());  // one allocation: no stray copies of the body
        wire_.append(head_text).append(body);
        wipe_string(head_text);

        state_ = State::writing;
        stream_.expires_after(server_->limits.write_timeout);
        net::async_write(stream_, net::buffer(wire_),
                         [self = shared_from_this(), keep_alive](const beast::error_code& ec, std::size_t) {
                             self->on_written(ec, keep_alive);
                         });
    }

    void on_written(const beast::error_code& ec, bool keep_alive) {
        wipe_string(wire_);
        ++exchanges_;
        if (ec || state_ == State::closed) {
            close();
            return;
        }
        if (keep_alive && !server_->stopping) {
            wait_for_request();
            return;
        }
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        beast::error_code available_ec;
        const bool unread = !request_read_ || buffer_.size() > 0 ||
                            stream_.socket().available(available_ec) > 0 || available_ec;
        if (unread) {
            linger();
        } else {
            close();  // nothing unread: the close cannot turn into a reset
        }
    }

    // linger drains, after the half-close, what the client still sends until it closes too (bounded in time
    // and bytes), so that the answer is not lost to a reset caused by closing with unread data.
    void linger() {
        state_ = State::lingering;
        waiting_since_ = std::chrono::steady_clock::now();
        stream_.expires_after(std::min(kLingerTime, server_->limits.read_timeout));
        drain();
    }

    void drain() {
        stream_.async_read_some(
            net::buffer(drain_), [self = shared_from_this()](const beast::error_code& ec, std::size_t n) {
                self->drained_ += n;
                if (ec || self->state_ == State::closed || self->drained_ > kLingerBytes) {
                    self->close();
                    return;
                }
                self->drain();
            });
    }

    std::shared_ptr<HttpServer::Impl> server_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::string wire_;
    std::array<char, 4096> drain_{};
    std::size_t drained_ = 0;
    bool request_read_ = false;  // the last request was read to its end (not cut short by an error)
    State state_ = State::idle;
    std::uint64_t exchanges_ = 0;  // answers written on this connection
    std::chrono::steady_clock::time_point waiting_since_ = std::chrono::steady_clock::now();
};

}  // namespace server_detail

Result<std::uint16_t> HttpServer::Impl::listen(const std::string& host, std::uint16_t port) {
    const std::string where = "listen " + endpoint_text(host, port);
    if (stopping) {
        return make_error(Errc::internal, where + ": the server is stopping");
    }
    std::string literal = host;
    if (literal.size() > 2 && literal.front() == '[' && literal.back() == ']') {
        literal = literal.substr(1, literal.size() - 2);
    }
    net::ip::address address;
    if (literal == "localhost") {
        address = net::ip::address_v4::loopback();
    } else {
        beast::error_code ec;
        address = net::ip::make_address(literal, ec);
        if (ec) {
            return make_error(Errc::config_invalid, where + ": not an IP address (nor localhost)");
        }
    }
    const tcp::endpoint endpoint(address, port);
    auto listener = std::make_shared<server_detail::Listener>(io);
    auto& acceptor = listener->acceptor;
    beast::error_code ec;
    auto fail = [&](const beast::error_code& error) {
        return make_error(Errc::config_invalid, where + ": " + sentence_part(error.message()));
    };
    if (acceptor.open(endpoint.protocol(), ec); ec) {
        return fail(ec);
    }
    if (acceptor.set_option(net::socket_base::reuse_address(true), ec); ec) {
        return fail(ec);
    }
    if (address.is_v6()) {
        // An IPv6 address means IPv6 only; 127.0.0.1 must be asked for on its own.
        if (acceptor.set_option(net::ip::v6_only(true), ec); ec) {
            return fail(ec);
        }
    }
    if (acceptor.bind(endpoint, ec); ec) {
        return fail(ec);
    }
    // Set on the listener too, so that the SYN-ACK is bounded as well; accepted sockets inherit it.
    if (auto r = apply_hop_limit(acceptor.native_handle(), endpoint.protocol().family(), limits.hop_limit);
        !r) {
        return make_error(Errc::config_invalid, where + ": " + r.error().message);
    }
    if (acceptor.listen(net::socket_base::max_listen_connections, ec); ec) {
        return fail(ec);
    }
    const auto bound = acceptor.local_endpoint(ec);
    if (ec) {
        return fail(ec);
    }
    listeners.push_back(listener);
    accept(listener);
    return bound.port();
}

Result<void> HttpServer::Impl::adopt(int fd) {
    const std::string where = "adopt fd " + std::to_string(fd);
    if (stopping) {
        return make_error(Errc::internal, where + ": the server is stopping");
    }
    int type = 0;
    int listening = 0;
    socklen_t length = sizeof type;
    if (fd < 0 || ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) {
        return make_error(Errc::config_invalid, where + ": not a socket");
    }
    length = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0 || type != SOCK_STREAM ||
        listening == 0) {
        return make_error(Errc::config_invalid, where + ": not a listening TCP socket");
    }
    sockaddr_storage local{};
    length = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0 ||
        (local.ss_family != AF_INET && local.ss_family != AF_INET6)) {
        return make_error(Errc::config_invalid, where + ": not a listening TCP socket");
    }
    const int family = local.ss_family;
    if (auto r = apply_hop_limit(fd, family, limits.hop_limit); !r) {
        return make_error(Errc::config_invalid, where + ": " + r.error().message);
    }
    auto listener = std::make_shared<server_detail::Listener>(io);
    beast::error_code ec;
    if (listener->acceptor.assign(family == AF_INET ? tcp::v4() : tcp::v6(), fd, ec); ec) {
        return make_error(Errc::config_invalid, where + ": " + sentence_part(ec.message()));
    }
    listeners.push_back(listener);
    accept(listener);
    return {};
}

void HttpServer::Impl::accept(const std::shared_ptr<server_detail::Listener>& listener) {
    if (held) {
        watch_while_held(listener);
        return;
    }
    listener->acceptor.async_accept(
        [self = shared_from_this(), listener](const beast::error_code& ec, tcp::socket socket) {
            self->on_accept(listener, ec, std::move(socket));
        });
}

void HttpServer::Impl::on_accept(const std::shared_ptr<server_detail::Listener>& listener,
                                 const beast::error_code& ec,
                                 tcp::socket socket) {
    if (stopping || !listener->acceptor.is_open()) {
        return;  // the socket, if any, is closed by its destructor
    }
    if (ec == net::error::operation_aborted) {
        return;  // hold() or release() cancelled it, and re-armed what comes next
    }
    if (ec) {
        // EMFILE, ENOBUFS, ECONNABORTED...: the listener is still good, try again shortly rather than spin.
        listener->retry.expires_after(kAcceptRetry);
        listener->retry.async_wait([self = shared_from_this(), listener](const beast::error_code& wait_ec) {
            if (!wait_ec && !self->stopping) {
                self->accept(listener);
            }
        });
        return;
    }
    accept(listener);
    if (limits.same_host_peers_only) {
        beast::error_code remote_ec;
        beast::error_code local_ec;
        const auto remote = socket.remote_endpoint(remote_ec);
        const auto local = socket.local_endpoint(local_ec);
        // Closed unanswered, and before it can take a place under the connection cap: a peer on another host
        // or in another network namespace (a listener bound to a non-loopback address, or route_localnet +
        // DNAT as in CVE-2020-8558) learns nothing and displaces nobody.
        if (remote_ec || local_ec ||
            !is_same_host_peer(remote.address().to_string(), local.address().to_string())) {
            return;
        }
    }
    if (!make_room()) {
        return;  // closed unanswered: an answer would cost the very resources the cap protects
    }
    beast::error_code endpoint_ec;
    const auto local = socket.local_endpoint(endpoint_ec);
    if (endpoint_ec) {
        return;
    }
    if (!apply_hop_limit(socket.native_handle(), local.protocol().family(), limits.hop_limit)) {
        return;  // fail closed: an answer could travel further than hop_limit allows
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true),
                      ignored);  // answers go out in one write; pipelined ones must not wait
    std::make_shared<server_detail::Connection>(shared_from_this(), std::move(socket))->start();
}

bool HttpServer::Impl::make_room() {
    const auto cap = static_cast<std::size_t>(std::max(limits.max_connections, 0));
    if (connections.size() < cap) {
        return true;
    }
    // At the cap, the connection that has waited longest on its peer (an idle keep-alive, or a slowloris
    // still sending its header) is let go for the new one: otherwise whoever opens `cap` idle connections
    // first would lock every real client out until the idle timeout. Closed connections still in the set
    // (their last handler has not run yet) hold no socket and do not count.
    std::size_t live = 0;
    server_detail::Connection* eldest = nullptr;
    std::chrono::steady_clock::time_point eldest_since{};
    for (auto* connection : connections) {
        if (connection->closed()) {
            continue;
        }
        ++live;
        const auto since = connection->waiting_since();
        if (since && (eldest == nullptr || *since < eldest_since)) {
            eldest = connection;
            eldest_since = *since;
        }
    }
    if (live < cap) {
        return true;
    }
    if (eldest == nullptr || cap == 0) {
        return false;  // every connection is busy with an answer: the new one waits for none of them
    }
    eldest->close();
    return true;
}

void HttpServer::Impl::hold(std::function<void()> waiting) {
    if (held || stopping) {
        return;
    }
    held = true;
    on_waiting = std::move(waiting);
    beast::error_code ignored;
    for (const auto& listener : listeners) {
        listener->acceptor.cancel(ignored);  // the pending accept ends (operation_aborted) and is not renewed
        watch_while_held(listener);
    }
}

// watch_while_held waits for a client on the listener without accepting it: the first one seen is reported.
void HttpServer::Impl::watch_while_held(const std::shared_ptr<server_detail::Listener>& listener) {
    listener->acceptor.async_wait(tcp::acceptor::wait_read,
                                  [self = shared_from_this(), listener](const beast::error_code& ec) {
                                      if (ec || !self->held || self->stopping) {
                                          return;
                                      }
                                      if (auto waiting = std::exchange(self->on_waiting, nullptr)) {
                                          waiting();
                                      }
                                  });
}

void HttpServer::Impl::release() {
    if (!held) {
        return;
    }
    held = false;
    on_waiting = nullptr;
    beast::error_code ignored;
    for (const auto& listener : listeners) {
        listener->acceptor.cancel(ignored);  // the watch ends; accepting starts over
        if (!stopping) {
            accept(listener);
        }
    }
}

void HttpServer::Impl::stop_accepting() {
    stopping = true;
    beast::error_code ignored;
    for (const auto& listener : listeners) {
        listener->acceptor.close(ignored);
        listener->retry.cancel();
    }
    listeners.clear();
    // close() never destroys a connection synchronously (its pending operation holds it), but copy anyway.
    const std::vector<server_detail::Connection*> current(connections.begin(), connections.end());
    for (auto* connection : current) {
        connection->close_if_idle();
    }
}

void HttpServer::Impl::shut_down() {
    stop_accepting();
    closed = true;
    const std::vector<server_detail::Connection*> current(connections.begin(), connections.end());
    for (auto* connection : current) {
        connection->close();
    }
    handler = nullptr;
}

SurfaceResponse HttpServer::Impl::call_handler(const SurfaceRequest& request) {
    if (!handler) {
        return plain_response(503);
    }
    try {
        return handler(request);
    } catch (...) {
        // The handler is ours and pure, but an allocation can still fail; the client gets a 500, the loop
        // lives on.
        return plain_response(500);
    }
}

HttpServer::HttpServer(boost::asio::io_context& io, HttpServerLimits limits, HttpHandler handler)
    : impl_(std::make_shared<Impl>(io, limits, std::move(handler))) {}

HttpServer::~HttpServer() {
    impl_->shut_down();
}

Result<std::uint16_t> HttpServer::listen(const std::string& host, std::uint16_t port) {
    return impl_->listen(host, port);
}

Result<void> HttpServer::adopt(int listening_fd) {
    return impl_->adopt(listening_fd);
}

void HttpServer::stop_accepting() {
    // dispatch runs it at once on the loop's thread and hands it to the loop from anywhere else.
    net::dispatch(impl_->io.get_executor(), [impl = impl_] { impl->stop_accepting(); });
}

void HttpServer::hold(std::function<void()> waiting) {
    impl_->hold(std::move(waiting));
}

void HttpServer::release() {
    impl_->release();
}

void HttpServer::set_limits(const HttpServerLimits& limits) {
    impl_->limits = limits;
    // On the listeners for their SYN-ACKs; every accepted socket gets it again and is closed unanswered
    // without it (on_accept), so a listener that refuses it changes nothing a client can see.
    for (const auto& listener : impl_->listeners) {
        beast::error_code ec;
        const auto local = listener->acceptor.local_endpoint(ec);
        if (!ec) {
            (void)apply_hop_limit(listener->acceptor.native_handle(), local.protocol().family(),
                                  limits.hop_limit);
        }
    }
}

std::vector<int> HttpServer::listening_fds() const {
    std::vector<int> fds;
    for (const auto& listener : impl_->listeners) {
        fds.push_back(listener->acceptor.native_handle());
    }
    return fds;
}

std::size_t HttpServer::open_connections() const noexcept {
    return impl_->open_count.load();
}

}  // namespace rad::surfaces
