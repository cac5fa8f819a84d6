// The credential_process document and the redacted access key id.

#include "signer/credentials.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/time_format.hpp"

namespace rad::signer {
namespace {

Credentials make(std::string access_key, std::string secret, std::string token, std::string_view expiration) {
    Credentials c;
    c.access_key_id = std::move(access_key);
    c.secret_access_key = Secret(std::move(secret));
    c.session_token = Secret(std::move(token));
    c.expiration = parse_rfc3339(expiration).value();
    return c;
}

TEST(CredentialProcessJsonTest, IsExactlyTheVersion1DocumentOnOneLine) {
    const Secret doc = credential_process_json(
        make("ASIAEXAMPLE", "wJalr/K7MDENG+bPxRfiCY", "IQoJb3JpZ2luX2Vj==", "2025-12-11T16:34:25Z"));
    EXPECT_EQ(doc.reveal(),
              R"({"Version":1,"AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"wJalr/K7MDENG+bPxRfiCY",)"
              R"("SessionToken":"IQoJb3JpZ2luX2Vj==","Expiration":"2025-12-11T16:34:25Z"})");
}

TEST(CredentialProcessJsonTest, ExpirationIsUtcWithoutFraction) {
    const Secret doc = credential_process_json(make("A", "S", "T", "2025-12-11T18:34:25.999+02:00"));
    EXPECT_TRUE(doc.reveal().ends_with(R"("Expiration":"2025-12-11T16:34:25Z"})")) << doc.reveal();
}

TEST(CredentialProcessJsonTest, EscapesJsonSpecialCharacters) {
    const Secret doc = credential_process_json(
        make("A\"K", std::string("s\\e\nc\tr\x01t", 9), "t\x7f\xc3\xa9", "2025-01-01T00:00:00Z"));
    EXPECT_EQ(doc.reveal(), R"({"Version":1,"AccessKeyId":"A\"K","SecretAccessKey":"s\\e\nc\tr\u0001t",)"
                            "\"SessionToken\":\"t\\u007f\xc3\xa9\",\"Expiration\":\"2025-01-01T00:00:00Z\"}");
    // Whatever the content, the document parses back to the same values.
    const auto parsed = nlohmann::json::parse(doc.reveal());
    EXPECT_EQ(parsed.at("AccessKeyId"), "A\"K");
    EXPECT_EQ(parsed.at("SecretAccessKey"), std::string("s\\e\nc\tr\x01t", 9));
    EXPECT_EQ(parsed.at("SessionToken"), "t\x7f\xc3\xa9");
    EXPECT_EQ(parsed.at("Version"), 1);
}

TEST(CredentialProcessJsonTest, ValuesThatAreNotUtf8GiveNoDocument) {
    // JSON cannot carry them exactly (common/json_writer.hpp): no document rather than other credentials.
    EXPECT_TRUE(credential_process_json(make("A", "S", "T\xff", "2025-01-01T00:00:00Z")).empty());
    EXPECT_TRUE(credential_process_json(make("A", "S\xed\xa0\x80", "T", "2025-01-01T00:00:00Z")).empty());
    EXPECT_TRUE(credential_process_json(make("A\x80", "S", "T", "2025-01-01T00:00:00Z")).empty());
}

TEST(RedactAccessKeyIdTest, ShowsOnlyTheLastFourCharacters) {
    EXPECT_EQ(redact_access_key_id("ASIAIOSFODNN7EXAMPLE"), "…MPLE");
    EXPECT_EQ(redact_access_key_id("ABCDE"), "…BCDE");
    EXPECT_EQ(redact_access_key_id("ABCD"), "…");
    EXPECT_EQ(redact_access_key_id(""), "…");
}

}  // namespace
}  // namespace rad::signer
