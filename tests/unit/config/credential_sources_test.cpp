// The pre-start check's record of LoadCredential= sources (config/credential_sources.hpp): its text, who may
// have written it, how config.toml's credential: paths pick their sources up, which uses of a credential a
// refused source stops, and messages that name the copy and its source.

#include "config/credential_sources.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "config/config.hpp"

namespace rad::config {
namespace {

const std::string kKeyRefusal =
    "/etc/rolesanywhere-agent/agent.key: permissions 0644 are too open (group or others may access it); run "
    "chmod 600 on it";

std::vector<CredentialSource> sample() {
    return {
        {"agent.pem", "/etc/rolesanywhere-agent/agent.pem", "/etc/rolesanywhere-agent/agent.pem: 0644", ""},
        {"agent.key", "/etc/rolesanywhere-agent/agent.key", kKeyRefusal, kKeyRefusal}};
}

TEST(CredentialSources, TextRoundTrips) {
    const auto text = format_credential_sources(sample());
    EXPECT_EQ(text.substr(0, kCredentialSourcesHeader.size()), kCredentialSourcesHeader);
    auto parsed = parse_credential_sources(text, "record");
    ASSERT_TRUE(parsed) << parsed.error().message;
    ASSERT_EQ(parsed->size(), 2u);
    EXPECT_EQ((*parsed)[1].name, "agent.key");
    EXPECT_EQ((*parsed)[1].source, "/etc/rolesanywhere-agent/agent.key");
    EXPECT_EQ((*parsed)[1].refusal, kKeyRefusal);
    EXPECT_EQ((*parsed)[0].shared_refusal, "");
}

TEST(CredentialSources, SeparatorsInAFieldCannotMakeAnotherField) {
    auto text = format_credential_sources({{"a\tb", "/etc/x\ny", "bad\r\n", ""}});
    auto parsed = parse_credential_sources(text, "record");
    ASSERT_TRUE(parsed) << parsed.error().message;
    ASSERT_EQ(parsed->size(), 1u);
    EXPECT_EQ((*parsed)[0].name, "a?b");
    EXPECT_EQ((*parsed)[0].source, "/etc/x?y");
    EXPECT_EQ((*parsed)[0].refusal, "bad??");
}

TEST(CredentialSources, MalformedTextIsRefusedNamingTheLine) {
    const struct {
        std::string text, expected;
    } cases[] = {
        {"", "record:1:"},
        {"something else\n", "record:1:"},
        {std::string(kCredentialSourcesHeader) + "\nagent.key\t/etc/k\n", "record:2:"},
        {std::string(kCredentialSourcesHeader) + "\n\t/etc/k\t\t\n", "record:2:"},
    };
    for (const auto& c : cases) {
        auto parsed = parse_credential_sources(c.text, "record");
        ASSERT_FALSE(parsed) << c.text;
        EXPECT_EQ(parsed.error().code, Errc::config_invalid);
        EXPECT_EQ(parsed.error().message.rfind(c.expected, 0), 0u) << parsed.error().message;
    }
}

class CredentialSourcesFile : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() / ("rad-sources-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::filesystem::path write(const std::string& text, mode_t mode) {
        const auto path = dir_ / "record";
        std::ofstream(path) << text;
        ::chmod(path.c_str(), mode);
        return path;
    }
    std::filesystem::path dir_;
};

TEST_F(CredentialSourcesFile, AbsentMeansNoRecord) {
    auto read = read_credential_sources(dir_ / "absent");
    ASSERT_TRUE(read) << read.error().message;
    EXPECT_TRUE(read->empty());
}

TEST_F(CredentialSourcesFile, OnlyARecordNobodyButRootCouldWriteIsRead) {
    if (::geteuid() != 0) {
        GTEST_SKIP() << "the record must be root's; run as root";
    }
    EXPECT_TRUE(read_credential_sources(write(format_credential_sources(sample()), 0644)));
    for (const mode_t mode : {0664, 0646}) {
        auto read = read_credential_sources(write(format_credential_sources(sample()), mode));
        ASSERT_FALSE(read) << std::oct << mode;
        EXPECT_EQ(read.error().code, Errc::config_invalid);
    }
}

TEST(CredentialSources, ARefusedSourceStopsItsUseAsASecretOnly) {
    const auto sources = sample();
    const std::filesystem::path dir = "/run/credentials/rolesanywhere-agent.service";
    const CredentialCopy key{"private_key", dir / "agent.key", sources[1]};
    const CredentialCopy certificate{"certificate", dir / "agent.pem", sources[0]};
    EXPECT_TRUE(refuse_unsafe_sources({certificate}));
    auto refused = refuse_unsafe_sources({certificate, key});
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, Errc::unsafe_permissions);
    const auto& message = refused.error().message;
    EXPECT_NE(message.find("private_key"), std::string::npos) << message;
    EXPECT_NE(message.find((dir / "agent.key").string()), std::string::npos) << message;
    EXPECT_NE(message.find("/etc/rolesanywhere-agent/agent.key: permissions 0644"), std::string::npos)
        << message;
    // Every secret key of a profile is checked; an ECS token file by the rule for a token shared with a
    // group.
    for (const char* secret :
         {"passphrase_file", "pin_file", "tpm_key_password_file", "tpm_parent_password_file"}) {
        EXPECT_FALSE(refuse_unsafe_sources({{secret, dir / "agent.key", sources[1]}})) << secret;
    }
    CredentialSource group_readable{"web.token", "/etc/rolesanywhere-agent/web.token", "0640 refused", ""};
    EXPECT_TRUE(refuse_unsafe_sources({{"ecs_token_file", dir / "web.token", group_readable}}));
    group_readable.shared_refusal = "0644 refused";
    EXPECT_FALSE(refuse_unsafe_sources({{"ecs_token_file", dir / "web.token", group_readable}}));
}

TEST(CredentialSources, MessagesNameTheCopyAndItsSource) {
    const std::filesystem::path copy = "/run/credentials/rolesanywhere-agent.service/agent.key";
    const std::vector<CredentialCopy> copies{{"private_key", copy, sample()[1]}};
    const std::string note = " (LoadCredential= copy of /etc/rolesanywhere-agent/agent.key)";
    EXPECT_EQ(name_credential_sources(copy.string() + ": not a key", copies),
              copy.string() + note + ": not a key");
    // Once only, however often it is applied; a longer path that starts with the copy's is another file.
    const auto once = name_credential_sources(copy.string() + ": x", copies);
    EXPECT_EQ(name_credential_sources(once, copies), once);
    EXPECT_EQ(name_credential_sources(copy.string() + ".old: x", copies), copy.string() + ".old: x");
    EXPECT_EQ(name_credential_sources("no path here", copies), "no path here");
}

TEST(CredentialSources, CredentialPathsOfTheConfigurationCarryTheirSources) {
    ConfigEnvironment environment;
    environment.credentials_directory = "/run/credentials/rolesanywhere-agent.service";
    environment.check_files = false;
    environment.credential_sources = sample();
    auto config = parse_config(R"([profiles.web]
certificate = "credential:agent.pem"
private_key = "credential:agent.key"
ca_bundle = "/etc/ssl/certs/ca-certificates.crt"
trust_anchor_arn = "arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/0a1b2c3d-0000-4000-8000-000000000001"
profile_arn = "arn:aws:rolesanywhere:eu-west-1:123456789012:profile/0a1b2c3d-0000-4000-8000-000000000002"
role_arn = "arn:aws:iam::123456789012:role/web"
)",
                               "config.toml", environment);
    ASSERT_TRUE(config) << config.error().message;
    const auto& copies = config->profiles.at(0).credential_copies;
    ASSERT_EQ(copies.size(), 2u);
    EXPECT_EQ(copies[1].key, "private_key");
    EXPECT_EQ(copies[1].copy, "/run/credentials/rolesanywhere-agent.service/agent.key");
    EXPECT_EQ(copies[1].source.source, "/etc/rolesanywhere-agent/agent.key");
    EXPECT_FALSE(refuse_unsafe_sources(copies));
}

TEST(CredentialSources, AnUnreadableRecordFailsTheLoad) {
    ConfigEnvironment environment;
    environment.credential_sources_error =
        Error{Errc::config_invalid, "/run/x: not a regular file owned by root"};
    auto config = load_config("/nonexistent/config.toml", environment);
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error().message, "/run/x: not a regular file owned by root");
}

}  // namespace
}  // namespace rad::config
