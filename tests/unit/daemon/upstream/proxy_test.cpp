#include "daemon/upstream/proxy.hpp"

#include <gtest/gtest.h>

#include <map>

namespace rad::upstream {
namespace {

EnvLookup env_of(std::map<std::string, std::string> values) {
    return [values = std::move(values)](const char* name) -> std::optional<std::string> {
        if (auto it = values.find(name); it != values.end()) {
            return it->second;
        }
        return std::nullopt;
    };
}

signer::Url url(std::string scheme, std::string host, std::string port) {
    signer::Url u;
    u.scheme = std::move(scheme);
    u.host = std::move(host);
    u.port = std::move(port);
    return u;
}

TEST(ProxyTest, ParsesHostAndPortWithAndWithoutScheme) {
    auto a = parse_proxy_url("http://proxy.example:3128", "HTTPS_PROXY");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host, "proxy.example");
    EXPECT_EQ(a->port, "3128");
    EXPECT_FALSE(a->authorization);
    auto b = parse_proxy_url("10.0.0.1:8080/", "HTTPS_PROXY");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->host, "10.0.0.1");
    EXPECT_EQ(b->port, "8080");
}

TEST(ProxyTest, DefaultsToPort80AndUnbracketsIpv6) {
    auto a = parse_proxy_url("http://[::1]", "HTTPS_PROXY");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host, "::1");
    EXPECT_EQ(a->port, "80");
}

TEST(ProxyTest, TurnsUserInfoIntoBasicAuthorization) {
    auto a = parse_proxy_url("http://alice:s%40cret@proxy:3128", "HTTPS_PROXY");
    ASSERT_TRUE(a);
    ASSERT_TRUE(a->authorization);
    // base64("alice:s@cret")
    EXPECT_EQ(a->authorization->reveal(), "Basic YWxpY2U6c0BjcmV0");
}

TEST(ProxyTest, RefusesOtherSchemesAndBadPorts) {
    auto socks = parse_proxy_url("socks5://proxy:1080", "HTTPS_PROXY");
    ASSERT_FALSE(socks);
    EXPECT_EQ(socks.error().code, Errc::usage);
    EXPECT_NE(socks.error().message.find("HTTPS_PROXY"), std::string::npos);
    EXPECT_FALSE(parse_proxy_url("http://proxy:0", "HTTPS_PROXY"));
    EXPECT_FALSE(parse_proxy_url("http://proxy:99999", "HTTPS_PROXY"));
    EXPECT_FALSE(parse_proxy_url("http://proxy:abc", "HTTPS_PROXY"));
    EXPECT_FALSE(parse_proxy_url("http://", "HTTPS_PROXY"));
}

TEST(ProxyTest, NoProxyMatchesDomainsSuffixesPortsAndWildcard) {
    EXPECT_TRUE(no_proxy_matches("*", "anything", "443"));
    EXPECT_TRUE(no_proxy_matches("amazonaws.com", "rolesanywhere.us-east-1.amazonaws.com", "443"));
    EXPECT_TRUE(no_proxy_matches(".amazonaws.com", "rolesanywhere.us-east-1.amazonaws.com", "443"));
    EXPECT_TRUE(no_proxy_matches("foo, amazonaws.com", "AMAZONAWS.com", "443"));
    EXPECT_FALSE(no_proxy_matches("zonaws.com", "amazonaws.com", "443"));
    EXPECT_TRUE(no_proxy_matches("127.0.0.1:8443", "127.0.0.1", "8443"));
    EXPECT_FALSE(no_proxy_matches("127.0.0.1:8443", "127.0.0.1", "443"));
    EXPECT_TRUE(no_proxy_matches("[::1]", "::1", "443"));
    EXPECT_TRUE(no_proxy_matches("::1", "[::1]", "443"));
    EXPECT_FALSE(no_proxy_matches("", "example.com", "443"));
}

TEST(ProxyTest, PicksHttpsProxyForHttpsAndHttpProxyForHttp) {
    auto env = env_of({{"HTTPS_PROXY", "http://secure-proxy:1"}, {"HTTP_PROXY", "http://plain-proxy:2"}});
    auto https = proxy_for(url("https", "example.com", "443"), env);
    ASSERT_TRUE(https);
    ASSERT_TRUE(https->has_value());
    EXPECT_EQ((*https)->host, "secure-proxy");
    auto http = proxy_for(url("http", "example.com", "80"), env);
    ASSERT_TRUE(http);
    ASSERT_TRUE(http->has_value());
    EXPECT_EQ((*http)->host, "plain-proxy");
}

TEST(ProxyTest, LowercaseVariablesWinAndNoProxyExempts) {
    auto env = env_of(
        {{"HTTPS_PROXY", "http://upper:1"}, {"https_proxy", "http://lower:2"}, {"no_proxy", "127.0.0.1"}});
    auto chosen = proxy_for(url("https", "example.com", "443"), env);
    ASSERT_TRUE(chosen);
    ASSERT_TRUE(chosen->has_value());
    EXPECT_EQ((*chosen)->host, "lower");
    auto exempt = proxy_for(url("https", "127.0.0.1", "443"), env);
    ASSERT_TRUE(exempt);
    EXPECT_FALSE(exempt->has_value());
}

TEST(ProxyTest, NoVariablesMeansDirect) {
    auto direct = proxy_for(url("https", "example.com", "443"), env_of({}));
    ASSERT_TRUE(direct);
    EXPECT_FALSE(direct->has_value());
}

}  // namespace
}  // namespace rad::upstream
