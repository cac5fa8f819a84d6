// The agent socket's line protocol: pure functions, so every case is a table row.
#include "daemon/control/control_protocol.hpp"

#include <gtest/gtest.h>

namespace rad::control {
namespace {

TEST(ControlProtocol, RequestsRoundTrip) {
    ControlRequest request;
    request.kind = ControlRequest::Kind::credentials;
    request.profile = "web-1.prod_a";
    request.min_seconds = 900;
    const std::string line = format_control_request(request);
    EXPECT_EQ(line, "credentials web-1.prod_a 900\n");
    auto parsed = parse_control_request(line);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->kind, ControlRequest::Kind::credentials);
    EXPECT_EQ(parsed->profile, "web-1.prod_a");
    EXPECT_EQ(parsed->min_seconds, 900);
    auto status = parse_control_request("status\n");
    ASSERT_TRUE(status);
    EXPECT_EQ(status->kind, ControlRequest::Kind::status);
}

TEST(ControlProtocol, RefreshRequestRoundTrips) {
    ControlRequest request;
    request.kind = ControlRequest::Kind::refresh;
    request.profile = "web";
    EXPECT_EQ(format_control_request(request), "refresh web\n");
    auto parsed = parse_control_request("refresh web\n");
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->kind, ControlRequest::Kind::refresh);
    EXPECT_EQ(parsed->profile, "web");
    EXPECT_FALSE(parse_control_request("refresh \n"));
    EXPECT_FALSE(parse_control_request("refresh a b\n"));
    EXPECT_FALSE(parse_control_request("refresh\n"));
}

TEST(ControlProtocol, DefaultMinimumRoundTrips) {
    ControlRequest request;
    request.kind = ControlRequest::Kind::credentials;
    request.profile = "web";
    EXPECT_EQ(request.min_seconds, ControlRequest::kDefaultMinSeconds);
    EXPECT_EQ(format_control_request(request), "credentials web default\n");
    auto parsed = parse_control_request("credentials web default\n");
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->min_seconds, ControlRequest::kDefaultMinSeconds);
}

TEST(ControlProtocol, AnOlderClientsConfigIdentityIsAcceptedAndIgnored) {
    auto parsed =
        parse_control_request("credentials web default config=259:1:393411:640:1795000000.123:1.5\n");
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->profile, "web");
    EXPECT_EQ(parsed->min_seconds, ControlRequest::kDefaultMinSeconds);
    auto with_minimum = parse_control_request("credentials web 900 config=1:2\n");
    ASSERT_TRUE(with_minimum);
    EXPECT_EQ(with_minimum->min_seconds, 900);
    for (const char* bad : {"credentials web 900 config=\n", "credentials web 900 config=1:2 x\n",
                            "credentials web 900 identity=1:2\n", "credentials web 900 config=-1:2\n",
                            "credentials web 900 config=1/2\n"}) {
        EXPECT_FALSE(parse_control_request(bad)) << bad;
    }
}

TEST(ControlProtocol, RequestsCarryNoConfigIdentity) {
    ControlRequest request;
    request.kind = ControlRequest::Kind::credentials;
    request.profile = "web";
    request.min_seconds = 900;
    EXPECT_EQ(format_control_request(request), "credentials web 900\n");
}

TEST(ControlProtocol, RefusesMalformedRequests) {
    for (const char* line :
         {"", "\n", "credentials\n", "credentials web\n", "credentials web x\n", "credentials web -1\n",
          "credentials web 43201\n", "credentials web 9 9\n", "credentials ../etc 900\n",
          "credentials a b 900\n", "statusx\n", "GET / HTTP/1.1\n"}) {
        auto parsed = parse_control_request(line);
        EXPECT_FALSE(parsed) << line;
        if (!parsed) {
            EXPECT_EQ(parsed.error().code, Errc::upstream_malformed);
        }
    }
}

TEST(ControlProtocol, OkReplyCarriesThePayload) {
    const Secret reply = format_ok_reply(R"({"Version":1})");
    EXPECT_EQ(reply.reveal(), "ok {\"Version\":1}\n");
    auto parsed = parse_control_reply(reply.reveal());
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->reveal(), R"({"Version":1})");
}

TEST(ControlProtocol, ErrorReplyKeepsTheClassOnOneLine) {
    const std::string reply =
        format_error_reply(make_error(Errc::upstream_rejected, "HTTP 403\nAccessDenied"));
    EXPECT_EQ(reply, "error upstream_rejected HTTP 403 AccessDenied\n");
    auto parsed = parse_control_reply(reply);
    ASSERT_FALSE(parsed);
    EXPECT_EQ(parsed.error().code, Errc::upstream_rejected);
    EXPECT_EQ(parsed.error().message, "agent: HTTP 403 AccessDenied");
}

TEST(ControlProtocol, TruncatedOrUnknownRepliesAreErrors) {
    EXPECT_FALSE(parse_control_reply("ok {\"Version\":1}"));  // no newline: the agent died mid-write
    EXPECT_EQ(parse_control_reply("hello\n").error().code, Errc::upstream_malformed);
    EXPECT_EQ(parse_control_reply("error no_such_class boom\n").error().code, Errc::internal);
}

}  // namespace
}  // namespace rad::control
