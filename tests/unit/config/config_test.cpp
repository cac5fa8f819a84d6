// The configuration file: what parses, and for each mistake the FILE:LINE and the words of the error.
#include "config/config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace rad::config {
namespace {

// unchecked is the environment of the pure parser: files are resolved but not looked at.
ConfigEnvironment unchecked(std::optional<std::filesystem::path> credentials_directory = std::nullopt) {
    ConfigEnvironment environment;
    environment.credentials_directory = std::move(credentials_directory);
    environment.check_files = false;
    return environment;
}

const ConfigEnvironment kNoFiles = unchecked();

const char* const kMinimal = R"([profiles.web]
certificate = "/etc/ra/web.pem"
private_key = "/etc/ra/web.key"
trust_anchor_arn = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ta"
profile_arn = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p"
role_arn = "arn:aws:iam::123456789012:role/web"
)";

Result<AgentConfig> parse(const std::string& text, const ConfigEnvironment& env = kNoFiles) {
    return parse_config(text, "agent.toml", env);
}

// error_of parses `text`, requires a config_invalid error and returns its message.
std::string error_of(const std::string& text, const ConfigEnvironment& env = kNoFiles) {
    auto r = parse(text, env);
    EXPECT_FALSE(r) << "expected an error for:\n" << text;
    if (r) {
        return {};
    }
    EXPECT_EQ(r.error().code, Errc::config_invalid);
    return r.error().message;
}

TEST(Config, MinimalProfileGetsDefaults) {
    auto r = parse(kMinimal);
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(r->profiles.size(), 1u);
    const auto& p = r->profiles[0];
    EXPECT_EQ(p.name, "web");
    EXPECT_EQ(p.identity.certificate, "/etc/ra/web.pem");
    EXPECT_EQ(p.session_duration, 3600);
    EXPECT_TRUE(p.imds_listen.empty());
    EXPECT_EQ(r->agent.socket_path, "/run/rolesanywhere-agent/agent.sock");
    EXPECT_EQ(r->agent.socket_mode, 0660u);
    EXPECT_EQ(r->agent.hop_limit, 1);
    EXPECT_FALSE(r->agent.allow_imdsv1);
    EXPECT_EQ(r->find_profile("web"), &p);
    EXPECT_EQ(r->find_profile("nope"), nullptr);
    EXPECT_EQ(p.source.where("role_arn"), "agent.toml:6");
}

TEST(Config, FullFile) {
    auto r = parse(std::string(R"([agent]
log_level = "debug"
log_format = "json"
socket_path = "/run/x/agent.sock"
socket_mode = "0600"
socket_group = "aws"
allowed_uids = [1000, 1001]
allowed_gids = [50]
ecs_listen = "127.0.0.1:9912"
allow_imdsv1 = true
hop_limit = 2
max_connections = 64
refresh_window = [0.4, 0.7]
retry_cap_seconds = 120
startup_jitter_seconds = 600

)") + kMinimal + R"(session_duration = 900
role_session_name = "web-1"
region = "us-east-1"
endpoint = "https://127.0.0.1:8443"
imds_listen = ["127.0.0.1:9911", "[::1]:9911"]
ecs_path = "/creds/web"
ecs_token_file = "/run/x/web.token"
credentials_file_profile = "web"
credentials_file = "/root/.aws/credentials"
)");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->agent.log_level, LogLevel::debug);
    EXPECT_EQ(r->agent.log_format, LogFormat::json);
    EXPECT_EQ(r->agent.socket_mode, 0600u);
    EXPECT_EQ(r->agent.allowed_uids, (std::vector<std::uint32_t>{1000, 1001}));
    ASSERT_TRUE(r->agent.ecs_listen);
    EXPECT_EQ(r->agent.ecs_listen->port, 9912);
    EXPECT_DOUBLE_EQ(r->agent.refresh_window_min, 0.4);
    EXPECT_EQ(r->agent.startup_jitter_seconds, 600);
    const auto& p = r->profiles[0];
    EXPECT_EQ(p.session_duration, 900);
    ASSERT_EQ(p.imds_listen.size(), 2u);
    EXPECT_EQ(p.imds_listen[1].host, "::1");
    EXPECT_EQ(p.imds_listen[1].to_string(), "[::1]:9911");
    EXPECT_EQ(p.ecs_path, "/creds/web");
}

struct BadCase {
    std::string name;  // the case's name in the test list
    std::string text;
    std::string expected;  // a substring of the message, starting with FILE:LINE
};

class ConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigErrors, NameTheLineAndTheProblem) {
    const std::string message = error_of(GetParam().text);
    EXPECT_NE(message.find(GetParam().expected), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
}

INSTANTIATE_TEST_SUITE_P(
    Table,
    ConfigErrors,
    ::testing::Values(
        BadCase{"UnclosedTableHeader", "[profiles.web\n", "agent.toml:1: "},
        BadCase{"UnknownKey", std::string(kMinimal) + "sesion_duration = 900\n",
                "agent.toml:7: profiles.web.sesion_duration: unknown key"},
        BadCase{"SessionDurationBelowRange", std::string(kMinimal) + "session_duration = 899\n",
                "agent.toml:7: profiles.web.session_duration: must be between 900 and 43200 (got 899)"},
        BadCase{"SessionDurationAboveRange", std::string(kMinimal) + "session_duration = 43201\n",
                "must be between 900 and 43200"},
        BadCase{"SessionDurationNotAnInteger", std::string(kMinimal) + "session_duration = \"1h\"\n",
                "agent.toml:7: profiles.web.session_duration: must be an integer"},
        BadCase{"ImdsListenWithoutPort", std::string(kMinimal) + "imds_listen = \"127.0.0.1\"\n",
                "agent.toml:7: profiles.web.imds_listen: "},
        BadCase{"ImdsListenPortOutOfRange", std::string(kMinimal) + "imds_listen = \"127.0.0.1:70000\"\n",
                "port 0-65535"},
        BadCase{"EcsPathWithoutEcsListen",
                std::string(kMinimal) + "ecs_path = \"/c\"\necs_token_file = \"/t\"\n",
                "agent.toml:7: profiles.web.ecs_path: needs agent.ecs_listen"},
        BadCase{"EcsPathWithoutTokenFile",
                "[agent]\necs_listen = \"127.0.0.1:1\"\n" + std::string(kMinimal) + "ecs_path = \"/c\"\n",
                "ecs_token_file: is required when ecs_path is set"},
        BadCase{"UnknownLogLevel", "[agent]\nlog_level = \"loud\"\n" + std::string(kMinimal),
                "agent.toml:2: agent.log_level: must be debug"},
        BadCase{"SocketModeForOthers", "[agent]\nsocket_mode = \"0666\"\n" + std::string(kMinimal),
                "agent.toml:2: agent.socket_mode: must not give others"},
        BadCase{"HopLimitZero", "[agent]\nhop_limit = 0\n" + std::string(kMinimal),
                "agent.toml:2: agent.hop_limit: must be between 1 and 255"},
        BadCase{"RefreshWindowReversed", "[agent]\nrefresh_window = [0.6, 0.5]\n" + std::string(kMinimal),
                "agent.toml:2: agent.refresh_window"},
        BadCase{"UnknownAgentKey", "[agent]\nport = 1\n" + std::string(kMinimal),
                "agent.toml:2: agent.port: unknown key"},
        BadCase{"UnknownTopLevelKey", "title = \"x\"\n" + std::string(kMinimal),
                "agent.toml:1: (top level).title: unknown key"},
        BadCase{"NoProfile", "[agent]\n", "no profile defined"},
        BadCase{"RequiredKeyMissing", "[profiles.web]\ncertificate = \"/c\"\n",
                "agent.toml:1: profiles.web.trust_anchor_arn: is required"},
        BadCase{"BadProfileName", "[profiles.\"we b\"]\n", "profile name \"we b\" must be"},
        BadCase{"ImdsListenerSharedByTwoProfiles",
                std::string(kMinimal) +
                    "imds_listen = \"127.0.0.1:9911\"\n[profiles.api]\ncertificate = \"/c\"\n"
                    "trust_anchor_arn = \"a\"\nprofile_arn = \"b\"\nrole_arn = \"c\"\nimds_listen = "
                    "\"127.0.0.1:9911\"\n",
                "agent.toml:13: profiles.api.imds_listen: 127.0.0.1:9911 is already the IMDS listener of "
                "profile web"},
        BadCase{"KeySetTwice", std::string(kMinimal) + "certificate = \"credential:web.pem\"\n",
                "agent.toml:"}),
    [](const ::testing::TestParamInfo<BadCase>& row) { return row.param.name; });

TEST(Config, CredentialReferencesResolveAgainstCredentialsDirectory) {
    std::string text = kMinimal;
    text.replace(text.find("\"/etc/ra/web.pem\""), std::strlen("\"/etc/ra/web.pem\""),
                 "\"credential:web.pem\"");
    EXPECT_NE(error_of(text).find("agent.toml:2: profiles.web.certificate: \"credential:web.pem\" needs "
                                  "$CREDENTIALS_DIRECTORY"),
              std::string::npos);
    auto r = parse(text, unchecked("/run/credentials/rolesanywhere-agent.service"));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->profiles[0].identity.certificate, "/run/credentials/rolesanywhere-agent.service/web.pem");
    text.replace(text.find("credential:web.pem"), std::strlen("credential:web.pem"), "credential:../x");
    EXPECT_NE(error_of(text, unchecked("/run/c")).find("is not credential:NAME"), std::string::npos);
}

// Found by fuzzing: a CR inside a TOML value made toml++'s description, and so the error, span two lines;
// quoted keys and values can carry CR/LF into any message. Every error stays one line.
TEST(Config, ErrorsAreOneLineWhateverTheInput) {
    const std::string cases[] = {
        "agent = { allow_imdsv1 = tru\r, x = 1 }\n",
        std::string(kMinimal) + "\"bad\\nkey\" = 1\n",
        std::string(kMinimal) + "role_session_name = 7\n[profiles.\"a\\r\\nb\"]\ncertificate = 1\n",
        "[profiles.\"x\\ny\"]\ncertificate = \"/c.pem\"\n",
    };
    for (const std::string& text : cases) {
        const std::string message = error_of(text);
        EXPECT_FALSE(message.empty()) << text;
        EXPECT_EQ(message.find_first_of("\r\n"), std::string::npos) << message;
        EXPECT_EQ(message.rfind("agent.toml:", 0), 0u) << message;
    }
}

// Found by fuzzing: NUL bytes inside a table header tripped an assertion in toml++'s parser, which aborts in
// builds without NDEBUG (release builds report the same input as a parse error). Assertions are now off in
// every build type (config/CMakeLists.txt); the ASan and fuzz builds, which have them, run this test too.
TEST(Config, BinaryGarbageIsAParseErrorInEveryBuild) {
    const std::string cases[] = {
        std::string("[agent]\nsocket_mode = \"0640\"\n\n[") + std::string(76, '\0') + "profiles.a]\n",
        std::string("[") + std::string(3, '\0') + "]\n",
        std::string("a") + std::string(1, '\0') + " = 1\n",
        std::string("[profiles.\x01]\n"),
    };
    for (const std::string& text : cases) {
        const std::string message = error_of(text);
        EXPECT_EQ(message.rfind("agent.toml:", 0), 0u) << message;
        EXPECT_EQ(message.find('\0'), std::string::npos);
    }
}

// Found by fuzzing (UBSan): toml++ 3.3 reaches __builtin_unreachable classifying some non-ASCII characters of
// keys and headers. Non-ASCII is refused outside comments, before toml++ sees it; comments may hold any text.
TEST(Config, NonAsciiOnlyInComments) {
    const std::string e_acute = "\xC3\xA9";
    const std::string commented = "# caf" + e_acute + " \"#\n" + std::string(kMinimal) +
                                  "role_session_name = \"web#1\" # caf" + e_acute + "\n";
    ASSERT_TRUE(parse(commented)) << parse(commented).error().message;

    const std::pair<std::string, int> refused[] = {
        {std::string(kMinimal) + "role_session_name = \"caf" + e_acute + "\"\n", 7},
        {"[profiles.caf" + e_acute + "]\n", 1},
        {"[profiles.\"#" + e_acute + "\"]\n", 1},         // '#' inside a quoted key
        {"x = '#'\n\"" + e_acute + "\" = 1\n", 2},        // a comment that is not one
        {"x = \"\"\"a\n\\\n" + e_acute + "\"\"\"\n", 3},  // after a line continuation
        {"x = \"\\\"#\"\n" + e_acute + " = 1\n", 2},      // an escaped quote
    };
    for (const auto& [text, line] : refused) {
        EXPECT_EQ(error_of(text),
                  "agent.toml:" + std::to_string(line) +
                      ": non-ASCII character outside a comment (keys, values and paths must be "
                      "ASCII)")
            << text;
    }
}

// read_socket_path finds the socket in a file that does not validate (for `status` and the fast path to
// reach the running agent while its configuration has a mistake), and says when the text cannot tell.
TEST(SocketPath, IsReadWithoutValidatingTheRest) {
    const std::filesystem::path kDefault = AgentSettings{}.socket_path;
    const std::string agent = "[agent]\nsocket_path = \"/run/x/agent.sock\"\n";
    const std::pair<std::string, std::optional<std::filesystem::path>> cases[] = {
        // Files that validate: what parse_config reads (checked below).
        {kMinimal, kDefault},
        {"[agent]\nlog_level = \"debug\"\n" + std::string(kMinimal), kDefault},
        {agent + kMinimal, "/run/x/agent.sock"},
        {"[agent]\nsocket_path = \"\"\n" + std::string(kMinimal), ""},
        {"agent.socket_path = '/run/y.sock'\n" + std::string(kMinimal), "/run/y.sock"},
        // Files with a mistake elsewhere: the socket still.
        {agent + kMinimal + "sesion_duration = 900\n", "/run/x/agent.sock"},
        {agent + "hop_limit = 0\nlog_level = \"loud\"\n", "/run/x/agent.sock"},
        {"[profiles.web]\ncertificate = 7\n", kDefault},
        {"", kDefault},
        // Texts that cannot tell.
        {agent + kMinimal + "[agent]\n", std::nullopt},  // a second [agent]: not TOML
        {"socket_path = \"/run/x.sock\n", std::nullopt},
        {"[agent]\nsocket_path = \"/run/caf\xC3\xA9.sock\"\n", std::nullopt},
        {std::string("[") + std::string(3, '\0') + "]\n", std::nullopt},
        {"[agent]\nsocket_path = 7\n", std::nullopt},
        {"[agent]\nsocket_path = \"run/agent.sock\"\n", std::nullopt},
        {"agent = 5\n", std::nullopt},
    };
    int validated = 0;
    for (const auto& [text, expected] : cases) {
        EXPECT_EQ(read_socket_path(text), expected) << text;
        if (auto parsed = parse(text)) {
            EXPECT_EQ(read_socket_path(text), parsed->agent.socket_path) << text;
            ++validated;
        }
    }
    EXPECT_EQ(validated, 5);
}

// Found by fuzzing: a required key present with an empty value (trust_anchor_arn = "") was accepted.
TEST(Config, RequiredKeysMustNotBeEmpty) {
    for (const char* key : {"trust_anchor_arn", "profile_arn", "role_arn"}) {
        std::string text(kMinimal);
        const auto at = text.find(std::string(key) + " = ");
        ASSERT_NE(at, std::string::npos);
        text.replace(at, text.find('\n', at) - at, std::string(key) + " = \"\"");
        EXPECT_NE(error_of(text).find(std::string(key) + ": must not be empty"), std::string::npos)
            << error_of(text);
    }
}

class ConfigFiles : public ::testing::Test {
protected:
    void SetUp() override {
        char pattern[] = "/tmp/rad-config-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern), nullptr);
        dir_ = pattern;
        std::ofstream(dir_ / "web.pem") << "x";
        std::ofstream(dir_ / "web.key") << "x";
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::filesystem::path write(const std::string& text, mode_t mode) {
        const auto path = dir_ / "agent.toml";
        std::ofstream(path) << text;
        ::chmod(path.c_str(), mode);
        return path;
    }
    std::string config_text() const {
        std::string text = kMinimal;
        text.replace(text.find("/etc/ra/web.pem"), std::strlen("/etc/ra/web.pem"),
                     (dir_ / "web.pem").string());
        text.replace(text.find("/etc/ra/web.key"), std::strlen("/etc/ra/web.key"),
                     (dir_ / "web.key").string());
        return text;
    }

    std::filesystem::path dir_;
};

TEST_F(ConfigFiles, LoadsWhenFilesExist) {
    auto r = load_config(write(config_text(), 0600), ConfigEnvironment{});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->profiles[0].identity.private_key, dir_ / "web.key");
}

TEST_F(ConfigFiles, ReadsTheFileAsLoadConfigDoes) {
    const auto path = write(config_text(), 0600);
    auto file = read_config_file(path);
    ASSERT_TRUE(file) << file.error().message;
    EXPECT_EQ(file->text, config_text());
}

TEST_F(ConfigFiles, MissingNamedFileIsReportedWithItsLine) {
    std::filesystem::remove(dir_ / "web.key");
    auto r = load_config(write(config_text(), 0600), ConfigEnvironment{});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::config_invalid);
    EXPECT_NE(r.error().message.find("agent.toml:3: profiles.web.private_key: " +
                                     (dir_ / "web.key").string() + ": no such file"),
              std::string::npos)
        << r.error().message;
}

TEST_F(ConfigFiles, RefusesIdentityFilesWritableByOthers) {
    ::chmod((dir_ / "web.key").c_str(), 0620);
    auto r = load_config(write(config_text(), 0600), ConfigEnvironment{});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::config_invalid);
    EXPECT_NE(r.error().message.find("agent.toml:3: profiles.web.private_key: " +
                                     (dir_ / "web.key").string() + ": writable by group or others"),
              std::string::npos)
        << r.error().message;
}

TEST_F(ConfigFiles, RefusesConfigWritableByOthers) {
    for (mode_t mode : {0620, 0602, 0666}) {
        auto r = load_config(write(config_text(), mode), ConfigEnvironment{});
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, Errc::config_invalid);
        EXPECT_NE(r.error().message.find("writable by group or others"), std::string::npos);
    }
    EXPECT_TRUE(load_config(write(config_text(), 0644), ConfigEnvironment{}));
}

TEST_F(ConfigFiles, MissingConfigFile) {
    auto r = load_config(dir_ / "absent.toml", ConfigEnvironment{});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::config_invalid);
    EXPECT_NE(r.error().message.find("absent.toml"), std::string::npos);
}

TEST(ListenAddress, Parses) {
    auto a = parse_listen_address("127.0.0.1:9911");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host, "127.0.0.1");
    EXPECT_EQ(a->port, 9911);
    auto b = parse_listen_address("[::1]:0");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->host, "::1");
    EXPECT_FALSE(parse_listen_address("::1:80"));
    EXPECT_FALSE(parse_listen_address("host:"));
    EXPECT_FALSE(parse_listen_address(":80"));
    EXPECT_FALSE(parse_listen_address("h:8x"));
    EXPECT_FALSE(parse_listen_address("h:123456"));
}

TEST(ListenAddress, SameListenAddressTable) {
    const struct {
        ListenAddress configured, bound;
        bool same;
    } rows[] = {
        {{"127.0.0.1", 9911}, {"127.0.0.1", 9911}, true},
        {{"127.0.0.1", 9911}, {"127.0.0.1", 9921}, false},
        {{"127.0.0.1", 9911}, {"127.0.0.2", 9911}, false},
        {{"127.0.0.1", 0}, {"127.0.0.1", 40123}, true},
        {{"localhost", 9911}, {"127.0.0.1", 9911}, true},
        {{"localhost", 9911}, {"::1", 9911}, true},
        {{"localhost", 9911}, {"10.0.0.1", 9911}, false},
        {{"::1", 9911}, {"::1", 9911}, true},
        {{"0:0:0:0:0:0:0:1", 9911}, {"::1", 9911}, true},
        {{"127.0.0.1", 9911}, {"::ffff:127.0.0.1", 9911}, true},
        {{"::", 9911}, {"0.0.0.0", 9911}, false},
        {{"127.0.0.1", 9911}, {"not-an-ip", 9911}, false},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(same_listen_address(row.configured, row.bound), row.same)
            << row.configured.to_string() << " vs " << row.bound.to_string();
    }
}

}  // namespace
}  // namespace rad::config

namespace rad::config {
namespace {

TEST(ExampleConfig, ParsesAndKeepsItsPromises) {
    const char* data = std::getenv("RAD_TEST_DATA");
    ASSERT_NE(data, nullptr);
    std::ifstream in(std::filesystem::path(data) / ".." / ".." / "config" / "example.toml");
    ASSERT_TRUE(in);
    std::stringstream text;
    text << in.rdbuf();
    // Installed as config.toml for the service, whose LoadCredential= copies its credential: paths name.
    ConfigEnvironment service = unchecked();
    service.credentials_directory = "/run/credentials/rolesanywhere-agent.service";
    auto r = parse_config(text.str(), "example.toml", service);
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(r->profiles.size(), 2u);
    EXPECT_EQ(r->profiles[0].imds_listen.at(0).port, 9911);
    EXPECT_EQ(r->profiles[1].imds_listen.at(0).port, 9921);
    EXPECT_EQ(r->profiles[1].identity.private_key, "/run/credentials/rolesanywhere-agent.service/agent.key");
    EXPECT_EQ(r->agent.ecs_listen->port, 9912);
}

TEST_F(ConfigFiles, TpmKeyHandleIsNoPathAndTpmKeysAreRead) {
    std::string text = config_text();
    const std::string key = (dir_ / "web.key").string();
    text.replace(text.find(key), key.size(), "handle:0x81000002");
    text += "tpm_tcti = \"swtpm:host=127.0.0.1,port=2321\"\n";
    text += "tpm_key_password_file = \"" + key + "\"\n";
    auto r = load_config(write(text, 0600), ConfigEnvironment{});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->profiles[0].identity.private_key, "handle:0x81000002");
    EXPECT_EQ(r->profiles[0].identity.tpm_tcti, "swtpm:host=127.0.0.1,port=2321");
    EXPECT_EQ(r->profiles[0].identity.tpm_key_password_file, dir_ / "web.key");
    // Only private_key takes a handle: the password files are paths that must exist.
    text += "tpm_parent_password_file = \"handle:0x81000001\"\n";
    auto bad = load_config(write(text, 0600), ConfigEnvironment{});
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("tpm_parent_password_file: handle:0x81000001: no such file"),
              std::string::npos)
        << bad.error().message;
}

}  // namespace
}  // namespace rad::config
