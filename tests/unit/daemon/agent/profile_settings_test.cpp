// Profile settings that only the signer can judge (ARNs, regions, endpoint) are reported at the key's line.
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "daemon/agent/agent.hpp"

namespace rad::agent {
namespace {

constexpr const char* kTrustAnchorId = "0a1b2c3d-0000-4000-8000-000000000001";
constexpr const char* kProfileId = "0a1b2c3d-0000-4000-8000-000000000002";
const std::string kTrustAnchor =
    std::string("arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/") + kTrustAnchorId;

std::string profile_text(const std::string& trust_anchor, const std::string& extra = "") {
    return "[profiles.web]\n"
           "certificate = \"/c.pem\"\n"
           "trust_anchor_arn = \"" +
           trust_anchor +
           "\"\n"
           "profile_arn = \"arn:aws:rolesanywhere:us-east-1:123456789012:profile/" +
           std::string(kProfileId) +
           "\"\n"
           "role_arn = \"arn:aws:iam::123456789012:role/web\"\n" +
           extra;
}

Result<void> check(const std::string& text) {
    config::ConfigEnvironment environment;
    environment.check_files = false;
    auto config = config::parse_config(text, "agent.toml", environment);
    EXPECT_TRUE(config) << config.error().message;
    if (!config) {
        return config.error();
    }
    return check_profile_settings(config->profiles.at(0));
}

TEST(ProfileSettings, AcceptsAConsistentProfile) {
    EXPECT_TRUE(check(profile_text(kTrustAnchor)));
}

TEST(ProfileSettings, RegionMismatchPointsAtTheTrustAnchorLine) {
    auto r = check(profile_text("arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/" +
                                std::string(kTrustAnchorId)));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::config_invalid);
    EXPECT_EQ(r.error().message.rfind("agent.toml:", 0), 0u) << r.error().message;
    EXPECT_NE(r.error().message.find("profiles.web."), std::string::npos) << r.error().message;
    EXPECT_EQ(exit_code(r.error().code), 78);
}

TEST(ProfileSettings, MalformedArnNamesItsKeyAndLine) {
    auto r = check(profile_text("not-an-arn"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::config_invalid);
    EXPECT_NE(r.error().message.find("agent.toml:3: profiles.web.trust_anchor_arn: "), std::string::npos)
        << r.error().message;
}

TEST(ProfileSettings, ArnThatAwsCannotHaveIssuedNamesItsKeyAndLine) {
    for (const std::string& trust_anchor :
         {"arn:aws:rolesanywhere:us-east-1:1234:trust-anchor/" + std::string(kTrustAnchorId),
          std::string("arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ta")}) {
        auto r = check(profile_text(trust_anchor));
        ASSERT_FALSE(r) << trust_anchor;
        EXPECT_EQ(r.error().code, Errc::config_invalid);
        EXPECT_NE(r.error().message.find("agent.toml:3: profiles.web.trust_anchor_arn: "), std::string::npos)
            << r.error().message;
    }
    // The role is on line 5.
    auto r = check(
        "[profiles.web]\n"
        "certificate = \"/c.pem\"\n"
        "trust_anchor_arn = \"" +
        kTrustAnchor +
        "\"\n"
        "profile_arn = \"arn:aws:rolesanywhere:us-east-1:123456789012:profile/" +
        kProfileId +
        "\"\n"
        "role_arn = \"arn:aws:iam:us-east-1:123456789012:role/web\"\n");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("agent.toml:5: profiles.web.role_arn: "), std::string::npos)
        << r.error().message;
}

// The file's region against the ARNs' is refused at the region's line, before anything is sent.
TEST(ProfileSettings, RegionOfAnotherRegionNamesItsKeyAndLine) {
    auto r = check(profile_text(kTrustAnchor, "region = \"us-west-2\"\n"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::config_invalid);
    EXPECT_EQ(
        r.error().message,
        "agent.toml:6: profiles.web.region: region 'us-west-2': the trust anchor and the profile are in "
        "'us-east-1', and Roles Anywhere answers for them only there (leave region out, or give "
        "'us-east-1')");
    EXPECT_TRUE(check(profile_text(kTrustAnchor, "region = \"us-east-1\"\n")));
}

TEST(ProfileSettings, BadEndpointNamesItsKey) {
    auto r = check(profile_text(kTrustAnchor, "endpoint = \"ftp://example\"\n"));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("agent.toml:6: profiles.web.endpoint: "), std::string::npos)
        << r.error().message;
}

}  // namespace
}  // namespace rad::agent
