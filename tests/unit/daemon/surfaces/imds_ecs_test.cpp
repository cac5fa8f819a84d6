// The IMDS and container-credentials surfaces as pure functions: every route and status the SDKs depend on
// (docs/clients.md §2, §3), the stateless IMDS tokens, and the exact JSON documents. Every body is
// also parsed with nlohmann/json as an independent check of the hand-written escaping.
#include "daemon/surfaces/ecs.hpp"
#include "daemon/surfaces/imds.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "pki/hmac.hpp"
#include "tests/support/case_name.hpp"

namespace rad::surfaces {
namespace {

using namespace std::chrono_literals;
using Header = std::pair<std::string, std::string>;

const std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::time_point{} + 100000h;
// 2026-11-23T00:34:59Z; the credentials below expire an hour later.
const std::chrono::system_clock::time_point wall0 = std::chrono::system_clock::time_point{} + 1795394099s;

constexpr std::string_view ttl_name = "X-aws-ec2-metadata-token-ttl-seconds";
constexpr std::string_view token_name = "X-aws-ec2-metadata-token";
constexpr std::string_view creds_path = "/latest/meta-data/iam/security-credentials/";

Mac mac_for(std::uint8_t fill) {
    auto key =
        std::make_shared<const pki::HmacKey>(pki::HmacKey::from_bytes(std::vector<std::uint8_t>(32, fill)));
    return [key](std::string_view message) { return key->sign(message); };
}

SurfaceRequest make_request(std::string method, std::string target, std::vector<Header> headers = {}) {
    SurfaceRequest r;
    r.method = std::move(method);
    r.target = std::move(target);
    r.headers = std::move(headers);
    return r;
}

signer::Credentials make_credentials() {
    signer::Credentials c;
    c.access_key_id = "ASIAEXAMPLE000000001";
    c.secret_access_key = Secret(std::string_view("wJalrXUtnFEMI/K7MDENG+bPxRfiCYSECRETKEY"));
    c.session_token =
        Secret(std::string_view("IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN//////////wEaCXVzLWVhc3QtMSJG"));
    c.expiration = wall0 + 1h;
    return c;
}

std::string body(const SurfaceResponse& r) {
    return std::string(r.body.reveal());
}

std::string header_or(const SurfaceResponse& r, std::string_view name, std::string fallback = "<none>") {
    const std::string* v = r.header(name);
    return v != nullptr ? *v : fallback;
}

class Imds : public ::testing::Test {
protected:
    ImdsTokens tokens{mac_for(0x11)};
    ImdsSettings settings{"my-role", false};
    signer::Credentials credentials = make_credentials();
    ServedCredentials served{&credentials, Error{}, wall0 - 10min};

    SurfaceResponse call(const SurfaceRequest& r, std::chrono::steady_clock::time_point now = t0) {
        return handle_imds(r, settings, tokens, now, served);
    }
    std::string token(std::chrono::seconds ttl = 21600s) { return tokens.mint(t0, ttl); }
    SurfaceResponse get(std::string target, std::chrono::steady_clock::time_point now = t0) {
        return call(make_request("GET", std::move(target), {{std::string(token_name), token()}}), now);
    }
};

// ---- token PUT -----------------------------------------------------------------------------------------

struct TtlCase {
    std::optional<std::string> header;  // nullopt: no TTL header at all
    int status;
    std::string granted;
};

class ImdsTtl : public Imds, public ::testing::WithParamInterface<TtlCase> {};

TEST_P(ImdsTtl, AcceptsOneTo21600Only) {
    const auto& c = GetParam();
    std::vector<Header> headers{{"Host", "127.0.0.1:9911"}};
    if (c.header) {
        headers.emplace_back("x-aws-ec2-metadata-token-ttl-seconds", *c.header);
    }
    const auto r = call(make_request("PUT", "/latest/api/token", headers));
    EXPECT_EQ(r.status, c.status);
    EXPECT_EQ(header_or(r, "Content-Type"), "text/plain");
    EXPECT_EQ(header_or(r, "Server"), "EC2ws");
    if (c.status == 200) {
        EXPECT_EQ(header_or(r, ttl_name), c.granted);
        EXPECT_EQ(tokens.remaining(body(r), t0), std::chrono::seconds(std::stoi(c.granted)));
    } else {
        EXPECT_EQ(r.header(ttl_name), nullptr);
        EXPECT_FALSE(tokens.remaining(body(r), t0).has_value());
    }
}

INSTANTIATE_TEST_SUITE_P(Table,
                         ImdsTtl,
                         ::testing::Values(TtlCase{"1", 200, "1"},
                                           TtlCase{"300", 200, "300"},
                                           TtlCase{"21600", 200, "21600"},
                                           TtlCase{"0300", 200, "300"},
                                           TtlCase{"0", 400, ""},
                                           TtlCase{"21601", 400, ""},
                                           TtlCase{"99999999999999999999", 400, ""},
                                           TtlCase{"abc", 400, ""},
                                           TtlCase{"", 400, ""},
                                           TtlCase{"+5", 400, ""},
                                           TtlCase{" 5", 400, ""},
                                           TtlCase{"5 ", 400, ""},
                                           TtlCase{"-1", 400, ""},
                                           TtlCase{"1.5", 400, ""},
                                           TtlCase{"5\r\n", 400, ""},
                                           TtlCase{std::nullopt, 400, ""}),
                         [](const ::testing::TestParamInfo<TtlCase>& row) {
                             const auto& header = row.param.header;
                             return (header ? "ttl_" + test::case_name(*header)
                                            : std::string("no_ttl_header")) +
                                    "_" + std::to_string(row.param.status);
                         });

TEST_F(Imds, TwoTtlHeadersAre400) {
    const auto r = call(make_request("PUT", "/latest/api/token",
                                     {{std::string(ttl_name), "300"}, {std::string(ttl_name), "300"}}));
    EXPECT_EQ(r.status, 400);
}

TEST_F(Imds, TokenPathOtherMethodsAre405) {
    for (const char* method : {"GET", "POST", "DELETE", "HEAD"}) {
        const auto r = call(make_request(method, "/latest/api/token", {{std::string(ttl_name), "300"}}));
        EXPECT_EQ(r.status, 405) << method;
        EXPECT_EQ(header_or(r, "Allow"), "OPTIONS, PUT") << method;
        EXPECT_EQ(header_or(r, "Server"), "EC2ws");
    }
    const auto options = call(make_request("OPTIONS", "/latest/api/token"));
    EXPECT_EQ(options.status, 200);
    EXPECT_EQ(header_or(options, "Allow"), "OPTIONS, PUT");
    EXPECT_TRUE(options.body.empty());
}

// ---- GETs ----------------------------------------------------------------------------------------------

TEST_F(Imds, RoleListWithAndWithoutSlash) {
    for (const char* target :
         {"/latest/meta-data/iam/security-credentials", "/latest/meta-data/iam/security-credentials/"}) {
        const auto r = get(target, t0 + 600s);
        EXPECT_EQ(r.status, 200) << target;
        EXPECT_EQ(body(r), "my-role") << target;  // no trailing newline
        EXPECT_EQ(header_or(r, "Content-Type"), "text/plain");
        EXPECT_EQ(header_or(r, "Server"), "EC2ws");
        EXPECT_EQ(header_or(r, ttl_name), "21000");  // the token's remaining lifetime
    }
}

TEST_F(Imds, RoleListServedWithoutCredentials) {
    served = ServedCredentials{nullptr, make_error(Errc::upstream_timeout, "CreateSession timed out"), {}};
    const auto r = get("/latest/meta-data/iam/security-credentials/");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(body(r), "my-role");
}

const std::string expected_imds_json =
    "{\n"
    "  \"Code\" : \"Success\",\n"
    "  \"LastUpdated\" : \"2026-11-23T00:24:59Z\",\n"
    "  \"Type\" : \"AWS-HMAC\",\n"
    "  \"AccessKeyId\" : \"ASIAEXAMPLE000000001\",\n"
    "  \"SecretAccessKey\" : \"wJalrXUtnFEMI/K7MDENG+bPxRfiCYSECRETKEY\",\n"
    "  \"Token\" : \"IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN//////////wEaCXVzLWVhc3QtMSJG\",\n"
    "  \"Expiration\" : \"2026-11-23T01:34:59Z\"\n"
    "}";

TEST_F(Imds, CredentialsDocumentExact) {
    for (const char* target : {"/latest/meta-data/iam/security-credentials/my-role",
                               "/latest/meta-data/iam/security-credentials/my-role/"}) {
        const auto r = get(target);
        EXPECT_EQ(r.status, 200) << target;
        EXPECT_EQ(body(r), expected_imds_json) << target;
        EXPECT_EQ(header_or(r, "Content-Type"), "text/plain");  // as IMDS does, even for JSON
        EXPECT_EQ(header_or(r, ttl_name), "21600");
        const auto doc = nlohmann::json::parse(body(r));
        EXPECT_EQ(doc.at("Code"), "Success");
        EXPECT_EQ(doc.at("SecretAccessKey"), std::string(credentials.secret_access_key.reveal()));
        EXPECT_EQ(doc.size(), 7u);
    }
}

TEST_F(Imds, CredentialsEscaping) {
    credentials.access_key_id = "ASIA\"quote\\back";
    credentials.secret_access_key = Secret(std::string_view("se\ncr\x01t/\t\xc3\xa9"));
    credentials.session_token = Secret(std::string_view("tok\x7f"));
    const auto r = get(std::string(creds_path) + "my-role");
    ASSERT_EQ(r.status, 200);
    const std::string b = body(r);
    EXPECT_NE(b.find(R"("AccessKeyId" : "ASIA\"quote\\back")"), std::string::npos) << b;
    EXPECT_NE(b.find("\"SecretAccessKey\" : \"se\\ncr\\u0001t/\\t\xc3\xa9\""), std::string::npos) << b;
    EXPECT_NE(b.find(R"("Token" : "tok\u007f")"), std::string::npos) << b;
    const auto doc = nlohmann::json::parse(b);
    EXPECT_EQ(doc.at("AccessKeyId"), "ASIA\"quote\\back");
    EXPECT_EQ(doc.at("SecretAccessKey"), "se\ncr\x01t/\t\xc3\xa9");
}

TEST_F(Imds, NotFoundPaths) {
    for (const char* target :
         {"/", "/latest", "/latest/", "/latest/meta-data/", "/latest/meta-data/iam/",
          "/latest/meta-data/iam/info", "/latest/meta-data/iam/security-credentials/other-role",
          "/latest/meta-data/iam/security-credentials/my-rol",
          "/latest/meta-data/iam/security-credentials/my-role-2",
          "/latest/meta-data/iam/security-credentials/MY-ROLE",
          "/latest/meta-data/iam/security-credentials/my-role/x",
          "/latest/meta-data/iam/security-credentials/my-role//",
          "/latest/meta-data/iam/security-credentials//my-role",
          "/latest/meta-data/iam/security-credentialsmy-role",
          "/latest/meta-data/iam/security-credentials-extended/",
          "/latest/meta-data/iam/security-credentials-extended/my-role", "/latest/meta-data/placement/region",
          "/latest/api/token/", "/some/prefix/latest/api/token"}) {
        const auto r = get(target);
        EXPECT_EQ(r.status, 404) << target;
        EXPECT_EQ(header_or(r, "Server"), "EC2ws");
        EXPECT_EQ(body(r).find("Success"), std::string::npos) << target;
    }
}

TEST_F(Imds, WrongMethodOnKnownPathIs405) {
    for (const char* method : {"PUT", "POST", "DELETE"}) {
        for (std::string target : {std::string("/latest/meta-data/iam/security-credentials"),
                                   std::string(creds_path), std::string(creds_path) + "my-role"}) {
            const auto r = call(make_request(method, target, {{std::string(token_name), token()}}));
            EXPECT_EQ(r.status, 405) << method << " " << target;
            EXPECT_EQ(header_or(r, "Allow"), "GET");
            EXPECT_TRUE(r.body.reveal().find("Secret") == std::string_view::npos);
        }
    }
    EXPECT_EQ(call(make_request("POST", "/latest/nothing")).status, 404);
}

TEST_F(Imds, TokenRequiredByDefault) {
    const std::string target = std::string(creds_path) + "my-role";
    EXPECT_EQ(call(make_request("GET", target)).status, 401);
    EXPECT_EQ(call(make_request("GET", "/latest/unknown")).status, 401);
    EXPECT_EQ(call(make_request("GET", std::string(creds_path))).status, 401);
    EXPECT_EQ(call(make_request("GET", target, {{std::string(token_name), ""}})).status, 401);
    EXPECT_EQ(call(make_request("GET", target, {{std::string(token_name), "garbage"}})).status, 401);
    // Expired: minted with TTL 1 at t0, used one second later.
    const auto expired =
        call(make_request("GET", target, {{"x-aws-ec2-metadata-token", token(1s)}}), t0 + 1s);
    EXPECT_EQ(expired.status, 401);
    EXPECT_EQ(body(expired).find("Secret"), std::string::npos);
    // A token from another key (a previous run of the agent).
    const auto foreign = ImdsTokens(mac_for(0x22)).mint(t0, 21600s);
    EXPECT_EQ(call(make_request("GET", target, {{std::string(token_name), foreign}})).status, 401);
    // Two token headers, even if one is valid.
    EXPECT_EQ(call(make_request("GET", target,
                                {{std::string(token_name), token()}, {std::string(token_name), "x"}}))
                  .status,
              401);
    // Valid token, header name in another case.
    EXPECT_EQ(call(make_request("GET", target, {{"X-AWS-EC2-METADATA-TOKEN", token()}})).status, 200);
}

TEST_F(Imds, ImdsV1WhenAllowed) {
    settings.allow_imdsv1 = true;
    const std::string target = std::string(creds_path) + "my-role";
    const auto r = call(make_request("GET", target));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(body(r), expected_imds_json);
    EXPECT_EQ(r.header(ttl_name), nullptr);  // no token, no remaining lifetime
    // An invalid or expired token is still refused: the client meant to use IMDSv2.
    EXPECT_EQ(call(make_request("GET", target, {{std::string(token_name), "garbage"}})).status, 401);
    EXPECT_EQ(call(make_request("GET", target, {{std::string(token_name), ""}})).status, 401);
    EXPECT_EQ(call(make_request("GET", target, {{std::string(token_name), token(5s)}}), t0 + 5s).status, 401);
    EXPECT_EQ(call(make_request("GET", "/latest/unknown")).status, 404);
}

TEST_F(Imds, NoCredentialsIs503WithReason) {
    served = ServedCredentials{
        nullptr, make_error(Errc::upstream_throttled, "CreateSession was throttled (429)"), {}};
    const auto r = get(std::string(creds_path) + "my-role");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(body(r), R"j({"Code":"upstream_throttled","Message":"CreateSession was throttled (429)"})j");
    EXPECT_EQ(header_or(r, "Server"), "EC2ws");
    EXPECT_EQ(header_or(r, "Content-Type"), "application/json");  // a JSON body is labelled as one
    EXPECT_EQ(nlohmann::json::parse(body(r)).at("Code"), "upstream_throttled");
}

TEST_F(Imds, ContentTypeSaysWhatTheBodyIs) {
    // Text stays text/plain (SDKs read the token and the role name as raw text); the JSON error document is
    // application/json. The credentials document keeps text/plain, as IMDS sends it.
    const std::string role = std::string(creds_path) + "my-role";
    const std::string valid = token(21600s);
    struct Row {
        const char* what;
        SurfaceRequest request;
        bool with_credentials;
        int status;
        const char* content_type;
        bool json_body;
    };
    const Row rows[] = {
        {"token", make_request("PUT", "/latest/api/token", {{std::string(ttl_name), "60"}}), true, 200,
         "text/plain", false},
        {"bad TTL", make_request("PUT", "/latest/api/token", {{std::string(ttl_name), "0"}}), true, 400,
         "text/plain", false},
        {"role list", make_request("GET", std::string(creds_path), {{std::string(token_name), valid}}), true,
         200, "text/plain", false},
        {"no token", make_request("GET", role), true, 401, "text/plain", false},
        {"unknown path", make_request("GET", "/latest/x", {{std::string(token_name), valid}}), true, 404,
         "text/plain", false},
        {"wrong method", make_request("POST", role, {{std::string(token_name), valid}}), true, 405,
         "text/plain", false},
        {"credentials", make_request("GET", role, {{std::string(token_name), valid}}), true, 200,
         "text/plain", true},
        {"no credentials", make_request("GET", role, {{std::string(token_name), valid}}), false, 503,
         "application/json", true},
    };
    for (const auto& row : rows) {
        served = row.with_credentials
                     ? ServedCredentials{&credentials, {}, wall0 - 10min}
                     : ServedCredentials{nullptr, make_error(Errc::upstream_rejected, "AccessDenied"), {}};
        const auto r = call(row.request);
        EXPECT_EQ(r.status, row.status) << row.what;
        EXPECT_EQ(header_or(r, "Content-Type"), row.content_type) << row.what;
        EXPECT_EQ(nlohmann::json::accept(body(r)), row.json_body) << row.what << ": " << body(r);
    }
}

TEST_F(Imds, CredentialsThatAreNotUtf8AreNeverServed) {
    // JSON cannot carry them exactly; a client must not get a token that parses to another one.
    credentials.session_token = Secret(std::string_view("IQoJb3JpZ2luX2Vj\xff"));
    const auto r = get(std::string(creds_path) + "my-role");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(body(r), R"({"Code":"internal","Message":"the cached credentials are not UTF-8 text"})");
}

TEST_F(Imds, ErrorMessageEscapedAndInvalidUtf8Replaced) {
    served = ServedCredentials{
        nullptr,
        make_error(Errc::input_missing, "cannot read \"/etc/x\\y\xff\" caf\xc3\xa9 \xed\xa0\x80\n"),
        {}};
    const auto r = get(std::string(creds_path) + "my-role");
    EXPECT_EQ(r.status, 503);
    // Each bad byte is U+FFFD (EF BF BD), written as UTF-8 like the rest.
    EXPECT_EQ(
        body(r),
        "{\"Code\":\"input_missing\",\"Message\":\"cannot read \\\"/etc/x\\\\y\xef\xbf\xbd\\\" caf\xc3\xa9 "
        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\\n\"}");
    EXPECT_TRUE(nlohmann::json::accept(body(r)));
    EXPECT_EQ(nlohmann::json::parse(body(r)).at("Message"),
              "cannot read \"/etc/x\\y\xef\xbf\xbd\" caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\n");
}

TEST_F(Imds, ErrorBodiesNeverCarryRequestSecrets) {
    const std::string tok = token();
    const std::vector<SurfaceRequest> requests = {
        make_request("GET", "/latest/unknown", {{std::string(token_name), tok}}),
        make_request("GET", "/latest/meta-data/iam/security-credentials/" + tok,
                     {{std::string(token_name), tok}}),
        make_request("GET", std::string(creds_path) + "my-role", {{std::string(token_name), tok + "x"}}),
        make_request("PUT", "/latest/api/token", {{std::string(ttl_name), tok}}),
        make_request("GET", "/latest/api/token", {{std::string(token_name), tok}}),
        make_request("POST", std::string(creds_path) + "my-role", {{std::string(token_name), tok}}),
    };
    for (const auto& request : requests) {
        const auto r = call(request);
        EXPECT_NE(r.status, 200) << request.target;
        EXPECT_EQ(body(r).find(tok), std::string::npos) << request.target;
        EXPECT_EQ(body(r).find(credentials.secret_access_key.reveal()), std::string::npos);
        EXPECT_EQ(body(r).find(credentials.session_token.reveal()), std::string::npos);
        for (const auto& [name, value] : r.headers) {
            EXPECT_EQ(value.find(tok), std::string::npos) << name;
        }
    }
}

// ---- tokens --------------------------------------------------------------------------------------------

bool is_base64url(std::string_view s) {
    for (char c : s) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                        c == '-' || c == '_';
        if (!ok) {
            return false;
        }
    }
    return true;
}

TEST(ImdsTokens, ExpiryBoundary) {
    const ImdsTokens tokens(mac_for(0x11));
    const std::string t = tokens.mint(t0, 300s);
    EXPECT_EQ(tokens.remaining(t, t0), 300s);
    EXPECT_EQ(tokens.remaining(t, t0 + 1ms), 300s);  // rounded up
    EXPECT_EQ(tokens.remaining(t, t0 + 299s), 1s);
    EXPECT_EQ(tokens.remaining(t, t0 + 300s - 1ms), 1s);
    EXPECT_EQ(tokens.remaining(t, t0 + 300s), std::nullopt);
    EXPECT_EQ(tokens.remaining(t, t0 + 301s), std::nullopt);
    EXPECT_EQ(tokens.remaining(t, t0 + 1000h), std::nullopt);
}

TEST(ImdsTokens, TtlClampedToImdsRange) {
    const ImdsTokens tokens(mac_for(0x11));
    EXPECT_EQ(tokens.remaining(tokens.mint(t0, 0s), t0), 1s);
    EXPECT_EQ(tokens.remaining(tokens.mint(t0, -5s), t0), 1s);
    EXPECT_EQ(tokens.remaining(tokens.mint(t0, 86400s), t0), 21600s);
}

TEST(ImdsTokens, FormatIsUrlSafeWithoutCrLf) {
    const ImdsTokens tokens(mac_for(0x11));
    std::set<std::string> seen;
    for (int i = 0; i < 500; ++i) {
        const auto t =
            tokens.mint(t0 + std::chrono::milliseconds(i * 7919), std::chrono::seconds(1 + i * 43));
        EXPECT_EQ(t.size(), 54u);
        EXPECT_TRUE(is_base64url(t)) << t;
        EXPECT_EQ(t.find_first_of("\r\n =+/"), std::string::npos);
        seen.insert(t);
    }
    EXPECT_EQ(seen.size(), 500u);
}

TEST(ImdsTokens, ForgedOrDamagedTokensFail) {
    const ImdsTokens tokens(mac_for(0x11));
    const std::string t = tokens.mint(t0, 21600s);
    ASSERT_TRUE(tokens.remaining(t, t0).has_value());
    // Any single character changed: in the expiry (positions 0-9) or in the MAC.
    for (std::size_t i = 0; i < t.size(); ++i) {
        std::string forged = t;
        forged[i] = forged[i] == 'A' ? 'B' : 'A';
        EXPECT_FALSE(tokens.remaining(forged, t0).has_value()) << i;
    }
    EXPECT_FALSE(tokens.remaining(t.substr(0, 53), t0).has_value());
    EXPECT_FALSE(tokens.remaining(t.substr(0, 44), t0).has_value());
    EXPECT_FALSE(tokens.remaining(t + "A", t0).has_value());
    EXPECT_FALSE(tokens.remaining(t + "\n", t0).has_value());
    EXPECT_FALSE(tokens.remaining(t + "==", t0).has_value());
    EXPECT_FALSE(tokens.remaining("", t0).has_value());
    EXPECT_FALSE(tokens.remaining(std::string(54, 'A'), t0).has_value());
    EXPECT_FALSE(tokens.remaining(std::string(54, '='), t0).has_value());
    EXPECT_FALSE(tokens.remaining(std::string(54, '\0'), t0).has_value());
    // The same bytes in the standard alphabet are not a token.
    std::string standard = t;
    for (char& c : standard) {
        c = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    if (standard != t) {
        EXPECT_FALSE(tokens.remaining(standard, t0).has_value());
    }
    // Another key (a previous run) never verifies.
    EXPECT_FALSE(ImdsTokens(mac_for(0x12)).remaining(t, t0).has_value());
}

TEST(ImdsTokens, NonCanonicalSpellingRejected) {
    const ImdsTokens tokens(mac_for(0x11));
    const std::string t = tokens.mint(t0, 21600s);
    // The last character holds 2 data bits and 4 zero bits; setting one of the zero bits decodes to the same
    // bytes with a standard decoder, but is not the token that was issued.
    static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const auto value = alphabet.find(t.back());
    ASSERT_NE(value, std::string::npos);
    ASSERT_EQ(value & 0xF, 0u);
    std::string variant = t;
    variant.back() = alphabet[value | 1];
    EXPECT_FALSE(tokens.remaining(variant, t0).has_value());
}

TEST(ConstantTimeEquals, Table) {
    EXPECT_TRUE(constant_time_equals("", ""));
    EXPECT_TRUE(constant_time_equals("abc", "abc"));
    EXPECT_FALSE(constant_time_equals("abc", "abd"));
    EXPECT_FALSE(constant_time_equals("abc", "ab"));
    EXPECT_FALSE(constant_time_equals("ab", "abc"));
    EXPECT_FALSE(constant_time_equals("", "a"));
    EXPECT_FALSE(constant_time_equals(std::string_view("a\0", 2), "a"));
    EXPECT_FALSE(constant_time_equals("xbc", "abc"));
}

// ---- container credentials -----------------------------------------------------------------------------

class Ecs : public ::testing::Test {
protected:
    Secret token{std::string_view("Zm9vYmFyYmF6cXV4dG9rZW4xMjM0NTY3ODkwYWJj")};
    EcsSettings settings{"/credentials/web", &token, "123456789012"};
    signer::Credentials credentials = make_credentials();
    ServedCredentials served{&credentials, Error{}, wall0};

    SurfaceResponse call(const SurfaceRequest& r) { return handle_ecs(r, settings, served); }
    SurfaceResponse get(std::string target, std::optional<std::string> authorization) {
        std::vector<Header> headers{{"Host", "127.0.0.1:9912"}, {"Accept", "application/json"}};
        if (authorization) {
            headers.emplace_back("Authorization", *authorization);
        }
        return call(make_request("GET", std::move(target), std::move(headers)));
    }
    void expect_error(const SurfaceResponse& r, int status, std::string_view code) {
        EXPECT_EQ(r.status, status);
        EXPECT_EQ(header_or(r, "Content-Type"), "application/json");
        const auto doc = nlohmann::json::parse(body(r));
        EXPECT_EQ(doc.at("Code"), code);
        EXPECT_TRUE(doc.at("Message").is_string());
        EXPECT_EQ(doc.size(), 2u);
        EXPECT_EQ(body(r).find(token.reveal()), std::string::npos);
        EXPECT_EQ(body(r).find(credentials.secret_access_key.reveal()), std::string::npos);
        EXPECT_EQ(body(r).find(credentials.session_token.reveal()), std::string::npos);
        EXPECT_EQ(body(r).find(credentials.access_key_id), std::string::npos);
    }
};

TEST_F(Ecs, RightTokenGetsCredentials) {
    const auto r = get("/credentials/web", std::string(token.reveal()));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(header_or(r, "Content-Type"), "application/json");
    EXPECT_EQ(
        body(r),
        R"({"AccessKeyId":"ASIAEXAMPLE000000001","SecretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYSECRETKEY",)"
        R"("Token":"IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN//////////wEaCXVzLWVhc3QtMSJG",)"
        R"("Expiration":"2026-11-23T01:34:59Z","AccountId":"123456789012"})");
    EXPECT_TRUE(nlohmann::json::accept(body(r)));
}

TEST_F(Ecs, AccountIdOmittedWhenUnknown) {
    settings.account_id.clear();
    const auto r = get("/credentials/web", std::string(token.reveal()));
    EXPECT_EQ(r.status, 200);
    const auto doc = nlohmann::json::parse(body(r));
    EXPECT_FALSE(doc.contains("AccountId"));
    EXPECT_EQ(doc.at("Expiration"), "2026-11-23T01:34:59Z");
}

TEST_F(Ecs, AuthorizationChecks) {
    const std::string right(token.reveal());
    expect_error(get("/credentials/web", std::nullopt), 401, "Unauthorized");
    expect_error(get("/credentials/web", std::string("")), 403, "AccessDenied");
    expect_error(get("/credentials/web", std::string("wrong")), 403, "AccessDenied");
    std::string same_length = right;
    same_length.back() = same_length.back() == 'c' ? 'd' : 'c';
    expect_error(get("/credentials/web", same_length), 403, "AccessDenied");
    expect_error(get("/credentials/web", right.substr(0, right.size() - 1)), 403, "AccessDenied");
    expect_error(get("/credentials/web", right + "\n"), 403, "AccessDenied");
    expect_error(get("/credentials/web", "Bearer " + right), 403, "AccessDenied");
    // Two Authorization headers are refused even when one is right.
    auto twice =
        make_request("GET", "/credentials/web", {{"Authorization", right}, {"authorization", right}});
    expect_error(call(twice), 400, "InvalidRequest");
    // Header name case does not matter.
    EXPECT_EQ(call(make_request("GET", "/credentials/web", {{"authorization", right}})).status, 200);
}

TEST_F(Ecs, QueryRefused) {
    const std::string right(token.reveal());
    expect_error(get("/credentials/web?token=" + right, std::nullopt), 400, "InvalidRequest");
    expect_error(get("/credentials/web?" + right, std::string(right)), 400, "InvalidRequest");
    expect_error(get("/credentials/web?x=1", std::string(right)), 400, "InvalidRequest");
    expect_error(get("/credentials/web?", std::string(right)), 400, "InvalidRequest");
    expect_error(get("/other?token=" + right, std::nullopt), 400, "InvalidRequest");
}

TEST_F(Ecs, PathsAndMethods) {
    const std::string right(token.reveal());
    for (const char* target : {"/", "/credentials", "/credentials/web/", "/credentials/webx",
                               "/Credentials/web", "/credentials/web/../web", "/latest/api/token"}) {
        expect_error(get(target, right), 404, "NotFound");
    }
    for (const char* method : {"PUT", "POST", "DELETE", "HEAD"}) {
        const auto r = call(make_request(method, "/credentials/web", {{"Authorization", right}}));
        expect_error(r, 405, "MethodNotAllowed");
        EXPECT_EQ(header_or(r, "Allow"), "GET");
    }
}

TEST_F(Ecs, MissingTokenSettingNeverServes) {
    Secret empty;
    settings.token = &empty;
    expect_error(get("/credentials/web", std::string("")), 500, "internal");
    expect_error(get("/credentials/web", std::nullopt), 500, "internal");
    settings.token = nullptr;
    expect_error(get("/credentials/web", std::string("")), 500, "internal");
}

TEST_F(Ecs, CredentialsThatAreNotUtf8AreNeverServed) {
    credentials.secret_access_key = Secret(std::string_view("wJalrXUtnFEMI\xc0\xaf"));  // an overlong '/'
    const auto r = get("/credentials/web", std::string(token.reveal()));
    expect_error(r, 503, "internal");
    settings.account_id.clear();
    expect_error(get("/credentials/web", std::string(token.reveal())), 503, "internal");
}

TEST_F(Ecs, NoCredentialsIs503) {
    served = ServedCredentials{
        nullptr, make_error(Errc::upstream_rejected, "CreateSession: AccessDeniedException"), {}};
    const auto r = get("/credentials/web", std::string(token.reveal()));
    expect_error(r, 503, "upstream_rejected");
    EXPECT_EQ(body(r), R"({"Code":"upstream_rejected","Message":"CreateSession: AccessDeniedException"})");
}

}  // namespace
}  // namespace rad::surfaces
