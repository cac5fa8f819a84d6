#include "daemon/surfaces/http_server.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

// GCC 12 false positives inside Asio once inlined (see http_server.cpp).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#pragma GCC diagnostic pop

#include "daemon/surfaces/socket_options.hpp"

namespace rad::surfaces {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---- a plain blocking client; every wait is bounded by poll() ----

struct WireResponse {
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    const std::string* header(std::string_view name) const {
        for (const auto& [n, v] : headers) {
            if (iequals(n, name)) {
                return &v;
            }
        }
        return nullptr;
    }
};

class Client {
public:
    Client(int family, std::uint16_t port) {
        fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) {
            connect_errno_ = errno;
            return;
        }
        int rc = -1;
        if (family == AF_INET) {
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(port);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
        } else {
            sockaddr_in6 a{};
            a.sin6_family = AF_INET6;
            a.sin6_port = htons(port);
            a.sin6_addr = in6addr_loopback;
            rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
        }
        if (rc != 0) {
            connect_errno_ = errno;
        }
    }
    explicit Client(std::uint16_t port) : Client(AF_INET, port) {}
    ~Client() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    bool connected() const { return fd_ >= 0 && connect_errno_ == 0; }
    int connect_errno() const { return connect_errno_; }
    int fd() const { return fd_; }

    bool send(std::string_view data) {
        while (!data.empty()) {
            const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
            if (n <= 0) {
                return false;
            }
            data.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }

    // read_response parses one response (Content-Length framing; HEAD answers carry no body).
    std::optional<WireResponse> read_response(bool head = false, std::chrono::milliseconds timeout = 3000ms) {
        const auto deadline = Clock::now() + timeout;
        std::size_t end = 0;
        while ((end = pending_.find("\r\n\r\n")) == std::string::npos) {
            if (fill(deadline) <= 0) {
                return std::nullopt;
            }
        }
        WireResponse response;
        const std::string head_text = pending_.substr(0, end + 2);
        pending_.erase(0, end + 4);
        std::size_t line_end = head_text.find("\r\n");
        const std::string status_line = head_text.substr(0, line_end);
        if (status_line.rfind("HTTP/1.1 ", 0) != 0 || status_line.size() < 12) {
            return std::nullopt;
        }
        response.status = std::stoi(status_line.substr(9, 3));
        std::size_t pos = line_end + 2;
        while (pos < head_text.size()) {
            line_end = head_text.find("\r\n", pos);
            const std::string line = head_text.substr(pos, line_end - pos);
            const auto colon = line.find(": ");
            if (colon == std::string::npos) {
                return std::nullopt;
            }
            response.headers.emplace_back(line.substr(0, colon), line.substr(colon + 2));
            pos = line_end + 2;
        }
        std::size_t length = 0;
        if (const auto* cl = response.header("Content-Length")) {
            length = std::stoul(*cl);
        }
        if (!head) {
            while (pending_.size() < length) {
                if (fill(deadline) <= 0) {
                    return std::nullopt;
                }
            }
            response.body = pending_.substr(0, length);
            pending_.erase(0, length);
        }
        return response;
    }

    // closed_by_peer waits until the server ends the connection (EOF or reset), discarding data.
    bool closed_by_peer(std::chrono::milliseconds timeout) {
        const auto deadline = Clock::now() + timeout;
        for (;;) {
            const int r = fill(deadline);
            if (r == 0 || r == -1) {
                return true;
            }
            if (r == -2) {
                return false;
            }
        }
    }

    // readable_now tells whether data or EOF is waiting (no blocking).
    bool readable_now() {
        pollfd p{fd_, POLLIN, 0};
        return ::poll(&p, 1, 0) > 0;
    }

    const std::string& pending() const { return pending_; }

private:
    // fill reads once: >0 bytes appended, 0 EOF, -1 error (reset), -2 deadline passed.
    int fill(Clock::time_point deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            return -2;
        }
        pollfd p{fd_, POLLIN, 0};
        const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
        if (ready == 0) {
            return -2;
        }
        if (ready < 0) {
            return -1;
        }
        char buf[4096];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n < 0) {
            return -1;
        }
        pending_.append(buf, static_cast<std::size_t>(n));
        return static_cast<int>(n);
    }

    int fd_ = -1;
    int connect_errno_ = 0;
    std::string pending_;
};

std::string get(const std::string& target, const std::string& extra = "") {
    return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + "\r\n";
}

HttpServerLimits test_limits() {
    HttpServerLimits limits;
    limits.max_header_bytes = 2048;
    limits.max_body_bytes = 64;
    limits.read_timeout = 2000ms;
    limits.idle_timeout = 5000ms;
    limits.write_timeout = 2000ms;
    limits.max_connections = 16;
    return limits;
}

// ---- fixture: the server's loop runs on a background thread ----

class HttpServerTest : public ::testing::Test {
protected:
    // The default handler echoes what it got: "<method> <target>" as the body, the header count in a header.
    HttpHandler echo_handler() {
        return [this](const SurfaceRequest& request) {
            {
                std::lock_guard lock(mutex_);
                seen_.push_back(request);
            }
            ++calls_;
            SurfaceResponse response;
            response.status = 200;
            response.headers.emplace_back("Content-Type", "text/plain");
            response.headers.emplace_back("X-Header-Count", std::to_string(request.headers.size()));
            response.body = Secret(request.method + " " + request.target);
            return response;
        };
    }

    void make_server(HttpServerLimits limits, HttpHandler handler = {}) {
        server_ = std::make_unique<HttpServer>(io_, limits, handler ? std::move(handler) : echo_handler());
    }

    void start(HttpServerLimits limits = test_limits(), HttpHandler handler = {}) {
        listen(limits, std::move(handler));
        run_loop();
    }

    // listen makes the server listen without running its loop: the test steps the loop itself
    // (serve_until) until it calls run_loop().
    void listen(HttpServerLimits limits = test_limits(), HttpHandler handler = {}) {
        make_server(limits, std::move(handler));
        auto port = server_->listen("127.0.0.1", 0);
        ASSERT_TRUE(port) << port.error().message;
        port_ = *port;
    }

    // serve_until runs the server's loop on the test's thread until `done` holds (bounded), then runs every
    // handler that is ready, so that the server has done all it can without hearing from a client again:
    // what a test does next happens after it, whatever the machine's load.
    bool serve_until(const std::function<bool()>& done) {
        const auto deadline = Clock::now() + 3s;
        while (!done()) {
            if (Clock::now() > deadline) {
                return false;
            }
            io_.run_one_for(10ms);
        }
        io_.poll();
        return true;
    }

    void run_loop() {
        auto done = std::make_shared<std::promise<void>>();
        loop_done_ = done->get_future();
        thread_ = std::thread([this, done] {
            io_.run();
            done->set_value();
        });
    }

    void TearDown() override {
        io_.stop();
        if (thread_.joinable()) {
            thread_.join();
        }
        server_.reset();
    }

    // wait_until polls `done` (bounded) while the loop runs on its thread.
    static bool wait_until(const std::function<bool()>& done) {
        const auto deadline = Clock::now() + 2s;
        while (!done()) {
            if (Clock::now() > deadline) {
                return false;
            }
            std::this_thread::sleep_for(5ms);
        }
        return true;
    }

    // wait_for_connections waits until open_connections() equals n.
    bool wait_for_connections(std::size_t n) {
        return wait_until([&] { return server_->open_connections() == n; });
    }

    std::vector<SurfaceRequest> seen() {
        std::lock_guard lock(mutex_);
        return seen_;
    }

    boost::asio::io_context io_;
    std::unique_ptr<HttpServer> server_;
    std::uint16_t port_ = 0;
    std::thread thread_;
    std::future<void> loop_done_;
    std::atomic<int> calls_{0};
    std::mutex mutex_;
    std::vector<SurfaceRequest> seen_;
};

TEST_F(HttpServerTest, AnswersWithTheHandlersStatusHeadersAndBody) {
    start();
    Client client(port_);
    ASSERT_TRUE(client.connected());
    ASSERT_TRUE(client.send(get("/latest/meta-data/x?y=1", "X-Custom-Name: Value 1\r\n")));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "GET /latest/meta-data/x?y=1");
    ASSERT_NE(response->header("Content-Length"), nullptr);
    EXPECT_EQ(*response->header("Content-Length"), "27");
    ASSERT_NE(response->header("Content-Type"), nullptr);
    EXPECT_EQ(*response->header("Content-Type"), "text/plain");
    ASSERT_NE(response->header("Connection"), nullptr);
    EXPECT_EQ(*response->header("Connection"), "keep-alive");
    EXPECT_EQ(*response->header("X-Header-Count"), "2");

    // The handler sees the request as sent: method, target, header names with their case, values.
    const auto requests = seen();
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_EQ(requests[0].method, "GET");
    EXPECT_EQ(requests[0].target, "/latest/meta-data/x?y=1");
    ASSERT_EQ(requests[0].headers.size(), 2u);
    EXPECT_EQ(requests[0].headers[1].first, "X-Custom-Name");
    EXPECT_EQ(requests[0].headers[1].second, "Value 1");
}

TEST_F(HttpServerTest, KeepsTheConnectionAliveForASecondRequest) {
    start();
    Client client(port_);
    ASSERT_TRUE(client.send(get("/one")));
    auto first = client.read_response();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->body, "GET /one");
    ASSERT_TRUE(client.send("PUT /two HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"));
    auto second = client.read_response();
    ASSERT_TRUE(second);
    EXPECT_EQ(second->status, 200);
    EXPECT_EQ(second->body, "PUT /two");
    EXPECT_EQ(calls_.load(), 2);
    EXPECT_EQ(server_->open_connections(), 1u);
}

TEST_F(HttpServerTest, AnswersPipelinedRequestsInOrder) {
    start();
    Client client(port_);
    ASSERT_TRUE(
        client.send(get("/a") + "PUT /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz" + get("/c")));
    for (const char* expected : {"GET /a", "PUT /b", "GET /c"}) {
        auto response = client.read_response();
        ASSERT_TRUE(response) << expected;
        EXPECT_EQ(response->body, expected);
    }
}

TEST_F(HttpServerTest, Http10WithoutKeepAliveIsClosedAfterTheAnswer) {
    start();
    Client client(port_);
    ASSERT_TRUE(client.send("GET /old HTTP/1.0\r\n\r\n"));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "GET /old");
    EXPECT_EQ(*response->header("Connection"), "close");
    EXPECT_TRUE(client.closed_by_peer(2000ms));
}

TEST_F(HttpServerTest, Http10WithKeepAliveStaysOpen) {
    start();
    Client client(port_);
    ASSERT_TRUE(client.send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(*response->header("Connection"), "keep-alive");
    ASSERT_TRUE(client.send("GET /again HTTP/1.0\r\n\r\n"));
    auto again = client.read_response();
    ASSERT_TRUE(again);
    EXPECT_EQ(again->body, "GET /again");
}

TEST_F(HttpServerTest, ConnectionCloseFromTheClientClosesAfterTheAnswer) {
    start();
    Client client(port_);
    ASSERT_TRUE(client.send(get("/bye", "Connection: close\r\n")));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(*response->header("Connection"), "close");
    EXPECT_TRUE(client.closed_by_peer(2000ms));
}

TEST_F(HttpServerTest, HeadAnnouncesTheLengthWithoutSendingTheBody) {
    start();
    Client client(port_);
    ASSERT_TRUE(client.send("HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n"));
    auto response = client.read_response(/*head=*/true);
    ASSERT_TRUE(response);
    EXPECT_EQ(*response->header("Content-Length"), "7");  // "HEAD /h"
    // No body bytes follow: the next answer starts right away.
    ASSERT_TRUE(client.send(get("/next")));
    auto next = client.read_response();
    ASSERT_TRUE(next);
    EXPECT_EQ(next->body, "GET /next");
}

TEST_F(HttpServerTest, OversizedHeaderGets431AndIsClosed) {
    start();
    Client client(port_);
    ASSERT_TRUE(client.send(get("/", "X-Big: " + std::string(4000, 'a') + "\r\n")));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 431);
    EXPECT_EQ(*response->header("Connection"), "close");
    EXPECT_TRUE(client.closed_by_peer(3000ms));
    EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, BodyTooLargeGets413AndIsClosed) {
    start();
    Client client(port_);
    ASSERT_TRUE(
        client.send("PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + std::string(1000, 'b')));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 413);
    EXPECT_EQ(*response->header("Connection"), "close");
    EXPECT_TRUE(client.closed_by_peer(3000ms));
    EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, ChunkedBodyTooLargeGets413) {
    start();
    Client client(port_);
    ASSERT_TRUE(client.send("PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n30\r\n" +
                            std::string(48, 'c') + "\r\n30\r\n" + std::string(48, 'c') + "\r\n0\r\n\r\n"));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 413);
    EXPECT_TRUE(client.closed_by_peer(3000ms));
}

TEST_F(HttpServerTest, MalformedRequestGets400AndIsClosed) {
    start();
    Client client(port_);
    ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nBad Header\r\n\r\n"));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 400);
    EXPECT_EQ(*response->header("Connection"), "close");
    EXPECT_TRUE(client.closed_by_peer(3000ms));
    EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, SlowClientIsCutOffAfterReadTimeout) {
    auto limits = test_limits();
    limits.read_timeout = 300ms;
    start(limits);
    Client client(port_);
    ASSERT_TRUE(client.connected());
    const std::string request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + std::string(60, 'a');
    const auto first_byte = Clock::now();
    bool cut_off = false;
    // One byte every 100 ms; the whole request would take 6 s, the server must give up after ~300 ms.
    for (std::size_t i = 0; i < request.size() && !cut_off; ++i) {
        if (client.readable_now()) {
            cut_off = client.closed_by_peer(100ms);
            break;
        }
        if (!client.send(request.substr(i, 1))) {
            cut_off = true;
            break;
        }
        std::this_thread::sleep_for(100ms);
    }
    const auto elapsed = Clock::now() - first_byte;
    EXPECT_TRUE(cut_off);
    EXPECT_GE(elapsed, 250ms);
    EXPECT_LT(elapsed, 1500ms);
    EXPECT_EQ(client.pending().find("200"), std::string::npos);
    EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosedAfterIdleTimeout) {
    auto limits = test_limits();
    limits.idle_timeout = 300ms;
    start(limits);
    Client client(port_);
    ASSERT_TRUE(client.send(get("/")));
    ASSERT_TRUE(client.read_response());
    const auto answered = Clock::now();
    EXPECT_TRUE(client.closed_by_peer(2000ms));
    const auto elapsed = Clock::now() - answered;
    EXPECT_GE(elapsed, 250ms);
    EXPECT_LT(elapsed, 1500ms);
    EXPECT_TRUE(wait_for_connections(0));
}

TEST_F(HttpServerTest, AtTheCapTheLongestWaitingConnectionMakesRoomForANewOne) {
    auto limits = test_limits();
    limits.max_connections = 2;
    listen(limits);
    // `one` is answered, and back to waiting for its next request, before `two` connects: `one` has waited
    // longer than `two` from then on.
    Client one(port_);
    ASSERT_TRUE(one.send(get("/1")));
    ASSERT_TRUE(serve_until([&] { return one.readable_now(); }));
    ASSERT_TRUE(one.read_response());
    Client two(port_);
    ASSERT_TRUE(two.send(get("/2")));
    ASSERT_TRUE(serve_until([&] { return two.readable_now(); }));
    ASSERT_TRUE(two.read_response());
    EXPECT_EQ(server_->open_connections(), 2u);
    run_loop();

    // A third client is served: the idle connection that has waited longest (`one`) is closed for it.
    Client three(port_);
    ASSERT_TRUE(three.send(get("/3")));
    auto r3 = three.read_response();
    ASSERT_TRUE(r3);
    EXPECT_EQ(r3->body, "GET /3");
    EXPECT_TRUE(one.closed_by_peer(1000ms));
    EXPECT_TRUE(one.pending().empty());

    // `two` was not the eldest and still works; the cap holds.
    ASSERT_TRUE(two.send(get("/2b")));
    auto r2 = two.read_response();
    ASSERT_TRUE(r2);
    EXPECT_EQ(r2->body, "GET /2b");
    ASSERT_TRUE(wait_for_connections(2));
}

TEST_F(HttpServerTest, AtTheCapASlowHeaderIsLetGoBeforeAnIdleNewerConnection) {
    auto limits = test_limits();
    limits.max_connections = 2;
    listen(limits);
    // `slow` is accepted and has started its request before `idle` connects.
    Client slow(port_);
    ASSERT_TRUE(slow.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "));  // never finished
    ASSERT_TRUE(serve_until([&] { return server_->open_connections() == 1; }));
    Client idle(port_);
    ASSERT_TRUE(idle.send(get("/idle")));
    ASSERT_TRUE(serve_until([&] { return idle.readable_now(); }));
    ASSERT_TRUE(idle.read_response());
    run_loop();

    Client fresh(port_);
    ASSERT_TRUE(fresh.send(get("/fresh")));
    auto r = fresh.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "GET /fresh");
    EXPECT_TRUE(slow.closed_by_peer(1000ms));
    ASSERT_TRUE(idle.send(get("/idle2")));
    auto r2 = idle.read_response();
    ASSERT_TRUE(r2);
    EXPECT_EQ(r2->body, "GET /idle2");
}

TEST_F(HttpServerTest, AFloodOfIdleConnectionsNeverExceedsTheCap) {
    auto limits = test_limits();
    limits.max_connections = 4;
    start(limits);
    std::vector<std::unique_ptr<Client>> flood;
    for (int i = 0; i < 40; ++i) {
        flood.push_back(std::make_unique<Client>(port_));
        ASSERT_TRUE(flood.back()->connected());
    }
    // Each connection taken past the cap closes one that waits: once 36 are closed, the server has taken
    // all 40.
    ASSERT_TRUE(wait_until([&] {
        std::size_t closed = 0;
        for (const auto& client : flood) {
            closed += client->readable_now() ? 1 : 0;
        }
        return closed >= 36;
    }));
    EXPECT_LE(server_->open_connections(), 4u);
    Client real(port_);
    ASSERT_TRUE(real.send(get("/real")));
    auto r = real.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "GET /real");
    EXPECT_LE(server_->open_connections(), 4u);
}

TEST_F(HttpServerTest, StopAcceptingRefusesNewConnectionsAndTheLoopReturns) {
    start();
    Client idle(port_);
    ASSERT_TRUE(idle.send(get("/")));
    ASSERT_TRUE(idle.read_response());
    ASSERT_TRUE(wait_for_connections(1));

    server_->stop_accepting();  // from another thread: handed to the loop
    ASSERT_EQ(loop_done_.wait_for(3s), std::future_status::ready);
    EXPECT_TRUE(idle.closed_by_peer(1000ms));
    EXPECT_EQ(server_->open_connections(), 0u);

    Client late(port_);
    EXPECT_FALSE(late.connected());
    EXPECT_EQ(late.connect_errno(), ECONNREFUSED);
}

TEST_F(HttpServerTest, AConnectionNotYetReadFromAtStopIsStillAnswered) {
    start();
    Client fresh(port_);
    ASSERT_TRUE(fresh.connected());
    ASSERT_TRUE(wait_for_connections(1));  // accepted, waiting for its first bytes
    server_->stop_accepting();
    // Its client connected while the server listened: its request is answered (and the connection closed),
    // not reset.
    ASSERT_TRUE(fresh.send(get("/late")));
    auto response = fresh.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "GET /late");
    EXPECT_EQ(*response->header("Connection"), "close");
    EXPECT_EQ(loop_done_.wait_for(3s), std::future_status::ready);
}

TEST_F(HttpServerTest, HoldLeavesClientsInTheBacklogUntilRelease) {
    // Once the waiting client is reported, the held server has no operation pending; the agent's loop has
    // its timers, this one a guard.
    auto guard = boost::asio::make_work_guard(io_);
    start();
    auto waiting = std::make_shared<std::promise<void>>();
    auto waited = waiting->get_future();
    boost::asio::post(io_, [this, waiting] { server_->hold([waiting] { waiting->set_value(); }); });
    Client client(port_);
    ASSERT_TRUE(client.connected());  // the kernel completes the handshake; the server takes nothing
    ASSERT_TRUE(client.send(get("/held")));
    ASSERT_EQ(waited.wait_for(3s), std::future_status::ready) << "the hold did not report the waiting client";
    EXPECT_EQ(calls_.load(), 0);
    EXPECT_EQ(server_->open_connections(), 0u);
    boost::asio::post(io_, [this] { server_->release(); });
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "GET /held");
    // Released, the server accepts as before.
    Client next(port_);
    ASSERT_TRUE(next.send(get("/next")));
    ASSERT_TRUE(next.read_response());
}

TEST_F(HttpServerTest, StopAcceptingWhileHeldLetsTheLoopReturn) {
    start();
    boost::asio::post(io_, [this] { server_->hold([] {}); });
    Client client(port_);
    ASSERT_TRUE(client.connected());
    server_->stop_accepting();
    EXPECT_EQ(loop_done_.wait_for(3s), std::future_status::ready);
}

TEST_F(HttpServerTest, StopAcceptingLetsTheResponseInProgressFinish) {
    std::atomic<HttpServer*> server{nullptr};
    start(test_limits(), [&server](const SurfaceRequest& request) {
        if (request.target == "/stop") {
            server.load()->stop_accepting();  // on the loop's thread, in the middle of an exchange
        }
        SurfaceResponse response;
        response.body = Secret(std::string_view("stopping now"));
        return response;
    });
    server = server_.get();
    Client idle(port_);
    ASSERT_TRUE(idle.send(get("/")));
    ASSERT_TRUE(idle.read_response());

    Client stopper(port_);
    ASSERT_TRUE(stopper.send(get("/stop")));
    auto response = stopper.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "stopping now");
    EXPECT_EQ(*response->header("Connection"), "close");
    EXPECT_TRUE(stopper.closed_by_peer(2000ms));
    EXPECT_TRUE(idle.closed_by_peer(2000ms));
    EXPECT_EQ(loop_done_.wait_for(3s), std::future_status::ready);
}

TEST_F(HttpServerTest, ListenOnAUsedPortIsConfigInvalidNamingTheAddress) {
    start();
    HttpServer second(io_, test_limits(), echo_handler());
    auto again = second.listen("127.0.0.1", port_);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, Errc::config_invalid);
    EXPECT_EQ(again.error().message,
              "listen 127.0.0.1:" + std::to_string(port_) + ": address already in use");
}

TEST_F(HttpServerTest, ListenRejectsAHostName) {
    make_server(test_limits());
    auto r = server_->listen("metadata.example", 80);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::config_invalid);
    EXPECT_NE(r.error().message.find("metadata.example:80"), std::string::npos) << r.error().message;
}

TEST_F(HttpServerTest, PortZeroReturnsTheBoundPortAndLocalhostIsIpv4Loopback) {
    make_server(test_limits());
    auto port = server_->listen("localhost", 0);
    ASSERT_TRUE(port) << port.error().message;
    EXPECT_NE(*port, 0);
    port_ = *port;
    run_loop();
    Client client(AF_INET, port_);
    ASSERT_TRUE(client.send(get("/local")));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "GET /local");
}

TEST_F(HttpServerTest, ListensOnIpv6Loopback) {
    make_server(test_limits());
    auto port = server_->listen("::1", 0);
    if (!port) {
        GTEST_SKIP() << "no IPv6 loopback here: " << port.error().message;
    }
    port_ = *port;
    run_loop();
    Client client(AF_INET6, port_);
    ASSERT_TRUE(client.connected());
    ASSERT_TRUE(client.send("GET /v6 HTTP/1.1\r\nHost: [::1]\r\n\r\n"));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "GET /v6");
}

TEST_F(HttpServerTest, AdoptsAListeningSocketAndSetsItsHopLimit) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(fd, 16), 0);
    socklen_t length = sizeof a;
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length), 0);
    port_ = ntohs(a.sin_port);

    auto limits = test_limits();
    limits.hop_limit = 3;
    make_server(limits);
    auto adopted = server_->adopt(fd);  // the server owns fd from here on
    ASSERT_TRUE(adopted) << adopted.error().message;
    int ttl = 0;
    length = sizeof ttl;
    ASSERT_EQ(::getsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, &length), 0);
    EXPECT_EQ(ttl, 3);

    run_loop();
    Client client(port_);
    ASSERT_TRUE(client.send(get("/adopted")));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "GET /adopted");
}

TEST_F(HttpServerTest, AdoptRefusesWhatIsNotAListeningTcpSocket) {
    make_server(test_limits());
    auto bad = server_->adopt(-1);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, Errc::config_invalid);

    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // never listen()ed
    ASSERT_GE(fd, 0);
    auto not_listening = server_->adopt(fd);
    ASSERT_FALSE(not_listening);
    EXPECT_EQ(not_listening.error().message,
              "adopt fd " + std::to_string(fd) + ": not a listening TCP socket");

    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    EXPECT_FALSE(server_->adopt(pair[0]));
    ::close(pair[0]);
    ::close(pair[1]);
    ::close(fd);  // refused descriptors stay the caller's
}

TEST_F(HttpServerTest, ServerOwnsFramingHeadersAndDropsUnsafeOnes) {
    start(test_limits(), [](const SurfaceRequest&) {
        SurfaceResponse response;
        response.status = 404;
        response.headers.emplace_back("Content-Length", "999");
        response.headers.emplace_back("Transfer-Encoding", "chunked");
        response.headers.emplace_back("X-Split", "a\r\nX-Injected: 1");
        response.headers.emplace_back("Bad Name", "v");
        response.headers.emplace_back("X-Fine", "ok");
        response.body = Secret(std::string_view("nope"));
        return response;
    });
    Client client(port_);
    ASSERT_TRUE(client.send(get("/")));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 404);
    EXPECT_EQ(response->body, "nope");
    EXPECT_EQ(*response->header("Content-Length"), "4");
    EXPECT_EQ(response->header("Transfer-Encoding"), nullptr);
    EXPECT_EQ(response->header("X-Split"), nullptr);
    EXPECT_EQ(response->header("X-Injected"), nullptr);
    EXPECT_EQ(response->header("Bad Name"), nullptr);
    ASSERT_NE(response->header("X-Fine"), nullptr);
    EXPECT_EQ(response->headers.size(), 3u);  // X-Fine, Content-Length, Connection
}

TEST_F(HttpServerTest, HandlerAskingForCloseClosesTheConnection) {
    start(test_limits(), [](const SurfaceRequest&) {
        SurfaceResponse response;
        response.headers.emplace_back("Connection", "close");
        return response;
    });
    Client client(port_);
    ASSERT_TRUE(client.send(get("/")));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(*response->header("Connection"), "close");
    EXPECT_EQ(*response->header("Content-Length"), "0");
    EXPECT_TRUE(client.closed_by_peer(2000ms));
}

TEST_F(HttpServerTest, AThrowingHandlerGives500AndTheServerLivesOn) {
    start(test_limits(), [](const SurfaceRequest& request) -> SurfaceResponse {
        if (request.target == "/throw") {
            throw std::runtime_error("boom");
        }
        return SurfaceResponse{};
    });
    Client client(port_);
    ASSERT_TRUE(client.send(get("/throw")));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 500);
    ASSERT_TRUE(client.send(get("/fine")));
    auto fine = client.read_response();
    ASSERT_TRUE(fine);
    EXPECT_EQ(fine->status, 200);
}

// ---- apply_hop_limit on real connected sockets ----

struct ConnectedPair {
    int listener = -1;
    int client = -1;
    ~ConnectedPair() {
        if (client >= 0) {
            ::close(client);
        }
        if (listener >= 0) {
            ::close(listener);
        }
    }
};

// connect_loopback connects a client socket to a fresh loopback listener; false when the family is missing.
bool connect_loopback(int family, ConnectedPair& pair) {
    pair.listener = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    pair.client = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (pair.listener < 0 || pair.client < 0) {
        return false;
    }
    sockaddr_storage storage{};
    socklen_t length = 0;
    if (family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&storage);
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        length = sizeof *a;
    } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&storage);
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        length = sizeof *a;
    }
    auto* address = reinterpret_cast<sockaddr*>(&storage);
    return ::bind(pair.listener, address, length) == 0 && ::listen(pair.listener, 1) == 0 &&
           ::getsockname(pair.listener, address, &length) == 0 &&
           ::connect(pair.client, address, length) == 0;
}

int get_int_option(int fd, int level, int name) {
    int value = -1;
    socklen_t length = sizeof value;
    if (::getsockopt(fd, level, name, &value, &length) != 0) {
        return -1;
    }
    return value;
}

TEST(ApplyHopLimitTest, SetsTheTtlOfAnIpv4Socket) {
    ConnectedPair pair;
    ASSERT_TRUE(connect_loopback(AF_INET, pair));
    const int before = get_int_option(pair.client, IPPROTO_IP, IP_TTL);
    EXPECT_NE(before, 1);
    auto r = apply_hop_limit(pair.client, AF_INET, 1);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(get_int_option(pair.client, IPPROTO_IP, IP_TTL), 1);
    ASSERT_TRUE(apply_hop_limit(pair.client, AF_INET, 0));  // 0 leaves it alone
    EXPECT_EQ(get_int_option(pair.client, IPPROTO_IP, IP_TTL), 1);
}

TEST(ApplyHopLimitTest, SetsHopLimitAndTtlOfAnIpv6Socket) {
    ConnectedPair pair;
    if (!connect_loopback(AF_INET6, pair)) {
        GTEST_SKIP() << "no IPv6 loopback here";
    }
    auto r = apply_hop_limit(pair.client, AF_INET6, 2);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(get_int_option(pair.client, IPPROTO_IPV6, IPV6_UNICAST_HOPS), 2);
    EXPECT_EQ(get_int_option(pair.client, IPPROTO_IP, IP_TTL), 2);
}

TEST(ApplyHopLimitTest, RefusesOutOfRangeValuesAndOtherFamilies) {
    ConnectedPair pair;
    ASSERT_TRUE(connect_loopback(AF_INET, pair));
    EXPECT_FALSE(apply_hop_limit(pair.client, AF_INET, 256));
    EXPECT_FALSE(apply_hop_limit(pair.client, AF_INET, -1));
    EXPECT_FALSE(apply_hop_limit(pair.client, AF_UNIX, 1));
    auto closed = apply_hop_limit(-1, AF_INET, 1);
    ASSERT_FALSE(closed);
    EXPECT_NE(closed.error().message.find("IP_TTL"), std::string::npos);
}

}  // namespace
}  // namespace rad::surfaces

namespace rad::surfaces {
namespace {

// A handler's 400/413/431 (a request refused as malformed or ambiguous) ends the connection; other refusals
// such as 401 keep it, so that an SDK can fetch a token and retry on the same connection.
TEST_F(HttpServerTest, HandlerRefusalAsMalformedClosesTheConnection) {
    start(test_limits(), [](const SurfaceRequest& request) {
        SurfaceResponse response;
        response.status = std::stoi(request.target.substr(1));
        return response;
    });
    for (int status : {400, 413, 431}) {
        Client client(port_);
        ASSERT_TRUE(client.send(get("/" + std::to_string(status))));
        auto response = client.read_response();
        ASSERT_TRUE(response);
        EXPECT_EQ(response->status, status);
        EXPECT_EQ(*response->header("Connection"), "close");
        EXPECT_TRUE(client.closed_by_peer(2000ms)) << status;
    }
    Client client(port_);
    ASSERT_TRUE(client.send(get("/401")));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(*response->header("Connection"), "keep-alive");
    ASSERT_TRUE(client.send(get("/200")));
    auto second = client.read_response();
    ASSERT_TRUE(second);
    EXPECT_EQ(second->status, 200);
}

TEST(LoopbackPeer, OnlyLoopbackAddressesPass) {
    for (const char* address : {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"}) {
        EXPECT_TRUE(is_loopback_peer(address)) << address;
    }
    for (const char* address : {"10.0.0.1", "169.254.169.254", "0.0.0.0", "::", "::ffff:10.0.0.1", "fe80::1",
                                "128.0.0.1", "", "localhost", "not an address"}) {
        EXPECT_FALSE(is_loopback_peer(address)) << address;
    }
}

struct PeerCase {
    const char* peer;
    const char* local;
    bool same_host;
};

TEST(SameHostPeer, LoopbackOrTheConnectionsOwnAddress) {
    const PeerCase cases[] = {
        // Loopback peers, whatever address they reached.
        {"127.0.0.1", "127.0.0.1", true},
        {"127.0.0.1", "10.0.0.5", true},
        {"127.9.9.9", "127.0.0.1", true},
        {"::1", "::1", true},
        {"::ffff:127.0.0.1", "::ffff:127.0.0.1", true},
        // A process of this host (or a pod on the host network) connecting to one of the host's addresses.
        {"10.0.0.5", "10.0.0.5", true},
        {"169.254.169.254", "169.254.169.254", true},
        {"::ffff:10.0.0.5", "10.0.0.5", true},
        {"10.0.0.5", "::ffff:10.0.0.5", true},
        {"2001:db8::5", "2001:db8::5", true},
        // Another host, or a pod with a network namespace of its own (the node's bridge forwards to it).
        {"10.0.0.6", "10.0.0.5", false},
        {"10.244.1.7", "169.254.169.254", false},
        {"10.244.1.7", "10.0.0.5", false},
        {"::ffff:10.0.0.6", "10.0.0.5", false},
        {"2001:db8::6", "2001:db8::5", false},
        {"fe80::1", "fe80::2", false},
        // CVE-2020-8558: a remote peer DNATed to a loopback listener.
        {"10.0.0.6", "127.0.0.1", false},
        // Nonsense never passes.
        {"0.0.0.0", "0.0.0.0", false},
        {"::", "::", false},
        {"", "", false},
        {"not an address", "not an address", false},
        {"10.0.0.5", "", false},
    };
    for (const auto& c : cases) {
        EXPECT_EQ(is_same_host_peer(c.peer, c.local), c.same_host) << c.peer << " -> " << c.local;
    }
}

TEST_F(HttpServerTest, LoopbackPeersOnlyStillServesLoopbackClients) {
    auto limits = test_limits();
    limits.same_host_peers_only = true;
    start(limits);
    Client client(port_);
    ASSERT_TRUE(client.send(get("/x")));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
}

}  // namespace
}  // namespace rad::surfaces
