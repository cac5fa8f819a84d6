// The agent that the continuous `update` runs, as built from its flags: one profile, the credentials file as
// its only surface.
#include "daemon/cli/agent_commands.hpp"

#include <gtest/gtest.h>

#include "daemon/agent/agent.hpp"

namespace rad::daemon {
namespace {

UpdateOptions update_flags() {
    UpdateOptions options;
    options.profile = "web";
    config::ProfileConfig& c = options.credentials.profile;
    c.identity.certificate = "/etc/pki/host.pem";
    c.identity.private_key = "/etc/pki/host.key";
    c.identity.passphrase_file = "/etc/pki/host.pass";
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
    EXPECT_EQ(p.identity.certificate, "/etc/pki/host.pem");
    EXPECT_EQ(p.identity.private_key, "/etc/pki/host.key");
    EXPECT_EQ(p.identity.passphrase_file, "/etc/pki/host.pass");
    EXPECT_EQ(p.trust_anchor_arn, update_flags().credentials.profile.trust_anchor_arn);
    EXPECT_EQ(p.endpoint, "https://127.0.0.1:8443");
    EXPECT_EQ(p.ca_bundle, "/etc/pki/ca.pem");
    EXPECT_EQ(p.session_duration, 900);
    EXPECT_EQ(p.role_session_name, "host-1");
    EXPECT_EQ(p.connect_timeout_seconds, 2);
    EXPECT_EQ(p.timeout_seconds, 7.5);
}

TEST(UpdateAgent, AProfileIsRequired) {
    auto no_section = update_flags();
    no_section.profile.clear();
    auto config = update_agent_config(no_section);
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error().code, Errc::usage);
}

}  // namespace
}  // namespace rad::daemon
