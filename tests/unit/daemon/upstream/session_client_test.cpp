#include "daemon/upstream/session_client.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <deque>

#include "common/time_format.hpp"

namespace rad::upstream {
namespace {

using namespace std::chrono_literals;

pki::Identity test_identity() {
    const char* dir = std::getenv("RAD_TEST_PKI");
    if (dir == nullptr) {
        throw std::runtime_error("RAD_TEST_PKI is not set (run through ctest)");
    }
    pki::IdentitySource source;
    source.certificate = std::string(dir) + "/p256.pem";
    source.private_key = std::string(dir) + "/p256.key";
    return pki::load_identity(source, std::chrono::system_clock::now()).value();
}

signer::HttpResponse answer(int status, std::string body, std::vector<signer::Header> headers = {}) {
    signer::HttpResponse r;
    r.status = status;
    r.body = std::move(body);
    r.headers = std::move(headers);
    return r;
}

// ScriptedUpstream plays a list of answers and records what was sent, when and how long the loop slept.
struct ScriptedUpstream {
    std::deque<Result<signer::HttpResponse>> script;
    std::vector<signer::HttpRequest> sent;
    std::vector<std::chrono::milliseconds> sleeps;
    std::chrono::system_clock::time_point clock = std::chrono::system_clock::now();

    SessionClientHooks hooks() {
        SessionClientHooks h;
        h.send = [this](const signer::Url&,
                        const signer::HttpRequest& request) -> Result<signer::HttpResponse> {
            sent.push_back(request);
            if (script.empty()) {
                ADD_FAILURE() << "more attempts than scripted answers";
                return make_error(Errc::internal, "script exhausted");
            }
            auto next = std::move(script.front());
            script.pop_front();
            return next;
        };
        h.now = [this] { return clock; };
        h.sleep = [this](std::chrono::milliseconds d) {
            sleeps.push_back(d);
            clock += d + 1s;  // at least a second passes, so every attempt gets a new X-Amz-Date
        };
        h.jitter01 = [] { return 0.5; };
        return h;
    }

    std::string ok_body() const {
        return R"({"credentialSet":[{"credentials":{"accessKeyId":"ASIAEXAMPLE0001","secretAccessKey":"s3cr3t",)"
               R"("sessionToken":"t0k3n","expiration":")" +
               format_iso8601(clock + 1h) + R"("}}]})";
    }
};

signer::ResolvedEndpoint endpoint() {
    signer::ResolvedEndpoint e;
    e.region = "us-east-1";
    e.url.scheme = "https";
    e.url.host = "rolesanywhere.us-east-1.amazonaws.com";
    e.url.port = "443";
    return e;
}

signer::CreateSessionParams params() {
    signer::CreateSessionParams p;
    p.trust_anchor_arn = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ta";
    p.profile_arn = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/pr";
    p.role_arn = "arn:aws:iam::123456789012:role/r";
    return p;
}

class SessionClientTest : public ::testing::Test {
protected:
    pki::Identity identity_ = test_identity();
    ScriptedUpstream upstream_;

    Result<signer::Credentials> run() {
        return fetch_credentials(identity_, params(), endpoint(), RetryOptions{}, upstream_.hooks());
    }
};

TEST_F(SessionClientTest, ReturnsCredentialsOfAFirstSuccessWithoutSleeping) {
    upstream_.script.push_back(answer(201, upstream_.ok_body()));
    auto creds = run();
    ASSERT_TRUE(creds) << creds.error().message;
    EXPECT_EQ(creds->access_key_id, "ASIAEXAMPLE0001");
    EXPECT_EQ(upstream_.sent.size(), 1u);
    EXPECT_TRUE(upstream_.sleeps.empty());
    ASSERT_NE(upstream_.sent[0].header("Authorization"), nullptr);
}

TEST_F(SessionClientTest, RetriesServerErrorsAndSignsEveryAttemptAgain) {
    upstream_.script.push_back(answer(500, "{}"));
    upstream_.script.push_back(answer(503, "{}"));
    // ok_body() expires an hour after the start; the retries below advance the clock by seconds only.
    upstream_.script.push_back(answer(201, upstream_.ok_body()));
    auto creds = run();
    ASSERT_TRUE(creds) << creds.error().message;
    ASSERT_EQ(upstream_.sent.size(), 3u);
    ASSERT_EQ(upstream_.sleeps.size(), 2u);
    EXPECT_EQ(upstream_.sleeps[0], 500ms);   // 0.5 × 1 s
    EXPECT_EQ(upstream_.sleeps[1], 1000ms);  // 0.5 × 2 s
    EXPECT_NE(*upstream_.sent[0].header("X-Amz-Date"), *upstream_.sent[1].header("X-Amz-Date"));
    EXPECT_NE(*upstream_.sent[1].header("X-Amz-Date"), *upstream_.sent[2].header("X-Amz-Date"));
    EXPECT_NE(*upstream_.sent[0].header("Authorization"), *upstream_.sent[2].header("Authorization"));
}

TEST_F(SessionClientTest, GivesUpAfterThreeRetryableFailures) {
    for (int i = 0; i < 3; ++i) {
        upstream_.script.push_back(answer(503, R"({"message":"busy"})"));
    }
    auto creds = run();
    ASSERT_FALSE(creds);
    EXPECT_EQ(creds.error().code, Errc::upstream_server_error);
    EXPECT_EQ(upstream_.sent.size(), 3u);
    EXPECT_EQ(upstream_.sleeps.size(), 2u);
}

TEST_F(SessionClientTest, DoesNotRetryARejection) {
    upstream_.script.push_back(
        answer(403, R"({"message":"Invalid signature"})", {{"X-Amzn-ErrorType", "AccessDeniedException"}}));
    auto creds = run();
    ASSERT_FALSE(creds);
    EXPECT_EQ(creds.error().code, Errc::upstream_rejected);
    EXPECT_EQ(upstream_.sent.size(), 1u);
    EXPECT_TRUE(upstream_.sleeps.empty());
}

TEST_F(SessionClientTest, RetriesNetworkFailuresFromTheTransport) {
    upstream_.script.push_back(make_error(Errc::upstream_unreachable, "connect: Connection refused"));
    upstream_.script.push_back(answer(201, upstream_.ok_body()));
    auto creds = run();
    ASSERT_TRUE(creds) << creds.error().message;
    EXPECT_EQ(upstream_.sent.size(), 2u);
}

TEST_F(SessionClientTest, HonoursRetryAfterAsTheLeastDelay) {
    upstream_.script.push_back(answer(429, "{}", {{"Retry-After", "7"}}));
    upstream_.script.push_back(answer(201, upstream_.ok_body()));
    auto creds = run();
    ASSERT_TRUE(creds) << creds.error().message;
    ASSERT_EQ(upstream_.sleeps.size(), 1u);
    EXPECT_GE(upstream_.sleeps[0], 7000ms);
}

TEST_F(SessionClientTest, StopsAtOnceWhenRetryAfterIsLongerThanACommandMayWait) {
    upstream_.script.push_back(answer(429, "{}", {{"Retry-After", "600"}}));
    auto creds = run();
    ASSERT_FALSE(creds);
    EXPECT_EQ(creds.error().code, Errc::upstream_throttled);
    EXPECT_NE(creds.error().message.find("600"), std::string::npos);
    EXPECT_EQ(upstream_.sent.size(), 1u);
    EXPECT_TRUE(upstream_.sleeps.empty());
}

TEST_F(SessionClientTest, TreatsAMalformedSuccessAsRetryableAndNeverAsEmptyCredentials) {
    upstream_.script.push_back(answer(201, R"({"credentialSet":[]})"));
    upstream_.script.push_back(answer(201, "not json"));
    upstream_.script.push_back(
        answer(201, R"({"credentialSet":[{"credentials":{"accessKeyId":"","secretAccessKey":"",)"
                    R"("sessionToken":"","expiration":"2099-01-01T00:00:00Z"}}]})"));
    auto creds = run();
    ASSERT_FALSE(creds);
    EXPECT_EQ(creds.error().code, Errc::upstream_malformed);
    EXPECT_EQ(upstream_.sent.size(), 3u);
}

}  // namespace
}  // namespace rad::upstream
