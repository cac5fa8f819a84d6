// ARN parsing, base-URL parsing and the choice of endpoint and signing region.

#include "signer/endpoint.hpp"

#include <gtest/gtest.h>

namespace rad::signer {
namespace {

constexpr const char* kTrustAnchorId = "0a1b2c3d-0000-4000-8000-000000000001";
constexpr const char* kProfileId = "0a1b2c3d-0000-4000-8000-000000000002";
constexpr const char* kTrustAnchor =
    "arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/0a1b2c3d-0000-4000-8000-000000000001";
constexpr const char* kProfile =
    "arn:aws:rolesanywhere:eu-west-1:123456789012:profile/0a1b2c3d-0000-4000-8000-000000000002";
constexpr const char* kRole = "arn:aws:iam::123456789012:role/app/reader";

EndpointOptions options(std::string partition = "aws", std::string region = "eu-west-1") {
    EndpointOptions o;
    o.trust_anchor_arn =
        "arn:" + partition + ":rolesanywhere:" + region + ":123456789012:trust-anchor/" + kTrustAnchorId;
    o.profile_arn = "arn:" + partition + ":rolesanywhere:" + region + ":123456789012:profile/" + kProfileId;
    o.role_arn = "arn:" + partition + ":iam::123456789012:role/app/reader";
    return o;
}

TEST(ParseArnTest, SplitsTheSixFieldsAndKeepsColonsInTheResource) {
    auto arn = parse_arn(kRole, "--role-arn");
    ASSERT_TRUE(arn) << arn.error().message;
    EXPECT_EQ(arn.value().partition, "aws");
    EXPECT_EQ(arn.value().service, "iam");
    EXPECT_EQ(arn.value().region, "");
    EXPECT_EQ(arn.value().account, "123456789012");
    EXPECT_EQ(arn.value().resource, "role/app/reader");

    auto odd = parse_arn("arn:aws:svc:r:1:a:b:c", "--x");
    ASSERT_TRUE(odd);
    EXPECT_EQ(odd.value().resource, "a:b:c");
}

TEST(ParseArnTest, RejectsMalformedArnsNamingTheFlag) {
    for (const char* bad :
         {"", "arn", "arn:aws:iam", "urn:aws:iam::1:role/x", "arn::iam::1:role/x", "arn:aws:::1:x",
          "arn:aws:iam::1:", "arn:aws:iam::1:role/with space", "arn:aws:iam::1:role/x\n"}) {
        auto arn = parse_arn(bad, "--role-arn");
        ASSERT_FALSE(arn) << bad;
        EXPECT_EQ(arn.error().code, Errc::usage);
        EXPECT_NE(arn.error().message.find("--role-arn"), std::string::npos) << arn.error().message;
        EXPECT_EQ(arn.error().message.find('\n'), std::string::npos) << arn.error().message;
    }
}

TEST(ParseUrlTest, AcceptsHostsPortsIpv6AndPathPrefixes) {
    struct Row {
        const char* text;
        const char *scheme, *host, *port;
        bool explicit_port;
        const char *path, *host_header;
    };
    const Row rows[] = {
        {"https://rolesanywhere.us-east-1.amazonaws.com", "https", "rolesanywhere.us-east-1.amazonaws.com",
         "443", false, "", "rolesanywhere.us-east-1.amazonaws.com"},
        {"http://127.0.0.1:8080", "http", "127.0.0.1", "8080", true, "", "127.0.0.1:8080"},
        {"HTTPS://Example.COM/", "https", "example.com", "443", false, "", "example.com"},
        {"https://example.com:443/prefix/", "https", "example.com", "443", true, "/prefix",
         "example.com:443"},
        {"http://example.com/a/b", "http", "example.com", "80", false, "/a/b", "example.com"},
        {"https://[::1]:9443/base", "https", "::1", "9443", true, "/base", "[::1]:9443"},
        {"http://[2001:DB8::1]", "http", "2001:db8::1", "80", false, "", "[2001:db8::1]"},
        {"https://host:1", "https", "host", "1", true, "", "host:1"},
        {"https://host:65535", "https", "host", "65535", true, "", "host:65535"},
        {"https://host:00080", "https", "host", "80", true, "", "host:80"},
    };
    for (const auto& row : rows) {
        auto url = parse_url(row.text, "--endpoint");
        ASSERT_TRUE(url) << row.text << ": " << url.error().message;
        EXPECT_EQ(url.value().scheme, row.scheme) << row.text;
        EXPECT_EQ(url.value().host, row.host) << row.text;
        EXPECT_EQ(url.value().port, row.port) << row.text;
        EXPECT_EQ(url.value().explicit_port, row.explicit_port) << row.text;
        EXPECT_EQ(url.value().path, row.path) << row.text;
        EXPECT_EQ(url.value().host_header(), row.host_header) << row.text;
    }
}

TEST(ParseUrlTest, RejectsWhatCannotBeABaseUrl) {
    for (const char* bad : {"",
                            "example.com",
                            "ftp://example.com",
                            "https://",
                            "https://:443",
                            "https://host:0",
                            "https://host:65536",
                            "https://host:",
                            "https://host:80a",
                            "https://host:123456",
                            "https://user:pw@host",
                            "https://host/?q=1",
                            "https://host/#frag",
                            "https://[::1",
                            "https://[::1]x",
                            "https://[zz::1]",
                            "https://[]",
                            "https://ho st",
                            "https://host/pa th",
                            "https://-host"}) {
        auto url = parse_url(bad, "--endpoint");
        ASSERT_FALSE(url) << bad;
        EXPECT_EQ(url.error().code, Errc::usage);
        EXPECT_NE(url.error().message.find("--endpoint"), std::string::npos) << url.error().message;
    }
}

TEST(ResolveEndpointTest, DerivesUrlAndRegionFromTheTrustAnchorPerPartition) {
    struct Row {
        std::string partition, region, expected_host;
        bool fips;
    };
    const Row rows[] = {
        {"aws", "eu-west-1", "rolesanywhere.eu-west-1.amazonaws.com", false},
        {"aws", "us-east-1", "rolesanywhere-fips.us-east-1.amazonaws.com", true},
        {"aws-cn", "cn-north-1", "rolesanywhere.cn-north-1.amazonaws.com.cn", false},
        {"aws-us-gov", "us-gov-west-1", "rolesanywhere.us-gov-west-1.amazonaws.com", false},
        {"aws-us-gov", "us-gov-east-1", "rolesanywhere-fips.us-gov-east-1.amazonaws.com", true},
    };
    for (const auto& row : rows) {
        EndpointOptions o = options(row.partition, row.region);
        o.use_fips = row.fips;
        auto resolved = resolve_endpoint(o);
        ASSERT_TRUE(resolved) << row.partition << " " << row.region << ": " << resolved.error().message;
        EXPECT_EQ(resolved.value().region, row.region);
        EXPECT_EQ(resolved.value().url.scheme, "https");
        EXPECT_EQ(resolved.value().url.host, row.expected_host);
        EXPECT_EQ(resolved.value().url.port, "443");
        EXPECT_FALSE(resolved.value().url.explicit_port);
        EXPECT_EQ(resolved.value().url.path, "");
        EXPECT_EQ(resolved.value().url.host_header(), row.expected_host);
    }
}

TEST(ResolveEndpointTest, RegionFlagMayRepeatTheTrustAnchorsRegion) {
    EndpointOptions o = options();
    o.region = "eu-west-1";
    auto resolved = resolve_endpoint(o);
    ASSERT_TRUE(resolved) << resolved.error().message;
    EXPECT_EQ(resolved.value().region, "eu-west-1");
    EXPECT_EQ(resolved.value().url.host, "rolesanywhere.eu-west-1.amazonaws.com");
    // FIPS and China: the same rule, the region of the ARNs.
    o = options("aws-us-gov", "us-gov-west-1");
    o.region = "us-gov-west-1";
    o.use_fips = true;
    resolved = resolve_endpoint(o);
    ASSERT_TRUE(resolved) << resolved.error().message;
    EXPECT_EQ(resolved.value().url.host, "rolesanywhere-fips.us-gov-west-1.amazonaws.com");
}

// A trust anchor and its profile exist in one region, and only that region's service knows them: a request
// signed for, or sent to, another region is refused with 403 after a round trip. It is refused here instead,
// whatever the endpoint: a private (VPC) endpoint or a proxy still verifies the signature for the region of
// the trust anchor.
TEST(ResolveEndpointTest, RegionFlagOfAnotherRegionIsRefused) {
    const struct {
        const char* what;
        std::string partition, arn_region, region, endpoint;
        bool fips;
    } rows[] = {
        {"commercial", "aws", "eu-west-1", "us-west-2", "", false},
        {"FIPS", "aws-us-gov", "us-gov-west-1", "us-gov-east-1", "", true},
        {"China", "aws-cn", "cn-north-1", "cn-northwest-1", "", false},
        {"private endpoint", "aws", "eu-west-1", "us-west-2",
         "https://vpce-0123456789abcdef0-abcdefgh.rolesanywhere.us-west-2.vpce.amazonaws.com", false},
    };
    for (const auto& row : rows) {
        EndpointOptions o = options(row.partition, row.arn_region);
        o.region = row.region;
        o.endpoint = row.endpoint;
        o.use_fips = row.fips;
        std::string_view at_fault;
        auto resolved = resolve_endpoint(o, {}, &at_fault);
        ASSERT_FALSE(resolved) << row.what;
        EXPECT_EQ(resolved.error().code, Errc::usage) << row.what;
        EXPECT_EQ(at_fault, "--region") << row.what;
        EXPECT_EQ(resolved.error().message,
                  "--region '" + row.region + "': the trust anchor and the profile are in '" +
                      row.arn_region +
                      "', and Roles Anywhere answers for them only there (leave --region out, or give '" +
                      row.arn_region + "')")
            << row.what;
    }
}

TEST(ResolveEndpointTest, EndpointOverrideKeepsItsPathAndIpv6Literal) {
    EndpointOptions o = options();
    o.endpoint = "https://[fd00::2]:8443/proxy/ra/";
    o.use_fips = true;  // an explicit endpoint wins over FIPS
    auto resolved = resolve_endpoint(o);
    ASSERT_TRUE(resolved) << resolved.error().message;
    EXPECT_EQ(resolved.value().region, "eu-west-1");
    EXPECT_EQ(resolved.value().url.host, "fd00::2");
    EXPECT_EQ(resolved.value().url.path, "/proxy/ra");
    EXPECT_EQ(resolved.value().url.host_header(), "[fd00::2]:8443");
}

void expect_usage_error(const EndpointOptions& o, std::initializer_list<std::string_view> mentions) {
    auto resolved = resolve_endpoint(o);
    ASSERT_FALSE(resolved);
    EXPECT_EQ(resolved.error().code, Errc::usage);
    for (const auto mention : mentions) {
        EXPECT_NE(resolved.error().message.find(mention), std::string::npos)
            << "'" << mention << "' not in: " << resolved.error().message;
    }
}

TEST(ResolveEndpointTest, RegionMismatchNamesBothFlags) {
    EndpointOptions o = options();
    o.profile_arn = std::string("arn:aws:rolesanywhere:eu-central-1:123456789012:profile/") + kProfileId;
    expect_usage_error(o, {"--trust-anchor-arn", "--profile-arn", "eu-west-1", "eu-central-1"});
}

TEST(ResolveEndpointTest, RejectsArnsOfTheWrongServiceOrResource) {
    EndpointOptions o = options();
    o.trust_anchor_arn = kProfile;
    expect_usage_error(o, {"--trust-anchor-arn", "trust-anchor/"});

    o = options();
    o.profile_arn = kTrustAnchor;
    expect_usage_error(o, {"--profile-arn", "profile/"});

    o = options();
    o.role_arn = "arn:aws:sts::123456789012:assumed-role/x/y";
    expect_usage_error(o, {"--role-arn", "iam"});

    o = options();
    o.role_arn = "arn:aws:iam::123456789012:user/bob";
    expect_usage_error(o, {"--role-arn", "role/"});

    o = options();
    o.trust_anchor_arn = "arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/";
    expect_usage_error(o, {"--trust-anchor-arn"});

    o = options();
    o.trust_anchor_arn = "not-an-arn";
    expect_usage_error(o, {"--trust-anchor-arn"});

    o = options();
    o.role_arn.clear();
    expect_usage_error(o, {"--role-arn", "required"});
}

// ArnRow replaces one of the three ARNs of options() with `arn`.
struct ArnRow {
    enum Which { trust_anchor, profile, role } which;
    std::string arn;
};

EndpointOptions with_arn(const ArnRow& row) {
    EndpointOptions o = options();
    (row.which == ArnRow::trust_anchor ? o.trust_anchor_arn
     : row.which == ArnRow::profile    ? o.profile_arn
                                       : o.role_arn) = row.arn;
    return o;
}

const char* flag_of(ArnRow::Which which) {
    return which == ArnRow::trust_anchor ? "--trust-anchor-arn"
           : which == ArnRow::profile    ? "--profile-arn"
                                         : "--role-arn";
}

TEST(ResolveEndpointTest, AcceptsEveryArnShapeAwsIssues) {
    const std::string ta = "arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/";
    const std::string iam = "arn:aws:iam::123456789012:role/";
    const ArnRow rows[] = {
        {ArnRow::trust_anchor, ta + "5c0e8f2a-7d41-4b9e-a6c3-91f0d2e4b7a8"},
        {ArnRow::trust_anchor, ta + "00000000-0000-0000-0000-000000000000"},
        {ArnRow::profile,
         "arn:aws:rolesanywhere:eu-west-1:000000000000:profile/ffffffff-ffff-ffff-ffff-ffffffffffff"},
        {ArnRow::role, iam + "r"},
        {ArnRow::role, iam + "Web_Server+Role=1,prod.eu@example-x"},
        {ArnRow::role, iam + std::string(64, 'n')},
        {ArnRow::role, iam + "division_abc/subdivision_xyz/Reader"},
        {ArnRow::role, iam + "aws-service-role/rolesanywhere.amazonaws.com/AWSServiceRoleForRolesAnywhere"},
        {ArnRow::role, iam + "path!with~printable[chars]/name"},
        {ArnRow::role, iam + std::string(510, 'p') + "/n"},  // the longest path: 512 characters
    };
    for (const auto& row : rows) {
        auto resolved = resolve_endpoint(with_arn(row));
        EXPECT_TRUE(resolved) << row.arn << ": " << resolved.error().message;
    }
}

TEST(ResolveEndpointTest, RejectsMalformedArnPartsBeforeAnythingIsSent) {
    const std::string region_account = ":rolesanywhere:eu-west-1:123456789012:";
    const std::string ta_id = kTrustAnchorId;
    const std::string iam = "arn:aws:iam::123456789012:role/";
    struct Row {
        ArnRow row;
        const char* mention;  // what the message must name besides the flag
    };
    const Row rows[] = {
        // The account id: exactly 12 digits.
        {{ArnRow::trust_anchor, "arn:aws:rolesanywhere:eu-west-1:1234:trust-anchor/" + ta_id}, "account"},
        {{ArnRow::trust_anchor, "arn:aws:rolesanywhere:eu-west-1:1234567890123:trust-anchor/" + ta_id},
         "account"},
        {{ArnRow::profile, std::string("arn:aws:rolesanywhere:eu-west-1::profile/") + kProfileId}, "account"},
        {{ArnRow::profile, std::string("arn:aws:rolesanywhere:eu-west-1:12345678901a:profile/") + kProfileId},
         "account"},
        {{ArnRow::role, "arn:aws:iam::12345678901:role/web"}, "account"},
        {{ArnRow::role, "arn:aws:iam::-12345678901:role/web"}, "account"},
        // The partition: "aws" or "aws-<name>", lowercase.
        {{ArnRow::trust_anchor, "arn:AWS" + region_account + "trust-anchor/" + ta_id}, "partition"},
        {{ArnRow::trust_anchor, "arn:amazon" + region_account + "trust-anchor/" + ta_id}, "partition"},
        {{ArnRow::trust_anchor, "arn:aws-" + region_account + "trust-anchor/" + ta_id}, "partition"},
        {{ArnRow::trust_anchor, "arn:aws-Cn" + region_account + "trust-anchor/" + ta_id}, "partition"},
        // Regions: every Roles Anywhere ARN has one, an IAM ARN has none.
        {{ArnRow::profile, std::string("arn:aws:rolesanywhere:eu_west_1:123456789012:profile/") + kProfileId},
         "region"},
        {{ArnRow::role, "arn:aws:iam:eu-west-1:123456789012:role/web"}, "region"},
        // Trust anchor and profile ids are UUIDs.
        {{ArnRow::trust_anchor, "arn:aws" + region_account + "trust-anchor/ta-1"}, "trust-anchor/"},
        {{ArnRow::trust_anchor, "arn:aws" + region_account + "trust-anchor/" + ta_id + "0"}, "trust-anchor/"},
        {{ArnRow::trust_anchor,
          "arn:aws" + region_account + "trust-anchor/0A1B2C3D-0000-4000-8000-000000000001"},
         "trust-anchor/"},
        {{ArnRow::trust_anchor,
          "arn:aws" + region_account + "trust-anchor/0a1b2c3d_0000-4000-8000-000000000001"},
         "trust-anchor/"},
        {{ArnRow::profile, "arn:aws" + region_account + "profile/pr-1"}, "profile/"},
        {{ArnRow::profile, "arn:aws" + region_account + "profile/" + std::string(kProfileId) + "/x"},
         "profile/"},
        // Role names: 1 to 64 of [A-Za-z0-9+=,.@_-]; paths: "/" or "/<printable>/", at most 512 characters.
        {{ArnRow::role, iam + std::string(65, 'n')}, "role"},
        {{ArnRow::role, iam + "a*b"}, "role"},
        {{ArnRow::role, iam + "app/"}, "role"},
        {{ArnRow::role, iam + "/web"}, "role"},
        {{ArnRow::role, iam + "app//web"}, "role"},
        {{ArnRow::role, iam + std::string(511, 'p') + "/n"}, "role"},
        {{ArnRow::role, "arn:aws:iam::123456789012:role:web"}, "role/"},
    };
    for (const auto& [row, mention] : rows) {
        auto resolved = resolve_endpoint(with_arn(row));
        ASSERT_FALSE(resolved) << row.arn;
        EXPECT_EQ(resolved.error().code, Errc::usage) << row.arn;
        const std::string& message = resolved.error().message;
        // The flag comes first: the configuration file maps it to its key and line.
        EXPECT_EQ(message.rfind(flag_of(row.which), 0), 0u) << message;
        EXPECT_NE(message.find(mention), std::string::npos) << "'" << mention << "' not in: " << message;
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
}

TEST(ResolveEndpointTest, RejectsMixedPartitionsBadRegionsAndFipsPseudoRegions) {
    EndpointOptions o = options();
    o.role_arn = "arn:aws-cn:iam::123456789012:role/r";
    expect_usage_error(o, {"partition"});

    o = options("aws", "EU_WEST_1");
    expect_usage_error(o, {"--trust-anchor-arn", "region"});

    o = options();
    o.region = "us-east-1.evil.example";
    expect_usage_error(o, {"--region"});

    o = options();
    o.region = "us-gov-west-1-fips";
    expect_usage_error(o, {"--region", "--use-fips-endpoint"});

    o = options("aws-cn", "cn-north-1");
    o.use_fips = true;
    expect_usage_error(o, {"--use-fips-endpoint", "aws-cn"});

    o = options("aws-unknown", "xx-1");
    expect_usage_error(o, {"--endpoint", "aws-unknown"});
    o.endpoint = "https://ra.example.test";
    EXPECT_TRUE(resolve_endpoint(o));

    o = options();
    o.endpoint = "ftp://x";
    expect_usage_error(o, {"--endpoint"});
}

TEST(ResolveEndpointTest, SaysWhichFieldIsAtFaultInTheCallersTerms) {
    const EndpointNames keys{"trust_anchor_arn", "profile_arn", "role_arn",
                             "region",           "endpoint",    "use_fips_endpoint"};
    const struct {
        const char* what;
        void (*change)(EndpointOptions&);
        std::string_view name_at_fault;
        const char* starts_with;
    } rows[] = {
        {"a malformed role", [](EndpointOptions& o) { o.role_arn = "arn:aws:iam::role"; }, "role_arn",
         "role_arn "},
        {"profile in another region",
         [](EndpointOptions& o) {
             o.profile_arn =
                 "arn:aws:rolesanywhere:eu-central-1:123456789012:profile/"
                 "0a1b2c3d-0000-4000-8000-000000000002";
         },
         "trust_anchor_arn", "trust_anchor_arn and profile_arn "},
        {"a region that is not one", [](EndpointOptions& o) { o.region = "Not A Region"; }, "region",
         "region "},
        {"an endpoint that is not a URL", [](EndpointOptions& o) { o.endpoint = "ftp://x"; }, "endpoint",
         "endpoint "},
    };
    for (const auto& row : rows) {
        EndpointOptions o = options();
        row.change(o);
        std::string_view name_at_fault = "use_fips_endpoint";
        auto resolved = resolve_endpoint(o, keys, &name_at_fault);
        ASSERT_FALSE(resolved) << row.what;
        EXPECT_EQ(name_at_fault, row.name_at_fault) << row.what;
        EXPECT_EQ(resolved.error().message.rfind(row.starts_with, 0), 0u) << resolved.error().message;
        EXPECT_EQ(resolved.error().message.find("--"), std::string::npos) << resolved.error().message;
    }
}

}  // namespace
}  // namespace rad::signer
