#include "pki/pkcs11_uri.hpp"

#include <gtest/gtest.h>

namespace rad::pki {
namespace {

TEST(Pkcs11Uri, ParsesPathAndQueryAttributes) {
    auto uri = parse_pkcs11_uri(
        "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=3080d33d4e06e7d8;token=rad%2Dtest;"
        "slot-id=42;id=%01%ff;object=my%20key;type=private?pin-source=file:/etc/pin&module-path=/usr/lib/"
        "m.so",
        "--private-key");
    ASSERT_TRUE(uri) << uri.error().message;
    EXPECT_EQ(uri->model, "SoftHSM v2");
    EXPECT_EQ(uri->manufacturer, "SoftHSM project");
    EXPECT_EQ(uri->serial, "3080d33d4e06e7d8");
    EXPECT_EQ(uri->token, "rad-test");
    EXPECT_EQ(uri->slot_id, 42U);
    EXPECT_EQ(uri->id, std::string("\x01\xff", 2));
    EXPECT_EQ(uri->object, "my key");
    EXPECT_EQ(uri->type, Pkcs11ObjectType::private_key);
    EXPECT_EQ(uri->pin_source, "file:/etc/pin");
    EXPECT_EQ(uri->module_path, "/usr/lib/m.so");
    EXPECT_FALSE(uri->pin_value);
    EXPECT_FALSE(uri->library_description);
}

TEST(Pkcs11Uri, EmptyUriMatchesEverything) {
    auto uri = parse_pkcs11_uri("pkcs11:", "--certificate");
    ASSERT_TRUE(uri);
    EXPECT_FALSE(uri->token || uri->object || uri->id || uri->type || uri->slot_id || uri->pin_value);
}

TEST(Pkcs11Uri, SchemeIsCaseInsensitiveAndEmptySeparatorsAreHarmless) {
    auto uri = parse_pkcs11_uri("PKCS11:token=a;;object=b;?&pin-value=1234&", "x");
    ASSERT_TRUE(uri) << uri.error().message;
    EXPECT_EQ(uri->token, "a");
    EXPECT_EQ(uri->object, "b");
    ASSERT_TRUE(uri->pin_value);
    EXPECT_EQ(uri->pin_value->reveal(), "1234");
}

struct Refusal {
    const char* text;
    const char* expected;  // a part of the message
};

TEST(Pkcs11Uri, RefusalsNameTheAttribute) {
    const Refusal cases[] = {
        {"/etc/key.pem", "not a pkcs11: URI"},
        {"pkcs11:tokn=a", "\"tokn\" is unknown"},
        {"pkcs11:token=a?pin-sauce=x", "\"pin-sauce\" is unknown"},
        {"pkcs11:token=a;token=b", "\"token\" is given twice"},
        {"pkcs11:id=%0", "malformed percent escape"},
        {"pkcs11:id=%zz", "malformed percent escape"},
        {"pkcs11:object=a b", "space or control character"},
        {"pkcs11:slot-id=1x", "not a decimal number"},
        {"pkcs11:slot-id=", "not a decimal number"},
        {"pkcs11:type=key", "is not one of cert, private"},
        {"pkcs11:pin-value=1234", "belongs in the query part"},
        {"pkcs11:?token=a", "belongs in the path part"},
        {"pkcs11:token", "not of the form name=value"},
        {"pkcs11:token=a#frag", "no fragment"},
        {"pkcs11:token=a?pin-value=1&pin-source=file:/p", "both pin-value and pin-source"},
        {"pkcs11:token=a?pin-value=1&pin-value=2", "\"pin-value\" is given twice"},
    };
    for (const auto& c : cases) {
        auto uri = parse_pkcs11_uri(c.text, "--certificate");
        ASSERT_FALSE(uri) << c.text;
        EXPECT_EQ(uri.error().code, Errc::usage) << c.text;
        EXPECT_NE(uri.error().message.find(c.expected), std::string::npos)
            << c.text << ": " << uri.error().message;
        EXPECT_EQ(uri.error().message.rfind("--certificate: ", 0), 0U) << uri.error().message;
    }
}

TEST(Pkcs11Uri, PinNeverAppearsInMessages) {
    auto uri = parse_pkcs11_uri("pkcs11:token=a?pin-value=s3cr3t&pin-value=s3cr3t", "--certificate");
    ASSERT_FALSE(uri);
    EXPECT_EQ(uri.error().message.find("s3cr3t"), std::string::npos);
}

TEST(Pkcs11Uri, FormatRoundTripsWithoutThePin) {
    auto uri = parse_pkcs11_uri("pkcs11:token=my%20token;id=%01%02;object=k;type=cert?pin-value=1234", "x");
    ASSERT_TRUE(uri);
    const std::string text = format_pkcs11_uri(*uri);
    EXPECT_EQ(text, "pkcs11:token=my%20token;id=%01%02;object=k;type=cert");
    auto again = parse_pkcs11_uri(text, "x");
    ASSERT_TRUE(again);
    EXPECT_EQ(again->token, uri->token);
    EXPECT_EQ(again->id, uri->id);
    EXPECT_FALSE(again->pin_value);
}

TEST(Pkcs11Uri, CloneCopiesThePin) {
    auto uri = parse_pkcs11_uri("pkcs11:object=k?pin-value=4321", "x");
    ASSERT_TRUE(uri);
    const Pkcs11Uri copy = uri->clone();
    ASSERT_TRUE(copy.pin_value);
    EXPECT_EQ(copy.pin_value->reveal(), "4321");
    EXPECT_EQ(copy.object, "k");
}

TEST(Pkcs11Uri, IsPkcs11Uri) {
    EXPECT_TRUE(is_pkcs11_uri("pkcs11:"));
    EXPECT_TRUE(is_pkcs11_uri("Pkcs11:token=a"));
    EXPECT_FALSE(is_pkcs11_uri("pkcs11"));
    EXPECT_FALSE(is_pkcs11_uri("/pkcs11:x"));
    EXPECT_FALSE(is_pkcs11_uri("handle:0x81000001"));
}

}  // namespace
}  // namespace rad::pki
