// The fast path: its one command-line parser (both executables use it), and its exchange with the agent.
#include "daemon/fastpath/fast_path.hpp"

#include "daemon/control/control_protocol.hpp"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <poll.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace rad::fastpath {
namespace {

// FakeAgent answers every connection to a Unix socket with `reply` and records the request lines, until it
// is destroyed.
class FakeAgent {
public:
    FakeAgent(const std::filesystem::path& path, std::string_view reply) : path_(path), reply_(reply) {
        listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
        EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
        EXPECT_EQ(::listen(listener_, 4), 0);
        EXPECT_EQ(::pipe(stop_), 0);
        thread_ = std::thread([this] { serve(); });
    }
    ~FakeAgent() {
        EXPECT_EQ(::write(stop_[1], "x", 1), 1);
        thread_.join();
        ::close(listener_);
        ::close(stop_[0]);
        ::close(stop_[1]);
        std::filesystem::remove(path_);
    }
    // requests is what was asked so far (call it once the client is done).
    std::vector<std::string> requests() {
        const std::lock_guard lock(mutex_);
        return requests_;
    }

private:
    void serve() {
        for (;;) {
            pollfd fds[2] = {{listener_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
            if (::poll(fds, 2, -1) < 0 || fds[1].revents != 0) {
                return;
            }
            const int peer = ::accept(listener_, nullptr, nullptr);
            std::string line;
            char c = 0;
            while (::read(peer, &c, 1) == 1 && c != '\n') {
                line += c;
            }
            {
                const std::lock_guard lock(mutex_);
                requests_.push_back(line);
            }
            EXPECT_EQ(::write(peer, reply_.data(), reply_.size()), static_cast<ssize_t>(reply_.size()));
            ::close(peer);
        }
    }

    std::filesystem::path path_;
    std::string reply_;
    int listener_ = -1;
    int stop_[2] = {-1, -1};
    std::mutex mutex_;
    std::vector<std::string> requests_;
    std::thread thread_;
};

// ConfigDirectory is a temporary directory with an agent configuration file in it.
class ConfigDirectory : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ =
            std::filesystem::temp_directory_path() /
            ("rad-fast-path-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
             "-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::filesystem::path write_config(const std::string& text, mode_t mode = 0600) {
        const auto path = dir_ / "agent.toml";
        std::FILE* f = std::fopen(path.c_str(), "w");
        EXPECT_NE(f, nullptr);
        std::fputs(text.c_str(), f);
        std::fclose(f);
        ::chmod(path.c_str(), mode);
        return path;
    }
    FastPathOptions options_for(const std::filesystem::path& config) const {
        FastPathOptions options;
        options.profile = "web";
        options.config_path = config.string();
        options.timeout_seconds = 5;
        return options;
    }
    std::string with_typo() const {
        return "[agent]\nsocket_path = \"" + (dir_ / "agent.sock").string() +
               "\"\n\n[profiles.web]\nsesion_duration = 900\n";
    }

    std::filesystem::path dir_;
};

std::optional<Result<FastPathOptions>> parse(const std::vector<const char*>& args) {
    std::vector<const char*> argv{"rolesanywhere-agent"};
    argv.insert(argv.end(), args.begin(), args.end());
    return parse_fast_path_arguments(static_cast<int>(argv.size()), argv.data());
}

std::string shown(const std::vector<const char*>& args) {
    std::string text;
    for (const char* a : args) {
        text += std::string(a) + " ";
    }
    return text;
}

TEST(FastPathArguments, RecognisesEveryFlagInBothSpellings) {
    auto options =
        parse({"credential-process", "--profile", "web", "--config=/etc/x.toml", "--socket", "/run/a.sock",
               "--min-lifetime=1200", "--timeout", "2.5", "--no-fallback", "--debug"});
    ASSERT_TRUE(options && *options);
    const FastPathOptions& o = **options;
    EXPECT_EQ(o.profile, "web");
    EXPECT_EQ(o.config_path, "/etc/x.toml");
    EXPECT_EQ(o.socket_path, "/run/a.sock");
    EXPECT_EQ(o.min_lifetime_seconds, 1200);
    EXPECT_DOUBLE_EQ(o.timeout_seconds, 2.5);
    EXPECT_TRUE(o.no_fallback);
    EXPECT_TRUE(o.debug);

    auto minimal = parse({"credential-process", "--profile=db"});
    ASSERT_TRUE(minimal && *minimal);
    EXPECT_EQ((*minimal)->profile, "db");
    EXPECT_EQ((*minimal)->min_lifetime_seconds, -1);
    EXPECT_DOUBLE_EQ((*minimal)->timeout_seconds, 20);
    EXPECT_FALSE((*minimal)->no_fallback);
    EXPECT_FALSE((*minimal)->debug);

    auto anywhere = parse({"credential-process", "--socket=/run/a.sock", "--profile", "web", "--min-lifetime",
                           "0", "--timeout=1e1"});
    ASSERT_TRUE(anywhere && *anywhere);
    EXPECT_EQ((*anywhere)->min_lifetime_seconds, 0);
    EXPECT_DOUBLE_EQ((*anywhere)->timeout_seconds, 10);
}

TEST(FastPathArguments, OtherCommandLinesAreLeftToTheFullParser) {
    const std::vector<std::vector<const char*>> others{
        {},
        {"serve", "--config", "/etc/x.toml"},
        {"status", "--profile", "web"},
        {"credential-process"},                                // no --profile: signs from flags
        {"credential-process", "--certificate", "c.pem"},      // idem
        {"credential-process", "--socket", "/run/a.sock"},     // CLI11 says --socket needs --profile
        {"credential-process", "--profile-arn=arn:x"},         // not --profile
        {"credential-process", "--profile", "web", "--help"},  // help is CLI11's
        {"credential-process", "-h", "--profile", "web"},
        {"Credential-Process", "--profile", "a"},
    };
    for (const auto& args : others) {
        EXPECT_FALSE(parse(args)) << shown(args);
    }
}

TEST(FastPathArguments, MistakesAreUsageErrorsNamingTheFlag) {
    const std::vector<std::pair<std::vector<const char*>, std::string>> cases{
        {{"credential-process", "--certificate", "c.pem", "--profile", "web"},
         "--certificate does not apply"},
        {{"credential-process", "--profile", "web", "--region", "us-east-1"}, "--region does not apply"},
        {{"credential-process", "--profile"}, "--profile needs a value"},
        {{"credential-process", "--profile", "--socket"}, "--profile needs a value"},
        {{"credential-process", "--profile="}, "--profile needs a profile name"},
        {{"credential-process", "--profile=", "x"}, "--profile needs a profile name"},
        {{"credential-process", "--profile", "a", "--profile", "b"}, "--profile is given more than once"},
        {{"credential-process", "--profile", "a", "--no-fallback", "--no-fallback"},
         "--no-fallback is given"},
        {{"credential-process", "--profile", "a", "--no-fallback=true"}, "--no-fallback takes no value"},
        {{"credential-process", "--profile", "a", "--min-lifetime", "ten"}, "--min-lifetime must be 0-43200"},
        {{"credential-process", "--profile", "a", "--min-lifetime", "43201"},
         "--min-lifetime must be 0-43200"},
        {{"credential-process", "--profile", "a", "--min-lifetime", "-5"}, "--min-lifetime must be 0-43200"},
        {{"credential-process", "--profile", "a", "--timeout", "0"}, "--timeout must be a positive number"},
        {{"credential-process", "--profile", "a", "--timeout", "nan"}, "--timeout must be a positive number"},
        {{"credential-process", "--profile", "a", "extra"}, "unexpected argument \"extra\""},
    };
    for (const auto& [args, words] : cases) {
        const auto parsed = parse(args);
        ASSERT_TRUE(parsed) << shown(args);
        ASSERT_FALSE(*parsed) << shown(args);
        EXPECT_EQ(parsed->error().code, Errc::usage) << shown(args);
        EXPECT_NE(parsed->error().message.find(words), std::string::npos)
            << shown(args) << ": " << parsed->error().message;
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
    // The text cannot tell the socket, and no agent at the default one runs with this file: no signing from a
    // broken file either.
    EXPECT_TRUE(settled(options, c));
}

// An edited configuration with a typo, not yet reloaded: the agent that runs with the version it loaded is
// still asked, on the socket the file names, without the file's identity (it is not the agent's file).
TEST_F(ConfigDirectory, ATypoStillReachesTheAgentOnTheSocketTheFileNames) {
    FakeAgent agent(dir_ / "agent.sock", control::format_ok_reply(R"({"Version":1})").reveal());
    const auto options = options_for(write_config(with_typo()));
    auto c = consult_agent(options);
    ASSERT_TRUE(c.reply) << c.reply.error().message;
    EXPECT_EQ(c.reply->reveal(), R"({"Version":1})");
    EXPECT_TRUE(settled(options, c));
    EXPECT_EQ(agent.requests(), std::vector<std::string>{"credentials web default"});
}

// The agent's clients read its configuration for the socket only: identity paths, "credential:NAME" ones
// (which need the service's $CREDENTIALS_DIRECTORY) and files that are not there included, are no concern
// of theirs; the first real mistake of the file is the one reported, at its line.
TEST_F(ConfigDirectory, ClientsReadTheFileForTheSocketOnly) {
    ::unsetenv("CREDENTIALS_DIRECTORY");
    const std::string text = "[agent]\nsocket_path = \"" + (dir_ / "agent.sock").string() +
                             "\"\n\n[profiles.web]\n"
                             "certificate = \"credential:agent.pem\"\n"
                             "private_key = \"/nonexistent/agent.key\"\n"
                             "trust_anchor_arn = \"a\"\nprofile_arn = \"b\"\nrole_arn = \"c\"\n";
    const auto path = write_config(text);
    const ConfigRead read = read_agent_config(path.string());
    ASSERT_TRUE(read.config) << read.error->message;
    EXPECT_EQ(read.config->agent.socket_path, dir_ / "agent.sock");
    EXPECT_EQ(read.config->profiles.at(0).identity.certificate, "credential:agent.pem");  // as written
    write_config(text + "sesion_duration = 900\n");
    const ConfigRead typo = read_agent_config(path.string());
    ASSERT_TRUE(typo.error);
    EXPECT_EQ(typo.error->message, path.string() + ":10: profiles.web.sesion_duration: unknown key");
    // Signing by itself with the profile needs its files, and says which is missing.
    auto signing = fallback_config(path.string(), "web");
    ASSERT_FALSE(signing);
    EXPECT_EQ(signing.error().message, path.string() +
                                           ":5: profiles.web.certificate: \"credential:agent.pem\" needs "
                                           "$CREDENTIALS_DIRECTORY (systemd LoadCredential=)");
}

// A socket that accepts and closes without a word — systemd's, while the service behind it fails to start —
// is no agent, and no refusal (a refused peer gets a refusal line): the fast path may sign by itself.
TEST_F(ConfigDirectory, ASocketThatClosesWithoutAnAnswerIsNoAgent) {
    const auto socket = dir_ / "agent.sock";
    FakeAgent agent(socket, "");
    FastPathOptions options;
    options.profile = "web";
    options.socket_path = socket.string();
    options.timeout_seconds = 5;
    auto c = consult_agent(options);
    ASSERT_FALSE(c.reply);
    EXPECT_EQ(c.reply.error().code, Errc::agent_unavailable);
    EXPECT_EQ(c.reply.error().message,
              "no agent answered on " + socket.string() +
                  ": the connection was closed without an answer; the service is not "
                  "running or failed to start (systemctl status rolesanywhere-agent)");
    EXPECT_FALSE(settled(options, c));
    EXPECT_EQ(agent.requests(), std::vector<std::string>{"credentials web default"});
}

// With no agent there, the file's error is the answer, even without --no-fallback: nothing to sign with.
TEST_F(ConfigDirectory, ATypoIsTheAnswerWhenNoAgentAnswers) {
    for (const bool no_fallback : {false, true}) {
        auto options = options_for(write_config(with_typo()));
        options.no_fallback = no_fallback;
        auto c = consult_agent(options);
        ASSERT_FALSE(c.reply);
        EXPECT_EQ(c.reply.error().code, Errc::config_invalid);
        EXPECT_EQ(c.reply.error().message,
                  (dir_ / "agent.toml").string() + ":5: profiles.web.sesion_duration: unknown key");
        EXPECT_TRUE(settled(options, c));
    }
}

// A file refused as such (writable by others) names no socket: its error is the answer, no agent is asked.
TEST_F(ConfigDirectory, AFileWritableByOthersNamesNoSocket) {
    FakeAgent agent(dir_ / "agent.sock", control::format_ok_reply(R"({"Version":1})").reveal());
    const auto options = options_for(write_config(with_typo(), 0620));
    auto c = consult_agent(options);
    ASSERT_FALSE(c.reply);
    EXPECT_EQ(c.reply.error().code, Errc::config_invalid);
    EXPECT_NE(c.reply.error().message.find("writable by group or others"), std::string::npos);
    EXPECT_TRUE(agent.requests().empty());
}

// When the text of a file that does not validate cannot tell the socket, the default socket's agent is
// trusted only if its status names this very file.
TEST_F(ConfigDirectory, AnAgentRunsWithTheFileItsStatusNames) {
    const auto socket = dir_ / "agent.sock";
    const auto config = write_config("not = [toml\n");
    EXPECT_FALSE(agent_runs_with(socket, config.string(), std::chrono::seconds(5)));  // no agent
    const std::pair<std::string, bool> answers[] = {
        {R"({"version":"1","config":")" + config.string() + R"(","profiles":[]})", true},
        {R"({"config":")" + (dir_ / "." / "agent.toml").string() + R"("})", true},
        {R"({"config":")" + (dir_ / "other.toml").string() + R"("})", false},
        {R"({"config":"agent.toml"})", false},  // relative to a directory we do not know
        {R"({"config":""})", false},            // an agent run from flags
        {R"({"profiles":[]})", false},
        {R"(["config"])", false},
        {"not json", false},
    };
    for (const auto& [status, runs_with] : answers) {
        FakeAgent agent(socket, control::format_ok_reply(status).reveal());
        EXPECT_EQ(agent_runs_with(socket, config.string(), std::chrono::seconds(5)), runs_with) << status;
        EXPECT_EQ(agent.requests(), std::vector<std::string>{"status"});
    }
    FakeAgent failing(socket, control::format_error_reply(make_error(Errc::internal, "no")));
    EXPECT_FALSE(agent_runs_with(socket, config.string(), std::chrono::seconds(5)));
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
        const std::string reply =
            control::format_error_reply(make_error(Errc::upstream_throttled, "throttled"));
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
}  // namespace rad::fastpath
