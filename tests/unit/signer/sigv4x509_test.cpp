// Canonicalisation rules of SigV4-X509, one at a time, and what sign_request adds to a request.

#include "signer/sigv4x509.hpp"

#include <openssl/opensslv.h>  // which OpenSSL: ML-DSA from 3.5 on

#include <gtest/gtest.h>

#include "common/time_format.hpp"
#include "pki/private_key.hpp"
#include "test_files.hpp"

namespace rad::signer {
namespace {

TEST(UriEncodeTest, KeepsOnlyUnreservedCharactersAndUsesUppercaseHex) {
    struct Row {
        std::string_view in, out;
    };
    const Row rows[] = {
        {"", ""},
        {"AZaz09-_.~", "AZaz09-_.~"},
        {"a b", "a%20b"},
        {"a+b", "a%2Bb"},
        {"arn:aws:iam::1:role/x", "arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fx"},
        {"%", "%25"},
        {"*'()!", "%2A%27%28%29%21"},
        {"=&?#", "%3D%26%3F%23"},
        {"\xc3\xa9", "%C3%A9"},  // UTF-8 'é', byte by byte
        {std::string_view("\x00\x7f", 2), "%00%7F"},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(uri_encode(row.in), row.out) << "input: " << row.in;
    }
}

TEST(EncodedQueryTest, SortsKeysAndEncodesArns) {
    HttpRequest request;
    request.query = {{"trustAnchorArn", "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/t"},
                     {"profileArn", "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p"},
                     {"roleArn", "arn:aws:iam::123456789012:role/a/b"}};
    EXPECT_EQ(encoded_query(request),
              "profileArn=arn%3Aaws%3Arolesanywhere%3Aus-east-1%3A123456789012%3Aprofile%2Fp"
              "&roleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fa%2Fb"
              "&trustAnchorArn=arn%3Aaws%3Arolesanywhere%3Aus-east-1%3A123456789012%3Atrust-anchor%2Ft");
}

TEST(EncodedQueryTest, SortsByEncodedKeyThenValueAndHandlesEmptyValues) {
    HttpRequest request;
    request.query = {{"b", "2"}, {"a", "z"}, {"a", "y"}, {"B", ""}, {"a b", "1"}};
    // Uppercase sorts before lowercase, '%' (0x25) before letters.
    EXPECT_EQ(encoded_query(request), "B=&a=y&a=z&a%20b=1&b=2");
    EXPECT_EQ(encoded_query(HttpRequest{}), "");
}

TEST(SignedHeaderNamesTest, LowercasesSortsAndLeavesOutUnsignedHeaders) {
    HttpRequest request;
    request.headers = {{"X-Amz-X509", "c"},      {"User-Agent", "ua"},         {"Host", "h"},
                       {"Authorization", "old"}, {"Content-Type", "t"},        {"X-Amzn-Trace-Id", "Root=1"},
                       {"X-Amz-Date", "d"},      {"X-Amz-X509-Chain", "c1,c2"}};
    EXPECT_EQ(signed_header_names(request), "content-type;host;x-amz-date;x-amz-x509;x-amz-x509-chain");
}

TEST(CanonicalRequestTest, HasTheSigv4LayoutWithTrimmedCollapsedAndJoinedValues) {
    HttpRequest request;
    request.method = "POST";
    request.path = "/sessions";
    request.query = {{"k", "v w"}};
    request.headers = {{"Host", "example.com"},
                       {"X-Multi", "  first   value  "},
                       {"x-multi", "\tsecond\t\tvalue"},
                       {"User-Agent", "not signed"},
                       {"Content-Type", "application/json"}};
    request.body = R"({"durationSeconds":3600})";
    EXPECT_EQ(canonical_request(request),
              "POST\n"
              "/sessions\n"
              "k=v%20w\n"
              "content-type:application/json\n"
              "host:example.com\n"
              "x-multi:first value,second value\n"
              "\n"
              "content-type;host;x-multi\n"
              // SHA-256 of {"durationSeconds":3600} (docs/protocol.md §3.3)
              "1a15f67f6619aa540b13e9a4c37d149fb2c9bdea25d82b73a3878826694dfe27");
}

TEST(CanonicalRequestTest, EmptyBodyHashesTheEmptyString) {
    HttpRequest request;
    request.method = "POST";
    request.path = "/sessions";
    request.headers = {{"Host", "h"}};
    EXPECT_TRUE(canonical_request(request).ends_with(
        "\nhost\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

TEST(ScopeTest, AlgorithmScopeAndStringToSign) {
    const auto now = parse_rfc3339("2024-07-06T11:38:59Z").value();
    EXPECT_EQ(algorithm_name(pki::KeyType::rsa), "AWS4-X509-RSA-SHA256");
    EXPECT_EQ(algorithm_name(pki::KeyType::ec), "AWS4-X509-ECDSA-SHA256");
    for (const auto type : {pki::KeyType::ml_dsa_44, pki::KeyType::ml_dsa_65, pki::KeyType::ml_dsa_87}) {
        EXPECT_EQ(algorithm_name(type), "AWS4-X509-MLDSA");
        EXPECT_TRUE(
            string_to_sign(type, now, "eu-west-1", "").starts_with("AWS4-X509-MLDSA\n20240706T113859Z\n"));
    }
    EXPECT_EQ(credential_scope(now, "us-east-2"), "20240706/us-east-2/rolesanywhere/aws4_request");
    EXPECT_EQ(string_to_sign(pki::KeyType::ec, now, "eu-west-1", ""),
              "AWS4-X509-ECDSA-SHA256\n20240706T113859Z\n20240706/eu-west-1/rolesanywhere/aws4_request\n"
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

class SignRequestTest : public ::testing::Test {
protected:
    static pki::Identity identity(bool with_chain) {
        const auto keys = test::data_dir() / "sigv4" / "keys";
        return test::load_test_identity(keys / "p256.pem", keys / "p256.key",
                                        with_chain ? keys / "chain.pem" : std::filesystem::path());
    }
    static HttpRequest request() {
        HttpRequest r;
        r.method = "POST";
        r.host = "rolesanywhere.us-east-1.amazonaws.com";
        r.path = "/sessions";
        r.headers = {{"Content-Type", "application/json"}};
        r.body = "{}";
        return r;
    }
    const SystemTime now_ = parse_rfc3339("2025-01-02T03:04:05Z").value();
};

TEST_F(SignRequestTest, AddsHostDateCertificateAndAVerifiableAuthorization) {
    const pki::Identity id = identity(false);
    HttpRequest r = request();
    auto ok = sign_request(r, id, "us-east-1", now_);
    ASSERT_TRUE(ok) << ok.error().message;
    ASSERT_NE(r.header("Host"), nullptr);
    EXPECT_EQ(*r.header("host"), "rolesanywhere.us-east-1.amazonaws.com");
    EXPECT_EQ(*r.header("x-amz-date"), "20250102T030405Z");
    EXPECT_EQ(*r.header("X-Amz-X509"), id.leaf.der_base64());
    EXPECT_EQ(r.header("X-Amz-X509-Chain"), nullptr);

    const std::string expected_prefix = "AWS4-X509-ECDSA-SHA256 Credential=" + id.leaf.serial_decimal() +
                                        "/20250102/us-east-1/rolesanywhere/aws4_request, "
                                        "SignedHeaders=content-type;host;x-amz-date;x-amz-x509, Signature=";
    const std::string& authorization = *r.header("Authorization");
    ASSERT_TRUE(authorization.starts_with(expected_prefix)) << authorization;
    const std::string hex = authorization.substr(expected_prefix.size());
    ASSERT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos) << hex;
    std::vector<std::uint8_t> signature;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        signature.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    const std::string sts = string_to_sign(pki::KeyType::ec, now_, "us-east-1", canonical_request(r));
    EXPECT_TRUE(pki::verify(id.leaf, sts, signature, pki::Digest::sha256));
}

TEST_F(SignRequestTest, SendsTheChainCommaSeparatedInBundleOrderAndSignsIt) {
    const pki::Identity id = identity(true);
    ASSERT_EQ(id.chain.size(), 2u);
    HttpRequest r = request();
    ASSERT_TRUE(sign_request(r, id, "us-east-1", now_));
    ASSERT_NE(r.header("X-Amz-X509-Chain"), nullptr);
    EXPECT_EQ(*r.header("X-Amz-X509-Chain"), id.chain[0].der_base64() + "," + id.chain[1].der_base64());
    EXPECT_NE(r.header("Authorization")
                  ->find("SignedHeaders=content-type;host;x-amz-date;x-amz-x509;x-amz-x509-chain,"),
              std::string::npos);
}

TEST_F(SignRequestTest, ResigningReplacesDateAndAuthorizationAndDropsAStaleChain) {
    HttpRequest r = request();
    ASSERT_TRUE(sign_request(r, identity(true), "us-east-1", now_));
    const std::string first = *r.header("Authorization");
    ASSERT_TRUE(sign_request(r, identity(false), "us-east-1", now_ + std::chrono::seconds(1)));
    EXPECT_NE(*r.header("Authorization"), first);
    EXPECT_EQ(*r.header("X-Amz-Date"), "20250102T030406Z");
    EXPECT_EQ(r.header("X-Amz-X509-Chain"), nullptr);
    int authorizations = 0;
    for (const auto& [name, value] : r.headers) {
        authorizations += name == "Authorization" ? 1 : 0;
    }
    EXPECT_EQ(authorizations, 1);
}

#if OPENSSL_VERSION_NUMBER >= 0x30500000L
TEST_F(SignRequestTest, MlDsaSignsTheStringToSignItselfDeterministically) {
    // tests/data/mldsa: the ML-DSA-65 certificate issued by the RSA CA (serial 6503) and its key.
    const auto dir = test::data_dir() / "mldsa";
    const pki::Identity id = test::load_test_identity(dir / "mldsa65.rsa.pem", dir / "mldsa65.key");
    HttpRequest r = request();
    auto ok = sign_request(r, id, "us-east-1", now_);
    ASSERT_TRUE(ok) << ok.error().message;
    const std::string expected_prefix =
        "AWS4-X509-MLDSA Credential=6503/20250102/us-east-1/rolesanywhere/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-x509, Signature=";
    const std::string authorization = *r.header("Authorization");
    ASSERT_TRUE(authorization.starts_with(expected_prefix)) << authorization.substr(0, 200);
    const std::string hex = authorization.substr(expected_prefix.size());
    ASSERT_EQ(hex.size(), 2u * 3309u);  // FIPS 204: ML-DSA-65 signatures are 3309 bytes
    ASSERT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos);
    std::vector<std::uint8_t> signature;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        signature.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    const std::string sts = string_to_sign(pki::KeyType::ml_dsa_65, now_, "us-east-1", canonical_request(r));
    EXPECT_TRUE(pki::verify(id.leaf, sts, signature, pki::Digest::sha256));
    // Deterministic: the same request at the same time signs to the same header.
    HttpRequest again = request();
    ASSERT_TRUE(sign_request(again, id, "us-east-1", now_));
    EXPECT_EQ(*again.header("Authorization"), authorization);
}
#endif

TEST_F(SignRequestTest, RefusesARequestWithoutHostOrRegionAndLeavesItUntouched) {
    const pki::Identity id = identity(false);
    HttpRequest r = request();
    r.host.clear();
    const auto before = r.headers;
    EXPECT_FALSE(sign_request(r, id, "us-east-1", now_));
    EXPECT_EQ(r.headers, before);
    HttpRequest r2 = request();
    EXPECT_FALSE(sign_request(r2, id, "", now_));
    EXPECT_EQ(r2.headers, before);
}

TEST(HttpRequestTest, HeaderLookupIsCaseInsensitiveAndSetHeaderReplacesEveryMatch) {
    HttpRequest r;
    r.headers = {{"X-A", "1"}, {"x-a", "2"}, {"Other", "3"}};
    ASSERT_NE(r.header("x-A"), nullptr);
    EXPECT_EQ(*r.header("x-A"), "1");
    EXPECT_EQ(r.header("missing"), nullptr);
    r.set_header("X-a", "9");
    EXPECT_EQ(r.headers, (std::vector<Header>{{"Other", "3"}, {"X-a", "9"}}));

    HttpResponse response;
    response.headers = {{"Retry-After", "5"}};
    ASSERT_NE(response.header("retry-after"), nullptr);
    EXPECT_EQ(*response.header("retry-after"), "5");
}

}  // namespace
}  // namespace rad::signer
