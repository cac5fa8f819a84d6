// The agent's Unix socket server: who may use it (a table), and the socket's life on disk — a stale socket is
// replaced, a live one is not taken over, and stop() removes only the socket this server bound.
#include "daemon/surfaces/control_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/unique_fd.hpp"
#include "daemon/fastpath/control_client.hpp"

namespace rad::surfaces {
namespace {

TEST(PeerAllowed, Table) {
    const uid_t self = 990;
    const AccessList access{{1000}, {2000}};
    const struct {
        const char* what;
        PeerCredentials peer;
        bool allowed;
    } rows[] = {
        {"root", {0, 0, 1, {}}, true},
        {"the agent's own user", {self, 5000, 1, {}}, true},
        {"a listed uid", {1000, 5000, 1, {}}, true},
        {"a listed primary group", {1001, 2000, 1, {}}, true},
        {"a listed supplementary group", {1002, 5000, 1, {3000, 2000}}, true},
        {"anyone else", {1003, 5000, 1, {3000}}, false},
        {"nobody", {65534, 65534, 1, {}}, false},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(peer_allowed(row.peer, self, access), row.allowed) << row.what;
    }
    EXPECT_FALSE(peer_allowed({1000, 2000, 1, {2000}}, self, AccessList{}));
}

TEST(MayAskForRefresh, OnlyRootAndTheAgentsOwnUser) {
    EXPECT_TRUE(may_ask_for_refresh({0, 0, 1, {}}, 990));
    EXPECT_TRUE(may_ask_for_refresh({990, 990, 1, {}}, 990));
    EXPECT_FALSE(may_ask_for_refresh({1000, 0, 1, {0}}, 990));
}

class ControlServerTest : public ::testing::Test {
protected:
    void SetUp() override {
        char pattern[] = "/tmp/rad-control-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern), nullptr);
        dir_ = pattern;
        path_ = dir_ / "agent.sock";
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    static sockaddr_un unix_address(const std::filesystem::path& path) {
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strcpy(address.sun_path, path.c_str());
        return address;
    }

    static UniqueFd listening_socket(const std::filesystem::path& path, int backlog = 4) {
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        const sockaddr_un address = unix_address(path);
        EXPECT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
        EXPECT_EQ(::listen(fd.get(), backlog), 0);
        return fd;
    }

    boost::asio::io_context io_;
    std::filesystem::path dir_;
    std::filesystem::path path_;
};

TEST_F(ControlServerTest, BindsWithTheConfiguredModeAndRemovesItsSocketAtStop) {
    ControlServer server(io_, [](std::string_view, ControlReply) {});
    ASSERT_TRUE(server.listen({path_, 0640, ""}));
    struct stat st {};
    ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0640u);
    server.stop();
    EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(ControlServerTest, AStaleSocketIsReplacedALiveOneIsNot) {
    { UniqueFd stale = listening_socket(path_); }  // closed: nobody accepts there any more
    ControlServer replacing(io_, [](std::string_view, ControlReply) {});
    EXPECT_TRUE(replacing.listen({path_, 0600, ""}));
    replacing.stop();

    UniqueFd live = listening_socket(path_);
    ControlServer second(io_, [](std::string_view, ControlReply) {});
    auto refused = second.listen({path_, 0600, ""});
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, Errc::config_invalid);
    EXPECT_NE(refused.error().message.find("another agent is listening"), std::string::npos);
    second.stop();
    EXPECT_TRUE(std::filesystem::exists(path_)) << "a server removed a socket it did not bind";
}

TEST_F(ControlServerTest, AStaleSocketThisUserMayNotRemoveIsNamedNotAnAddressInUse) {
    // What systemd's socket unit leaves in root's /run/rolesanywhere-agent, met by the agent's own user.
    if (::geteuid() != 0) {
        GTEST_SKIP() << "needs root, to meet a root-owned stale socket as another user";
    }
    ::chmod(dir_.c_str(), 0755);
    { UniqueFd stale = listening_socket(path_); }
    ::chmod(path_.c_str(), 0666);
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::close(pipe_fds[0]);
        std::string message = "ok";
        if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) {
            message = "setresuid failed";
        } else {
            boost::asio::io_context io;
            ControlServer server(io, [](std::string_view, ControlReply) {});
            if (auto r = server.listen({path_, 0600, ""}); !r) {
                message = r.error().message;
            }
        }
        (void)!::write(pipe_fds[1], message.data(), message.size());
        ::_exit(0);
    }
    ::close(pipe_fds[1]);
    std::string message;
    char buffer[512];
    for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) {
        message.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(pipe_fds[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_NE(message.find(path_.string() + ": a stale socket"), std::string::npos) << message;
    EXPECT_NE(message.find("cannot be removed"), std::string::npos) << message;
    EXPECT_EQ(message.find("in use"), std::string::npos) << message;
    EXPECT_TRUE(std::filesystem::exists(path_));
}

TEST_F(ControlServerTest, AnActivatedSocketStaysAtStop) {
    UniqueFd passed = listening_socket(path_);
    ControlServer server(io_, [](std::string_view, ControlReply) {});
    ASSERT_TRUE(server.adopt(passed.release()));
    server.stop();
    EXPECT_TRUE(std::filesystem::exists(path_));
}

TEST_F(ControlServerTest, SomethingElseAtThePathIsRefused) {
    ASSERT_TRUE(std::filesystem::create_directories(path_));
    ControlServer server(io_, [](std::string_view, ControlReply) {});
    auto refused = server.listen({path_, 0600, ""});
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message.find("is not a socket"), std::string::npos);
}

// A burst of clients can fill the socket's backlog while the agent's loop is busy. A client then waits for
// room until its deadline, and a backlog that stays full is a timeout: never "no agent", which would send
// every client of the burst to sign by itself.
TEST_F(ControlServerTest, AClientWaitsForRoomInAFullBacklog) {
    const UniqueFd listener = listening_socket(path_, 0);
    ASSERT_FALSE(HasFailure());
    const sockaddr_un address = unix_address(path_);
    std::vector<UniqueFd> queued;  // connected, never accepted
    for (;;) {
        UniqueFd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (::connect(client.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
            ASSERT_EQ(errno, EAGAIN) << std::strerror(errno);
            break;
        }
        queued.push_back(std::move(client));
        ASSERT_LT(queued.size(), 64u) << "the backlog never filled";
    }
    auto reply =
        fastpath::send_control_request(path_, control::ControlRequest{}, std::chrono::milliseconds(100));
    ASSERT_FALSE(reply);
    EXPECT_EQ(reply.error().code, Errc::upstream_timeout) << reply.error().message;
    EXPECT_NE(reply.error().message.find("backlog is full"), std::string::npos) << reply.error().message;
}

}  // namespace
}  // namespace rad::surfaces
