// The pre-routing checks: proxies (400), browsers (403), DNS rebinding through foreign Host values (403).
#include "daemon/surfaces/request_guard.hpp"

#include <gtest/gtest.h>

#include "tests/support/case_name.hpp"

namespace rad::surfaces {
namespace {

using Header = std::pair<std::string, std::string>;

SurfaceRequest make_request(std::string method,
                            std::vector<Header> headers,
                            std::string target = "/latest/api/token") {
    SurfaceRequest r;
    r.method = std::move(method);
    r.target = std::move(target);
    r.headers = std::move(headers);
    return r;
}

struct HostCase {
    const char* host;
    bool allowed;
};

class HostAllowList : public ::testing::TestWithParam<HostCase> {};

TEST_P(HostAllowList, ComparesHostPartOnly) {
    EXPECT_EQ(host_allowed(GetParam().host), GetParam().allowed);
}

INSTANTIATE_TEST_SUITE_P(Table,
                         HostAllowList,
                         ::testing::Values(HostCase{"127.0.0.1", true},
                                           HostCase{"127.0.0.1:9911", true},
                                           HostCase{"localhost", true},
                                           HostCase{"localhost:80", true},
                                           HostCase{"LocalHost:9911", true},
                                           HostCase{"LOCALHOST", true},
                                           HostCase{"[::1]", true},
                                           HostCase{"[::1]:9911", true},
                                           HostCase{"169.254.169.254", true},
                                           HostCase{"169.254.169.254:80", true},
                                           HostCase{"169.254.170.2", true},
                                           HostCase{"169.254.170.2:80", true},
                                           HostCase{"127.0.0.1:65535", true},
                                           // refused
                                           HostCase{"", false},
                                           HostCase{":80", false},
                                           HostCase{"127.0.0.2", false},
                                           HostCase{"127.0.0.1.", false},
                                           HostCase{"localhost.", false},
                                           HostCase{"evil.example", false},
                                           HostCase{"evil.example:9911", false},
                                           HostCase{"localhost.evil.example", false},
                                           HostCase{"127.0.0.1.nip.io", false},
                                           HostCase{"127.0.0.1:", false},
                                           HostCase{"127.0.0.1:abc", false},
                                           HostCase{"127.0.0.1:65536", false},
                                           HostCase{"127.0.0.1:123456", false},
                                           HostCase{"127.0.0.1:80:81", false},
                                           HostCase{"127.0.0.1 ", false},
                                           HostCase{" 127.0.0.1", false},
                                           HostCase{"::1", false},
                                           HostCase{"[::1", false},
                                           HostCase{"[::1]x", false},
                                           HostCase{"[::1]:", false},
                                           HostCase{"[::2]", false},
                                           HostCase{"[0:0:0:0:0:0:0:1]", false},
                                           HostCase{"169.254.169.253", false},
                                           HostCase{"169.254.170.23", false},
                                           HostCase{"0.0.0.0", false},
                                           HostCase{"user@127.0.0.1", false}),
                         [](const ::testing::TestParamInfo<HostCase>& row) {
                             return std::string(row.param.allowed ? "allowed_" : "refused_") +
                                    test::case_name(row.param.host);
                         });

TEST(GuardRequest, PlainRequestsPass) {
    EXPECT_FALSE(guard_request(make_request("PUT", {{"Host", "127.0.0.1:9911"},
                                                    {"X-aws-ec2-metadata-token-ttl-seconds", "21600"}}))
                     .has_value());
    EXPECT_FALSE(guard_request(make_request("GET", {{"host", "127.0.0.1"}}, "/credentials/web")).has_value());
}

TEST(GuardRequest, ProxyHeadersRefusedOnEveryMethod) {
    for (const char* method : {"GET", "PUT", "POST", "OPTIONS"}) {
        for (const char* name : {"X-Forwarded-For", "x-forwarded-for", "Forwarded", "FORWARDED", "Via", "via",
                                 "X-Forwarded-Host", "X-Real-IP"}) {
            const auto r = guard_request(make_request(method, {{"Host", "127.0.0.1"}, {name, "10.0.0.1"}}));
            ASSERT_TRUE(r.has_value()) << method << " " << name;
            EXPECT_EQ(r->status, 400) << method << " " << name;
            EXPECT_EQ(*r->header("Content-Type"), "text/plain");
            EXPECT_EQ(r->body.reveal().find("10.0.0.1"), std::string_view::npos);
        }
    }
}

TEST(GuardRequest, BrowserHeadersRefused) {
    for (const char* method : {"GET", "PUT"}) {
        for (const char* name : {"Origin", "origin", "Sec-Fetch-Site", "sec-fetch-mode", "Sec-Fetch-Dest",
                                 "SEC-FETCH-USER", "Sec-Fetch-Anything"}) {
            const auto r = guard_request(make_request(method, {{"Host", "127.0.0.1:9911"}, {name, "null"}}));
            ASSERT_TRUE(r.has_value()) << method << " " << name;
            EXPECT_EQ(r->status, 403) << method << " " << name;
        }
    }
    // Look-alikes are not browser headers.
    EXPECT_FALSE(guard_request(make_request("GET", {{"Host", "127.0.0.1"}, {"Sec-Fetch", "x"}})).has_value());
    EXPECT_FALSE(guard_request(make_request("GET", {{"Host", "127.0.0.1"}, {"X-Origin", "x"}})).has_value());
}

TEST(GuardRequest, HostRules) {
    const auto none = guard_request(make_request("GET", {}));
    ASSERT_TRUE(none.has_value());
    EXPECT_EQ(none->status, 400);
    const auto twice = guard_request(make_request("GET", {{"Host", "127.0.0.1"}, {"host", "127.0.0.1"}}));
    ASSERT_TRUE(twice.has_value());
    EXPECT_EQ(twice->status, 400);
    for (const char* method : {"GET", "PUT"}) {
        const auto foreign = guard_request(make_request(method, {{"Host", "attacker.example:9911"}}));
        ASSERT_TRUE(foreign.has_value());
        EXPECT_EQ(foreign->status, 403);
        EXPECT_EQ(foreign->body.reveal().find("attacker"), std::string_view::npos);
    }
}

TEST(GuardRequest, ProxyFormTargetsRefused) {
    for (const char* target : {"http://127.0.0.1:9911/latest/api/token", "*", "", "latest/api/token"}) {
        const auto r = guard_request(make_request("GET", {{"Host", "127.0.0.1"}}, target));
        ASSERT_TRUE(r.has_value()) << target;
        EXPECT_EQ(r->status, 400) << target;
    }
}

}  // namespace
}  // namespace rad::surfaces

namespace rad::surfaces {
namespace {

TEST(GuardRequest, RequestBodiesRefused) {
    const std::vector<std::vector<Header>> bodies = {
        {{"Host", "127.0.0.1"}, {"Content-Length", "5"}},
        {{"Host", "127.0.0.1"}, {"content-length", "1"}},
        {{"Host", "127.0.0.1"}, {"Transfer-Encoding", "chunked"}},
        {{"Host", "127.0.0.1"}, {"transfer-encoding", "identity"}},
    };
    for (const auto& headers : bodies) {
        const auto r = guard_request(make_request("GET", headers));
        ASSERT_TRUE(r.has_value()) << headers[1].first;
        EXPECT_EQ(r->status, 400);
        EXPECT_EQ(r->body.reveal(), "request bodies are refused");
    }
    // The token PUT of an SDK announces an empty body.
    EXPECT_FALSE(guard_request(make_request("PUT", {{"Host", "127.0.0.1"}, {"Content-Length", "0"}})));
}

TEST(GuardRequest, TooManyHeaderFieldsGet431) {
    std::vector<Header> headers = {{"Host", "127.0.0.1"}};
    while (headers.size() < kMaxRequestHeaderFields) {
        headers.emplace_back("X", "1");
    }
    EXPECT_FALSE(guard_request(make_request("GET", headers)));
    headers.emplace_back("X", "1");
    const auto r = guard_request(make_request("GET", headers));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 431);
}

}  // namespace
}  // namespace rad::surfaces
