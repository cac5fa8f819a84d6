// The front executable's command-line recognition: exactly the fast path's shapes are answered there;
// everything else goes to the full program, whose parser reports what is wrong.
#include "daemon/fast_path.hpp"

#include "daemon/control_protocol.hpp"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace rad::daemon {
namespace {

std::optional<FastPathOptions> parse(const std::vector<const char*>& args) {
    std::vector<const char*> argv{"rolesanywhere-agent"};
    argv.insert(argv.end(), args.begin(), args.end());
    return parse_fast_path_arguments(static_cast<int>(argv.size()), argv.data());
}

TEST(FastPathArguments, RecognisesEveryFlagInBothSpellings) {
    auto options = parse({"credential-process", "--profile", "web", "--config=/etc/x.toml", "--socket",
                          "/run/a.sock", "--min-lifetime=1200", "--timeout", "2.5", "--no-fallback"});
    ASSERT_TRUE(options);
    EXPECT_EQ(options->profile, "web");
    EXPECT_EQ(options->config_path, "/etc/x.toml");
    EXPECT_EQ(options->socket_path, "/run/a.sock");
    EXPECT_EQ(options->min_lifetime_seconds, 1200);
    EXPECT_DOUBLE_EQ(options->timeout_seconds, 2.5);
    EXPECT_TRUE(options->no_fallback);

    auto minimal = parse({"credential-process", "--profile=db"});
    ASSERT_TRUE(minimal);
    EXPECT_EQ(minimal->profile, "db");
    EXPECT_EQ(minimal->min_lifetime_seconds, -1);
    EXPECT_DOUBLE_EQ(minimal->timeout_seconds, 20);
    EXPECT_FALSE(minimal->no_fallback);
}

TEST(FastPathArguments, LeavesEverythingElseToTheFullProgram) {
    const std::vector<std::vector<const char*>> others{
        {},
        {"serve", "--config", "/etc/x.toml"},
        {"credential-process"},  // no --profile: signs from flags
        {"credential-process", "--certificate", "c.pem", "--profile", "web"},  // CLI refuses the mix
        {"credential-process", "--profile", "web", "--debug"},       // traces are the full program's
        {"credential-process", "--profile"},                         // value missing
        {"credential-process", "--profile", "--socket"},             // a flag where the value should be
        {"credential-process", "--profile=", "x"},                   // empty value
        {"credential-process", "--profile", "a", "--profile", "b"},  // repeated
        {"credential-process", "--profile", "a", "--no-fallback", "--no-fallback"},
        {"credential-process", "--profile", "a", "--no-fallback=true"},
        {"credential-process", "--profile", "a", "--min-lifetime", "ten"},
        {"credential-process", "--profile", "a", "--min-lifetime", "43201"},
        {"credential-process", "--profile", "a", "--min-lifetime", "-5"},
        {"credential-process", "--profile", "a", "--timeout", "0"},
        {"credential-process", "--profile", "a", "--timeout", "nan"},
        {"credential-process", "--profile", "a", "extra"},
        {"Credential-Process", "--profile", "a"},
    };
    for (const auto& args : others) {
        std::string shown;
        for (const char* a : args) {
            shown += std::string(a) + " ";
        }
        EXPECT_FALSE(parse(args)) << shown;
    }
}

TEST(FastPath, NoAgentIsSettledOnlyWithNoFallback) {
    const auto dir = std::filesystem::temp_directory_path() / ("rad-fast-path-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    FastPathOptions options;
    options.profile = "web";
    options.socket_path = (dir / "absent.sock").string();
    options.timeout_seconds = 1;

    auto fallback = consult_agent(options);
    ASSERT_FALSE(fallback.reply);
    EXPECT_EQ(fallback.reply.error().code, Errc::agent_unavailable);
    EXPECT_FALSE(settled(options, fallback));  // the caller signs by itself
    EXPECT_FALSE(fallback.config_read);        // --socket given: the configuration was not needed

    options.no_fallback = true;
    auto refused = consult_agent(options);
    ASSERT_FALSE(refused.reply);
    EXPECT_TRUE(settled(options, refused));
    EXPECT_NE(refused.reply.error().message.find("no agent answers on " + options.socket_path),
              std::string::npos);
    std::filesystem::remove_all(dir);
}

TEST(FastPath, AConfigurationThatDoesNotLoadIsTheAnswer) {
    const auto dir =
        std::filesystem::temp_directory_path() / ("rad-fast-path-c-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto path = dir / "agent.toml";
    {
        std::FILE* f = std::fopen(path.c_str(), "w");
        ASSERT_NE(f, nullptr);
        std::fputs("[agent]\nsocket_path = 7\n", f);
        std::fclose(f);
    }
    std::filesystem::permissions(path,
                                 std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    FastPathOptions options;
    options.profile = "web";
    options.config_path = path.string();
    auto c = consult_agent(options);
    std::filesystem::remove_all(dir);
    ASSERT_FALSE(c.reply);
    EXPECT_EQ(c.reply.error().code, Errc::config_invalid);
    EXPECT_NE(c.reply.error().message.find("agent.toml:2"), std::string::npos) << c.reply.error().message;
    EXPECT_TRUE(settled(options, c));  // no guess at a default socket, no signing from a broken file
}

TEST(FastPath, BadOptionsAreUsageErrorsAndFinal) {
    FastPathOptions options;
    options.profile = "web";
    options.socket_path = "/nonexistent/agent.sock";
    options.min_lifetime_seconds = 50000;
    auto c = consult_agent(options);
    ASSERT_FALSE(c.reply);
    EXPECT_EQ(c.reply.error().code, Errc::usage);
    EXPECT_TRUE(settled(options, c));
}

TEST(FastPath, AnAgentsOwnErrorIsFinal) {
    // A listener that answers with an error line: the agent's upstream is down, so the client must not sign.
    const auto dir =
        std::filesystem::temp_directory_path() / ("rad-fast-path-e-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto path = dir / "agent.sock";
    const int listener = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(listener, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(listener, 1), 0);
    std::thread agent([listener] {
        const int peer = ::accept(listener, nullptr, nullptr);
        char buffer[512];
        const ssize_t got = ::read(peer, buffer, sizeof buffer);
        EXPECT_GT(got, 0);
        const std::string reply = format_error_reply(make_error(Errc::upstream_throttled, "throttled"));
        EXPECT_EQ(::write(peer, reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
        ::close(peer);
    });
    FastPathOptions options;
    options.profile = "web";
    options.socket_path = path.string();
    options.timeout_seconds = 5;
    auto c = consult_agent(options);
    agent.join();
    ::close(listener);
    std::filesystem::remove_all(dir);
    ASSERT_FALSE(c.reply);
    EXPECT_EQ(c.reply.error().code, Errc::upstream_throttled);
    EXPECT_TRUE(settled(options, c));
}

}  // namespace
}  // namespace rad::daemon
