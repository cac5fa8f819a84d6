// The handover text: what a stopping agent leaves in systemd's file-descriptor store for the next one.
#include "daemon/systemd/handover.hpp"

#include <gtest/gtest.h>

namespace rad::systemd {
namespace {

using namespace std::chrono_literals;

const std::chrono::system_clock::time_point kReceived{std::chrono::seconds(1'800'000'000)};

HandedOverProfile handed_over(const std::string& name, std::string secret, std::string token) {
    HandedOverProfile p;
    p.name = name;
    p.settings = "61.62.3600";
    p.credentials.access_key_id = "ASIA" + name;
    p.credentials.secret_access_key = Secret(std::move(secret));
    p.credentials.session_token = Secret(std::move(token));
    p.credentials.expiration = kReceived + 3600s;
    p.received = kReceived;
    return p;
}

TEST(Handover, RoundTrips) {
    Handover handover;
    handover.token_key = Secret(std::string("\x01\x02\xff key bytes", 13));
    handover.profiles.push_back(handed_over("web", "wJalr/K7+MDENG=", "IQo JbLmt\nZXIv/=+"));
    handover.profiles.push_back(handed_over("api", "s2", "t2"));
    const Secret text = encode_handover(handover);
    auto decoded = decode_handover(text.reveal());
    ASSERT_TRUE(decoded) << decoded.error().message;
    EXPECT_EQ(decoded->token_key.reveal(), handover.token_key.reveal());
    ASSERT_EQ(decoded->profiles.size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
        const auto& a = handover.profiles[i];
        const auto& b = decoded->profiles[i];
        EXPECT_EQ(b.name, a.name);
        EXPECT_EQ(b.settings, a.settings);
        EXPECT_EQ(b.credentials.access_key_id, a.credentials.access_key_id);
        EXPECT_EQ(b.credentials.secret_access_key.reveal(), a.credentials.secret_access_key.reveal());
        EXPECT_EQ(b.credentials.session_token.reveal(), a.credentials.session_token.reveal());
        EXPECT_EQ(b.credentials.expiration, a.credentials.expiration);
        EXPECT_EQ(b.received, a.received);
    }
    // Secrets are hex in the text: no newline or space of theirs can break a line.
    EXPECT_EQ(text.reveal().find("wJalr"), std::string_view::npos);
}

TEST(Handover, RefusesWhatIsNotItsOwnText) {
    Handover handover;
    handover.token_key = Secret(std::string_view("k"));
    handover.profiles.push_back(handed_over("web", "s", "t"));
    const std::string good(encode_handover(handover).reveal());
    const std::string magic = "rolesanywhere-agent-handover 1\n";
    for (const std::string& text : {
             std::string(), std::string("rolesanywhere-agent-handover 2\ntoken-key 6b\n"),
             magic,                                                       // no token key
             magic + "token-key 6b",                                      // unterminated
             magic + "token-key 6B\n",                                    // uppercase hex
             magic + "token-key 6\n",                                     // odd length
             magic + "token-key 6b\ntoken-key 6b\n",                      // twice
             magic + "token-key 6b\nhello\n",                             // unknown line
             magic + "token-key 6b\nprofile web s ASIA 1 2 73\n",         // a field short
             magic + "token-key 6b\nprofile web s ASIA x 2 73 74\n",      // not a number
             magic + "token-key 6b\nprofile web s ASIA 1 2 7 74\n",       // odd hex
             magic + "token-key 6b\nprofile web s ASIA 1 2  74\n",        // empty secret
             magic + "token-key 6b\nprofile web s ASIA 1 2 73ff 74\n",    // a secret, not UTF-8
             magic + "token-key 6b\nprofile web s ASIA 1 2 73 c0af\n",    // a token, overlong
             magic + "token-key 6b\nprofile web s AS\xffIA 1 2 73 74\n",  // a key id, not UTF-8
             good + good.substr(good.find("profile")),                    // a profile twice
         }) {
        auto decoded = decode_handover(text);
        EXPECT_FALSE(decoded) << text;
        if (!decoded) {
            EXPECT_EQ(decoded.error().code, Errc::input_invalid);
            EXPECT_EQ(decoded.error().message.find('\n'), std::string::npos);
        }
    }
    EXPECT_TRUE(decode_handover(good));
}

// The key is made from the settings' description now; it must be the very key earlier versions wrote, or an
// upgrade would not adopt the credentials the previous process handed over (one CreateSession per profile).
TEST(Handover, SettingsKeyIsTheOneEarlierVersionsWrote) {
    config::ProfileConfig p;
    p.trust_anchor_arn = "arn:aws:rolesanywhere:eu-west-1:111122223333:trust-anchor/a";
    p.profile_arn = "arn:aws:rolesanywhere:eu-west-1:111122223333:profile/p";
    p.role_arn = "arn:aws:iam::111122223333:role/web";
    p.region = "eu-west-1";
    p.role_session_name = "web-1";
    p.session_duration = 900;
    EXPECT_EQ(
        credentials_settings_key(p),
        "61726e3a6177733a726f6c6573616e7977686572653a65752d776573742d313a3131313132323232333333333a7472"
        "7573742d616e63686f722f61.61726e3a6177733a726f6c6573616e7977686572653a65752d776573742d313a31313131"
        "32323232333333333a70726f66696c652f70.61726e3a6177733a69616d3a3a3131313132323232333333333a726f6c"
        "652f776562.65752d776573742d31..7765622d31.900");
}

TEST(Handover, SettingsKeyChangesWithWhatTheCredentialsAreFor) {
    config::ProfileConfig base;
    base.trust_anchor_arn = "arn:aws:rolesanywhere:eu-west-1:111122223333:trust-anchor/a";
    base.profile_arn = "arn:aws:rolesanywhere:eu-west-1:111122223333:profile/p";
    base.role_arn = "arn:aws:iam::111122223333:role/web";
    const std::string key = credentials_settings_key(base);
    EXPECT_EQ(key.find(' '), std::string::npos);
    auto renewed = base;
    renewed.identity.certificate = "/etc/rad/renewed.pem";
    renewed.identity.private_key = "/etc/rad/renewed.key";
    EXPECT_EQ(credentials_settings_key(renewed), key)
        << "a renewed certificate gets credentials of the same role";
    for (auto change : std::initializer_list<void (*)(config::ProfileConfig&)>{
             [](config::ProfileConfig& p) { p.trust_anchor_arn += "2"; },
             [](config::ProfileConfig& p) { p.profile_arn += "2"; },
             [](config::ProfileConfig& p) { p.role_arn += "2"; },
             [](config::ProfileConfig& p) { p.region = "eu-west-2"; },
             [](config::ProfileConfig& p) { p.endpoint = "https://example.test"; },
             [](config::ProfileConfig& p) { p.session_duration = 900; },
             [](config::ProfileConfig& p) { p.role_session_name = "x"; },
         }) {
        auto changed = base;
        change(changed);
        EXPECT_NE(credentials_settings_key(changed), key);
    }
}

}  // namespace
}  // namespace rad::systemd
