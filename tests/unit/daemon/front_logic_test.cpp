// The front executable's decisions (daemon/front/front_logic.hpp) held to the full program's own code: every
// command line the front takes means what parse_fast_path_arguments makes of it, every socket path its scan
// finds is the one config::parse_config reads, its request is one the agent parses, its identity is
// config::file_identity, and every reply maps to the exit code and words of the full program.
#include "daemon/front/front_logic.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "daemon/control_protocol.hpp"
#include "daemon/fast_path.hpp"

namespace rad::front {
namespace {

std::string str(Text t) {
    return std::string(t.data, t.size);
}

struct Parsed {
    bool front = false;
    Options front_options;
    std::optional<daemon::FastPathOptions> full;
};

Parsed parse(const std::vector<const char*>& args) {
    std::vector<const char*> argv{"rolesanywhere-agent"};
    argv.insert(argv.end(), args.begin(), args.end());
    Parsed p;
    p.front = parse_arguments(static_cast<int>(argv.size()), argv.data(), p.front_options);
    p.full = daemon::parse_fast_path_arguments(static_cast<int>(argv.size()), argv.data());
    return p;
}

// expect_same_meaning: what the front takes, the full program takes with the same values.
void expect_same_meaning(const Parsed& p, const std::string& what) {
    if (!p.front) {
        return;
    }
    ASSERT_TRUE(p.full) << what << ": the front took a command line the full program refuses";
    EXPECT_EQ(str(p.front_options.profile), p.full->profile) << what;
    EXPECT_EQ(str(p.front_options.config), p.full->config_path) << what;
    EXPECT_EQ(str(p.front_options.socket), p.full->socket_path) << what;
    EXPECT_EQ(p.front_options.no_fallback, p.full->no_fallback) << what;
    EXPECT_EQ(p.front_options.min_lifetime, p.full->min_lifetime_seconds) << what;
    EXPECT_EQ(p.front_options.timeout_ms, std::llround(p.full->timeout_seconds * 1000)) << what;
}

TEST(FrontArguments, TakesTheFastPathShapesWithTheFullProgramsMeaning) {
    const std::vector<std::vector<const char*>> taken = {
        {"credential-process", "--profile", "web"},
        {"credential-process", "--profile=db"},
        {"credential-process", "--profile", "web", "--config=/etc/x.toml", "--socket", "/run/a.sock",
         "--min-lifetime=1200", "--timeout", "2.5", "--no-fallback"},
        {"credential-process", "--no-fallback", "--timeout=0.29", "--profile", "a.b_c-1"},
        {"credential-process", "--profile", "web", "--timeout", "20", "--min-lifetime", "0"},
        {"credential-process", "--profile", "web", "--timeout", "0.001", "--min-lifetime", "43200"},
        {"credential-process", "--profile", "web", "--timeout", "999999999.999"},
    };
    for (const auto& args : taken) {
        const auto p = parse(args);
        EXPECT_TRUE(p.front) << args.size();
        expect_same_meaning(p, std::to_string(args.size()));
    }
    const auto p = parse({"credential-process", "--profile", "web", "--timeout", "2.5"});
    EXPECT_EQ(p.front_options.timeout_ms, 2500);
    EXPECT_EQ(p.front_options.min_lifetime, -1);
}

TEST(FrontArguments, LeavesEverythingElseToTheFullProgram) {
    const std::vector<std::vector<const char*>> left = {
        {},
        {"serve", "--config", "/etc/x.toml"},
        {"credential-process"},
        {"credential-process", "--certificate", "c.pem", "--profile", "web"},
        {"credential-process", "--profile", "web", "--debug"},
        {"credential-process", "--profile"},
        {"credential-process", "--profile", "--socket"},
        {"credential-process", "--profile=", "x"},
        {"credential-process", "--profile", "a", "--profile", "b"},
        {"credential-process", "--profile", "a", "--no-fallback", "--no-fallback"},
        {"credential-process", "--profile", "a", "--no-fallback=true"},
        {"credential-process", "--profile", "a", "--min-lifetime", "ten"},
        {"credential-process", "--profile", "a", "--min-lifetime", "43201"},
        {"credential-process", "--profile", "a", "--min-lifetime", "-5"},
        {"credential-process", "--profile", "a", "--min-lifetime", "00000001"},
        {"credential-process", "--profile", "a", "--timeout", "0"},
        {"credential-process", "--profile", "a", "--timeout", "0.000"},
        {"credential-process", "--profile", "a", "--timeout", "nan"},
        {"credential-process", "--profile", "a", "--timeout", "1e3"},
        {"credential-process", "--profile", "a", "--timeout", " 5"},
        {"credential-process", "--profile", "a", "--timeout", "0.0005"},
        {"credential-process", "--profile", "a", "--timeout", "1."},
        {"credential-process", "--profile", "a", "--timeout", ".5"},
        {"credential-process", "--profile", "a", "--timeout", "1000000000"},
        {"credential-process", "--profile", "a", "extra"},
        {"credential-process", "--profile", "we b"},   // not a name the protocol carries
        {"credential-process", "--profile", "web\n"},  // nor this
        {"Credential-Process", "--profile", "a"},
    };
    for (const auto& args : left) {
        const auto p = parse(args);
        EXPECT_FALSE(p.front) << (args.empty() ? "(none)" : args.back());
        expect_same_meaning(p, "left");
    }
}

// ---- the configuration scan -------------------------------------------------------------------------------

const char* const kProfile = R"([profiles.web]
certificate = "/etc/ra/web.pem"
private_key = "/etc/ra/web.key"
trust_anchor_arn = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ta"
profile_arn = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p"
role_arn = "arn:aws:iam::123456789012:role/web"
)";

Scan scan(const std::string& toml, std::string& path) {
    Text found;
    const Scan result = scan_socket_path(Text{toml.data(), toml.size()}, found);
    path = result == Scan::found ? str(found) : std::string(kDefaultSocketPath);
    return result;
}

// expect_scan checks the scan's verdict and, when it is sure, that the full parser reads the same socket.
void expect_scan(const std::string& toml, Scan expected, const std::string& socket = kDefaultSocketPath) {
    std::string path;
    const Scan result = scan(toml, path);
    EXPECT_EQ(static_cast<int>(result), static_cast<int>(expected)) << toml;
    if (result == Scan::unsure) {
        return;
    }
    EXPECT_EQ(path, socket) << toml;
    const config::ConfigEnvironment no_files{std::nullopt, false};
    auto full = config::parse_config(toml, "agent.toml", no_files);
    ASSERT_TRUE(full) << full.error().message << "\n" << toml;
    EXPECT_EQ(full->agent.socket_path.string(), path) << toml;
}

TEST(FrontConfigScan, ReadsTheSocketOfTheFilesPeopleWrite) {
    expect_scan(kProfile, Scan::not_set);
    expect_scan(std::string("[agent]\nsocket_path = \"/run/ra/a.sock\"\n") + kProfile, Scan::found,
                "/run/ra/a.sock");
    expect_scan(std::string("# the agent\n[agent]  # global\n  socket_path='/run/ra/b.sock' # fast path\n"
                            "log_level = \"info\"\nallowed_uids = [\n  1000, # alice\n  1001,\n]\n\n") +
                    kProfile,
                Scan::found, "/run/ra/b.sock");
    expect_scan(
        std::string("[agent]\r\nsocket_mode = \"0660\"\r\nsocket_path = \"/run/c.sock\"\r\n") + kProfile,
        Scan::found, "/run/c.sock");
    // socket_path outside [agent] is not the agent's (the full parser refuses it as an unknown key, so the
    // comparison with it is skipped by making it a profile's key only where that parses).
    std::string path;
    EXPECT_EQ(scan(std::string(kProfile) + "[agent]\nsocket_path = \"/run/d.sock\"\n", path), Scan::found);
    EXPECT_EQ(path, "/run/d.sock");
    EXPECT_EQ(scan("[profiles.x]\nsocket_path = \"/run/e.sock\"\n", path), Scan::not_set);
    EXPECT_EQ(scan("[agent.x]\nsocket_path = \"/run/e.sock\"\n", path), Scan::not_set);
    EXPECT_EQ(
        scan("[agent]\nhealth_listen = \"127.0.0.1:1\"\n[[profiles.x.y]]\nsocket_path = \"/e\"\n", path),
        Scan::not_set);
    EXPECT_EQ(scan("[agent]\nx = [\"[agent]\", 'socket_path = \"/f\"']\n", path), Scan::not_set);
    EXPECT_EQ(scan("[agent]\nx = { a = \"]\", b = [1, 2] }\nsocket_path = \"/g\"\n", path), Scan::found);
    EXPECT_EQ(path, "/g");
    EXPECT_EQ(scan("", path), Scan::not_set);
}

TEST(FrontConfigScan, IsUnsureOfEverythingItDoesNotReadWithCertainty) {
    for (const char* toml : {
             "[agent]\nsocket_path = \"/a\"\nsocket_path = \"/b\"\n",            // repeated key
             "[agent]\nsocket_path = \"/a\"\n[agent]\n",                         // repeated table
             "[[agent]]\nsocket_path = \"/a\"\n",                                // array of tables
             "agent.socket_path = \"/a\"\n",                                     // dotted key at the top
             "agent = { socket_path = \"/a\" }\n",                               // inline table
             "[\"agent\"]\nsocket_path = \"/a\"\n",                              // quoted header
             "[agent]\n\"socket_path\" = \"/a\"\n",                              // quoted key
             "[agent]\nsocket_path = \"/a\\u0062\"\n",                           // escapes
             "[agent]\nsocket_path = \"relative.sock\"\n",                       // not absolute
             "[agent]\nsocket_path = \"\"\n",                                    // no socket at all
             "[agent]\nsocket_path = \"/a\" x\n",                                // junk after the value
             "[agent]\nsocket_path = \"/a\nb\"\n",                               // string across a line
             "[agent]\nsocket_path.x = \"/a\"\n",                                // a table under the key
             "[agent]\nlog_level = \"\"\"\ninfo\"\"\"\nsocket_path = \"/a\"\n",  // multi-line string
             "[agent]\nlog_level = 'x\n",                                        // unterminated string
             "[agent]\nx = [1, 2\n",                                             // unterminated array
             "[agent]\nx = ]\n",                                                 // stray bracket
             "[agent]\nsocket_path = \"/h\xc3\xa9\"\n",                          // non-ASCII
             "[agent]\nx = \"\xc3\xa9\"\nsocket_path = \"/a\"\n",                // non-ASCII in another value
             "[agent\nsocket_path = \"/a\"\n",                                   // broken header
             "[agent] x\nsocket_path = \"/a\"\n",                                // junk after a header
             "= 1\n",                                                            // no key
             "[agent]\nsocket_path \"/a\"\n",                                    // no '='
             "[agent]\r socket_path = \"/a\"\n",                                 // a lone CR
         }) {
        std::string path;
        EXPECT_EQ(static_cast<int>(scan(toml, path)), static_cast<int>(Scan::unsure)) << toml;
    }
    std::string long_path = "[agent]\nsocket_path = \"/" + std::string(kMaxSocketPath, 'a') + "\"\n";
    std::string path;
    EXPECT_EQ(static_cast<int>(scan(long_path, path)), static_cast<int>(Scan::unsure));
}

TEST(FrontConfigScan, AgreesWithTheFullParserOnTheExampleConfiguration) {
    std::ifstream in(std::filesystem::path(RAD_SOURCE_DIR) / "config" / "example.toml", std::ios::binary);
    ASSERT_TRUE(in);
    const std::string toml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string path;
    const Scan result = scan(toml, path);
    ASSERT_NE(static_cast<int>(result), static_cast<int>(Scan::unsure));
    const config::ConfigEnvironment no_files{std::nullopt, false};
    auto full = config::parse_config(toml, "example.toml", no_files);
    ASSERT_TRUE(full) << full.error().message;
    EXPECT_EQ(full->agent.socket_path.string(), path);
}

// ---- identity, request, reply -----------------------------------------------------------------------------

TEST(FrontIdentity, IsTheConfigurationsFileIdentity) {
    const auto file =
        std::filesystem::temp_directory_path() / ("front_identity_" + std::to_string(::getpid()));
    {
        std::ofstream out(file);
        out << "[agent]\n";
    }
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    struct statx stx {};
    ASSERT_EQ(::statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx), 0);
    const FileIdentity id = identity_of(stx);
    char buffer[160];
    Writer w{buffer, sizeof buffer};
    ASSERT_TRUE(format_identity(id, w));
    EXPECT_EQ(std::string(buffer, w.size), config::file_identity(fd));
    ::close(fd);
    std::filesystem::remove(file);

    FileIdentity before_1970 = id;
    before_1970.mtime_sec = -1;
    Writer w2{buffer, sizeof buffer};
    EXPECT_FALSE(format_identity(before_1970, w2));
    char tiny[8];
    Writer w3{tiny, sizeof tiny};
    EXPECT_FALSE(format_identity(id, w3));
}

TEST(FrontRequest, IsWhatTheAgentParses) {
    Options options;
    options.profile = text("web-1");
    for (int min : {-1, 0, 900, 43200}) {
        options.min_lifetime = min;
        for (const char* identity : {"", "8:1:42:640:1795000000.5:1795000001.999999999"}) {
            char buffer[512];
            Writer w{buffer, sizeof buffer};
            ASSERT_TRUE(format_request(options, text(identity), w));
            auto parsed = daemon::parse_control_request(std::string_view(buffer, w.size));
            ASSERT_TRUE(parsed) << std::string(buffer, w.size);
            EXPECT_EQ(parsed->profile, "web-1");
            EXPECT_EQ(parsed->min_seconds, min);
            EXPECT_EQ(parsed->config_identity, identity);
        }
    }
    char tiny[10];
    Writer w{tiny, sizeof tiny};
    EXPECT_FALSE(format_request(options, Text{}, w));
}

TEST(FrontReply, MapsEveryAgentErrorToTheFullProgramsExitCode) {
    for (int i = static_cast<int>(Errc::usage); i <= static_cast<int>(Errc::internal); ++i) {
        const auto code = static_cast<Errc>(i);
        const std::string line = daemon::format_error_reply(make_error(code, "what went wrong"));
        for (bool no_fallback : {false, true}) {
            const Reply reply = classify_reply(Text{line.data(), line.size()}, no_fallback);
            if (code == Errc::agent_unavailable && !no_fallback) {
                EXPECT_EQ(static_cast<int>(reply.kind), static_cast<int>(ReplyKind::ask_core));
                continue;
            }
            EXPECT_EQ(static_cast<int>(reply.kind), static_cast<int>(ReplyKind::final_error)) << line;
            EXPECT_EQ(reply.exit_code, exit_code(code)) << line;
            // The full program prints "agent: " + the message of parse_control_reply's error.
            auto full = daemon::parse_control_reply(line);
            ASSERT_FALSE(full);
            EXPECT_EQ("agent: " + str(reply.payload), full.error().message);
        }
    }
    const std::string unknown = "error no_such_class it broke\n";
    EXPECT_EQ(classify_reply(Text{unknown.data(), unknown.size()}, false).exit_code,
              exit_code(daemon::parse_control_reply(unknown).error().code));
}

TEST(FrontReply, CredentialsAreThePayloadAndAnythingOddGoesToTheFullProgram) {
    const Secret ok = daemon::format_ok_reply(R"({"Version":1})");
    const Reply reply = classify_reply(Text{ok.reveal().data(), ok.reveal().size()}, false);
    EXPECT_EQ(static_cast<int>(reply.kind), static_cast<int>(ReplyKind::credentials));
    EXPECT_EQ(str(reply.payload), R"({"Version":1})");
    for (std::string_view odd : {std::string_view(daemon::kOtherConfigReply), std::string_view("ok {}"),
                                 std::string_view(""), std::string_view("\n"), std::string_view("hello\n")}) {
        EXPECT_EQ(static_cast<int>(classify_reply(Text{odd.data(), odd.size()}, true).kind),
                  static_cast<int>(ReplyKind::ask_core))
            << odd;
    }
}

TEST(FrontDefaults, AreTheConfigurationsDefaults) {
    EXPECT_EQ(std::string(kDefaultConfigPath), config::kDefaultConfigPath);
    EXPECT_EQ(std::string(kDefaultSocketPath), config::AgentSettings{}.socket_path.string());
    EXPECT_EQ(kMaxReply, daemon::kMaxControlLine);
}

}  // namespace
}  // namespace rad::front
