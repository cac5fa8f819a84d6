// The agent that the continuous `update` runs, as built from its flags: one profile, the credentials file as
// its only surface.
#include "daemon/agent_commands.hpp"

#include <gtest/gtest.h>

#include "daemon/agent.hpp"

namespace rad::daemon {
namespace {

UpdateOptions update_flags() {
    UpdateOptions options;
    options.profile = "web";
    CredentialOptions& c = options.credentials;
    c.identity.certificate = "/etc/pki/host.pem";
    c.identity.private_key = "/etc/pki/host.key";
    c.identity.pkcs8_password_file = "/etc/pki/host.pass";
    c.trust_anchor_arn = "arn:aws:rolesanywhere:eu-west-1:111122223333:trust-anchor/ta";
    c.profile_arn = "arn:aws:rolesanywhere:eu-west-1:111122223333:profile/p";
    c.role_arn = "arn:aws:iam::111122223333:role/r";
    c.endpoint = "https://127.0.0.1:8443";
    c.ca_bundle = "/etc/pki/ca.pem";
    c.session_duration = 900;
    c.role_session_name = "host-1";
    c.connect_timeout_seconds = 2;
    c.timeout_seconds = 7.5;
    return options;
}

TEST(UpdateAgent, OneProfileWithOnlyTheCredentialsFileSurface) {
    auto config = update_agent_config(update_flags());
    ASSERT_TRUE(config) << config.error().message;
    EXPECT_TRUE(config->agent.socket_path.empty());
    EXPECT_FALSE(config->agent.ecs_listen);
    EXPECT_FALSE(config->agent.health_listen);
    EXPECT_TRUE(config->path.empty());
    ASSERT_EQ(config->profiles.size(), 1u);
    const config::ProfileConfig& p = config->profiles[0];
    EXPECT_EQ(p.name, "web");
    EXPECT_EQ(p.credentials_file_profile, "web");
    EXPECT_TRUE(p.credentials_file.empty());  // the default file, as `update --once` writes
    EXPECT_TRUE(p.imds_listen.empty());
    EXPECT_TRUE(p.ecs_path.empty());
    EXPECT_EQ(p.certificate, "/etc/pki/host.pem");
    EXPECT_EQ(p.private_key, "/etc/pki/host.key");
    EXPECT_EQ(p.passphrase_file, "/etc/pki/host.pass");
    EXPECT_EQ(p.trust_anchor_arn, update_flags().credentials.trust_anchor_arn);
    EXPECT_EQ(p.endpoint, "https://127.0.0.1:8443");
    EXPECT_EQ(p.ca_bundle, "/etc/pki/ca.pem");
    EXPECT_EQ(p.session_duration, 900);
    EXPECT_EQ(p.role_session_name, "host-1");
    EXPECT_EQ(p.connect_timeout_seconds, 2);
    EXPECT_EQ(p.timeout_seconds, 7.5);
}

// The agent signs with the options its profile gives back: the same as the flags said.
TEST(UpdateAgent, TheAgentSignsWithTheFlagsOptions) {
    const CredentialOptions flags = update_flags().credentials;
    auto profile = profile_from_flags(flags);
    ASSERT_TRUE(profile) << profile.error().message;
    const CredentialOptions back = credential_options_from_profile(*profile);
    EXPECT_EQ(back.identity.certificate, flags.identity.certificate);
    EXPECT_EQ(back.identity.private_key, flags.identity.private_key);
    EXPECT_EQ(back.identity.pkcs8_password_file, flags.identity.pkcs8_password_file);
    EXPECT_EQ(back.trust_anchor_arn, flags.trust_anchor_arn);
    EXPECT_EQ(back.profile_arn, flags.profile_arn);
    EXPECT_EQ(back.role_arn, flags.role_arn);
    EXPECT_EQ(back.endpoint, flags.endpoint);
    EXPECT_EQ(back.ca_bundle, flags.ca_bundle);
    EXPECT_EQ(back.session_duration, flags.session_duration);
    EXPECT_EQ(back.role_session_name, flags.role_session_name);
    EXPECT_EQ(back.connect_timeout_seconds, flags.connect_timeout_seconds);
    EXPECT_EQ(back.timeout_seconds, flags.timeout_seconds);
}

TEST(UpdateAgent, FlagMistakesAreUsageErrors) {
    auto no_section = update_flags();
    no_section.profile.clear();
    auto config = update_agent_config(no_section);
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error().code, Errc::usage);

    auto unset = update_flags();
    unset.credentials.identity.pkcs8_password_file.clear();
    unset.credentials.identity.pkcs8_password_env = "RAD_TEST_UNSET_PASSPHRASE_VARIABLE";
    ::unsetenv("RAD_TEST_UNSET_PASSPHRASE_VARIABLE");
    config = update_agent_config(unset);
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error().code, Errc::usage);
    EXPECT_NE(config.error().message.find("RAD_TEST_UNSET_PASSPHRASE_VARIABLE"), std::string::npos);
}

}  // namespace
}  // namespace rad::daemon
