// Building the CreateSession request and classifying every kind of answer.

#include "signer/create_session.hpp"

#include <gtest/gtest.h>

#include "common/time_format.hpp"

namespace rad::signer {
namespace {

using namespace std::chrono_literals;

const SystemTime kNow = parse_rfc3339("2025-06-01T12:00:00Z").value();

// Distinctive values that must never show up in an error message.
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY";
constexpr const char* kToken = "IQoJb3JpZ2luX2VjSESSIONTOKENVALUE==";

std::string credentials_body(const std::string& access_key = "ASIAEXAMPLEKEY123456",
                             const std::string& secret = kSecret,
                             const std::string& token = kToken,
                             const std::string& expiration = "2025-06-01T13:00:00Z") {
    return R"({"credentialSet":[{"assumedRoleUser":{"arn":"arn:aws:sts::123456789012:assumed-role/r/s",)"
           R"("assumedRoleId":"AROAX:s"},"credentials":{"accessKeyId":")" +
           access_key + R"(","expiration":")" + expiration + R"(","secretAccessKey":")" + secret +
           R"(","sessionToken":")" + token +
           R"("},"packedPolicySize":10,"roleArn":"arn:aws:iam::123456789012:role/r","sourceIdentity":"CN=x"}],)"
           R"("subjectArn":"arn:aws:rolesanywhere:us-east-1:123456789012:subject/s"})";
}

HttpResponse answer(int status, std::string body, std::vector<Header> headers = {}) {
    HttpResponse r;
    r.status = status;
    r.body = std::move(body);
    r.headers = std::move(headers);
    return r;
}

void expect_clean(const Error& error) {
    EXPECT_EQ(error.message.find(kSecret), std::string::npos) << error.message;
    EXPECT_EQ(error.message.find(kToken), std::string::npos) << error.message;
    EXPECT_EQ(error.message.find('\n'), std::string::npos) << error.message;
}

TEST(SessionDurationTest, AcceptsExactlyTheServiceBounds) {
    EXPECT_FALSE(check_session_duration(899));
    EXPECT_TRUE(check_session_duration(900));
    EXPECT_TRUE(check_session_duration(3600));
    EXPECT_TRUE(check_session_duration(43200));
    EXPECT_FALSE(check_session_duration(43201));
    EXPECT_FALSE(check_session_duration(-1));
    auto r = check_session_duration(43201);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::usage);
    EXPECT_NE(r.error().message.find("--session-duration"), std::string::npos);
    EXPECT_NE(r.error().message.find("43201"), std::string::npos);
}

Url test_url() {
    Url url;
    url.scheme = "https";
    url.host = "::1";
    url.port = "8443";
    url.explicit_port = true;
    url.path = "/prefix";
    return url;
}

CreateSessionParams test_params() {
    CreateSessionParams p;
    p.trust_anchor_arn = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ta";
    p.profile_arn = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/pr";
    p.role_arn = "arn:aws:iam::123456789012:role/r";
    return p;
}

TEST(MakeCreateSessionRequestTest, BuildsTheUnsignedPost) {
    const HttpRequest r = make_create_session_request(test_params(), test_url());
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.path, "/sessions");  // the URL's path prefix is the transport's business, not signed
    EXPECT_EQ(r.host, "[::1]:8443");
    ASSERT_NE(r.header("Host"), nullptr);
    EXPECT_EQ(*r.header("Host"), "[::1]:8443");
    ASSERT_NE(r.header("Content-Type"), nullptr);
    EXPECT_EQ(*r.header("Content-Type"), "application/json");
    EXPECT_EQ(r.body, R"({"durationSeconds":3600})");
    EXPECT_EQ(encoded_query(r),
              "profileArn=arn%3Aaws%3Arolesanywhere%3Aus-east-1%3A123456789012%3Aprofile%2Fpr"
              "&roleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fr"
              "&trustAnchorArn=arn%3Aaws%3Arolesanywhere%3Aus-east-1%3A123456789012%3Atrust-anchor%2Fta");
}

TEST(MakeCreateSessionRequestTest, AddsAnEscapedRoleSessionNameAfterTheDuration) {
    CreateSessionParams p = test_params();
    p.duration_seconds = 900;
    p.role_session_name = "web-01@example.com";
    EXPECT_EQ(make_create_session_request(p, test_url()).body,
              R"({"durationSeconds":900,"roleSessionName":"web-01@example.com"})");
    p.role_session_name = "a\"b\\c\nd";
    EXPECT_EQ(make_create_session_request(p, test_url()).body,
              R"({"durationSeconds":900,"roleSessionName":"a\"b\\c\nd"})");
}

TEST(ParseResponseTest, ReturnsTheCredentialsOfAValidAnswer) {
    auto creds = parse_create_session_response(answer(201, credentials_body()), kNow);
    ASSERT_TRUE(creds) << creds.error().message;
    EXPECT_EQ(creds.value().access_key_id, "ASIAEXAMPLEKEY123456");
    EXPECT_EQ(creds.value().secret_access_key.reveal(), kSecret);
    EXPECT_EQ(creds.value().session_token.reveal(), kToken);
    EXPECT_EQ(creds.value().expiration, kNow + 1h);
}

TEST(ParseResponseTest, AcceptsAnyTwoHundredAndFractionalOrOffsetExpirations) {
    auto creds = parse_create_session_response(
        answer(200, credentials_body("AKID", kSecret, kToken, "2025-06-01T14:00:00.123+01:00")), kNow);
    ASSERT_TRUE(creds) << creds.error().message;
    EXPECT_EQ(creds.value().expiration, kNow + 1h);
}

TEST(ParseResponseTest, EveryBrokenSuccessIsMalformedAndNeverLeaksTheBody) {
    const std::string missing_token =
        R"({"credentialSet":[{"credentials":{"accessKeyId":"AKID","secretAccessKey":")" +
        std::string(kSecret) + R"(","expiration":"2025-06-01T13:00:00Z"}}]})";
    const std::string numeric_token =
        R"({"credentialSet":[{"credentials":{"accessKeyId":"AKID","secretAccessKey":")" +
        std::string(kSecret) + R"(","sessionToken":42,"expiration":"2025-06-01T13:00:00Z"}}]})";
    struct Row {
        std::string name, body, mention;
    };
    const Row rows[] = {
        {"not json", std::string("{\"credentialSet\":[") + kSecret, "JSON"},
        {"empty body", "", "JSON"},
        {"not an object", "[1,2]", "object"},
        {"no credentialSet", R"({"subjectArn":"x"})", "credentialSet"},
        {"empty credentialSet", R"({"credentialSet":[]})", "credentialSet"},
        {"credentialSet not an array", R"({"credentialSet":{"credentials":{}}})", "credentialSet"},
        {"element not an object", R"({"credentialSet":["x"]})", "credentialSet[0]"},
        {"no credentials", R"({"credentialSet":[{"roleArn":"r"}]})", "credentials"},
        {"missing sessionToken", missing_token, "sessionToken"},
        {"non-string sessionToken", numeric_token, "sessionToken"},
        {"empty accessKeyId", credentials_body(""), "accessKeyId"},
        {"empty secretAccessKey", credentials_body("AKID", ""), "secretAccessKey"},
        {"empty sessionToken", credentials_body("AKID", kSecret, ""), "sessionToken"},
        {"empty expiration", credentials_body("AKID", kSecret, kToken, ""), "expiration"},
        {"unparsable expiration", credentials_body("AKID", kSecret, kToken, "tomorrow"), "expiration"},
        {"expiration in the past", credentials_body("AKID", kSecret, kToken, "2025-06-01T11:59:59Z"),
         "expiration"},
        {"expiration is now", credentials_body("AKID", kSecret, kToken, "2025-06-01T12:00:00Z"),
         "expiration"},
        {"expiration 13 hours away", credentials_body("AKID", kSecret, kToken, "2025-06-02T01:00:00Z"),
         "more than 12 hours away"},
        {"expiration 12 h 5 min 1 s away", credentials_body("AKID", kSecret, kToken, "2025-06-02T00:05:01Z"),
         "more than 12 hours away"},
        // Credentials are UTF-8 text: the JSON documents they are served in could not carry them exactly.
        {"secretAccessKey not UTF-8", credentials_body("AKID", std::string(kSecret) + "\xff"), "JSON"},
        {"sessionToken a lone surrogate", credentials_body("AKID", kSecret, std::string(kToken) + "\\ud800"),
         "JSON"},
    };
    for (const auto& row : rows) {
        auto creds = parse_create_session_response(answer(201, row.body), kNow);
        ASSERT_FALSE(creds) << row.name;
        EXPECT_EQ(creds.error().code, Errc::upstream_malformed) << row.name;
        EXPECT_NE(creds.error().message.find(row.mention), std::string::npos)
            << row.name << ": " << creds.error().message;
        EXPECT_NE(creds.error().message.find("201"), std::string::npos) << row.name;
        expect_clean(creds.error());
    }
}

TEST(ParseResponseTest, TwelveHoursPlusTheSkewWindowIsTheLongestAcceptedExpiration) {
    auto creds = parse_create_session_response(
        answer(201, credentials_body("AKID", kSecret, kToken, "2025-06-02T00:05:00Z")), kNow);
    ASSERT_TRUE(creds) << creds.error().message;
    EXPECT_EQ(creds.value().expiration, kNow + 12h + 5min);
}

TEST(ParseResponseTest, ARejectionWithASkewedDateHeaderSaysClockSkew) {
    struct Row {
        std::string date;
        std::string message;
        std::string expected_suffix;
    };
    const Row rows[] = {
        {"Sun, 01 Jun 2025 12:10:00 GMT", "Signature expired",
         " (clock skew: the local clock is 600 s behind the service's Date)"},
        {"Sun, 01 Jun 2025 11:50:00 GMT", "Invalid signature",
         " (clock skew: the local clock is 600 s ahead of the service's Date)"},
        // Within the window, or no usable Date: only the service's own words can suggest skew.
        {"Sun, 01 Jun 2025 12:04:59 GMT", "Invalid signature", ""},
        {"", "Signature expired: 20250601T120000Z is now earlier than 20250601T120600Z",
         " (clock skew? check that the local clock is right)"},
        {"Sun, 01 Jun 2025 25:10:00 GMT", "Invalid signature", ""},
        {"Sunday, 01-Jun-25 12:10:00 GMT", "Invalid signature", ""},
        {"Sun, 31 Feb 2025 12:10:00 GMT", "Invalid signature", ""},
    };
    for (const auto& row : rows) {
        std::vector<Header> headers{{"X-Amzn-ErrorType", "AccessDeniedException"}};
        if (!row.date.empty()) {
            headers.push_back({"Date", row.date});
        }
        auto creds = parse_create_session_response(
            answer(403, R"({"message":")" + row.message + R"("})", headers), kNow);
        ASSERT_FALSE(creds);
        EXPECT_EQ(creds.error().code, Errc::upstream_rejected);
        EXPECT_EQ(creds.error().message, "CreateSession failed: HTTP 403 AccessDeniedException: " +
                                             row.message + row.expected_suffix)
            << row.date;
    }
    // Retryable failures carry no skew note: the clock is not why a server fails.
    auto busy = parse_create_session_response(
        answer(503, R"({"message":"busy"})", {{"Date", "Sun, 01 Jun 2025 13:00:00 GMT"}}), kNow);
    ASSERT_FALSE(busy);
    EXPECT_EQ(busy.error().message.find("skew"), std::string::npos);
}

TEST(ParseResponseTest, AccessDeniedIsARejectionWithCodeAndMessage) {
    auto creds =
        parse_create_session_response(answer(403, R"({"message":"Invalid signature"})",
                                             {{"X-Amzn-ErrorType", "AccessDeniedException:http://x/"}}),
                                      kNow);
    ASSERT_FALSE(creds);
    EXPECT_EQ(creds.error().code, Errc::upstream_rejected);
    EXPECT_EQ(creds.error().message,
              "CreateSession failed: HTTP 403 AccessDeniedException: Invalid signature");
}

TEST(ParseResponseTest, ErrorCodeFallsBackToTypeThenCode) {
    auto typed = parse_create_session_response(
        answer(
            404,
            R"({"__type":"com.amazonaws.rolesanywhere#ResourceNotFoundException","Message":"no profile"})"),
        kNow);
    ASSERT_FALSE(typed);
    EXPECT_EQ(typed.error().code, Errc::upstream_rejected);
    EXPECT_EQ(typed.error().message, "CreateSession failed: HTTP 404 ResourceNotFoundException: no profile");

    auto coded =
        parse_create_session_response(answer(400, R"({"code":"ValidationException","message":"bad"})"), kNow);
    ASSERT_FALSE(coded);
    EXPECT_EQ(coded.error().message, "CreateSession failed: HTTP 400 ValidationException: bad");

    auto bare = parse_create_session_response(answer(401, "<html>nope</html>"), kNow);
    ASSERT_FALSE(bare);
    EXPECT_EQ(bare.error().code, Errc::upstream_rejected);
    EXPECT_EQ(bare.error().message, "CreateSession failed: HTTP 401");
}

TEST(ParseResponseTest, TooManyRequestsIsThrottledWithRetryAfter) {
    auto creds = parse_create_session_response(
        answer(429, R"({"message":"Rate exceeded"})", {{"Retry-After", " 7 "}}), kNow);
    ASSERT_FALSE(creds);
    EXPECT_EQ(creds.error().code, Errc::upstream_throttled);
    EXPECT_EQ(creds.error().retry_after, 7s);
    EXPECT_NE(creds.error().message.find("429"), std::string::npos);
}

TEST(ParseResponseTest, RetryAfterDatesAndGarbageAreIgnored) {
    for (const char* value : {"Wed, 21 Oct 2015 07:28:00 GMT", "-5", "1.5", "", "9999999999"}) {
        auto creds = parse_create_session_response(answer(429, "{}", {{"Retry-After", value}}), kNow);
        ASSERT_FALSE(creds);
        EXPECT_EQ(creds.error().code, Errc::upstream_throttled);
        EXPECT_EQ(creds.error().retry_after, 0s) << value;
    }
}

TEST(ParseResponseTest, ThrottlingCodeOnA400IsThrottled) {
    auto creds = parse_create_session_response(
        answer(400, R"({"__type":"ThrottlingException","message":"slow down"})"), kNow);
    ASSERT_FALSE(creds);
    EXPECT_EQ(creds.error().code, Errc::upstream_throttled);
    EXPECT_EQ(creds.error().message, "CreateSession failed: HTTP 400 ThrottlingException: slow down");
}

TEST(ParseResponseTest, FiveHundredsAreServerErrors) {
    for (int status : {500, 502, 503}) {
        auto creds = parse_create_session_response(
            answer(status, R"({"message":"busy"})", {{"Retry-After", "3"}}), kNow);
        ASSERT_FALSE(creds);
        EXPECT_EQ(creds.error().code, Errc::upstream_server_error) << status;
        EXPECT_NE(creds.error().message.find(std::to_string(status)), std::string::npos);
        EXPECT_EQ(creds.error().retry_after, 3s);
    }
}

TEST(ParseResponseTest, ErrorAnswersNeverCopyTheBodyAndSanitizeServiceText) {
    const std::string body = std::string(R"({"message":"line1)") + "\\n" + R"(line2","secretAccessKey":")" +
                             kSecret + R"(","sessionToken":")" + kToken + R"("})";
    auto creds = parse_create_session_response(answer(403, body), kNow);
    ASSERT_FALSE(creds);
    expect_clean(creds.error());
    EXPECT_EQ(creds.error().message, "CreateSession failed: HTTP 403: line1?line2");

    auto long_message = parse_create_session_response(
        answer(403, R"({"message":")" + std::string(5000, 'm') + R"("})"), kNow);
    ASSERT_FALSE(long_message);
    EXPECT_LT(long_message.error().message.size(), 400u);
}

}  // namespace
}  // namespace rad::signer
