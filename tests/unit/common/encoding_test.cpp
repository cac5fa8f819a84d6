#include "common/encoding.hpp"

#include <gtest/gtest.h>

namespace rad {
namespace {

std::vector<std::uint8_t> bytes(std::string_view s) {
    return {s.begin(), s.end()};
}

TEST(Hex, LowercaseTwoDigitsPerByte) {
    EXPECT_EQ(hex_lower(std::string_view("")), "");
    EXPECT_EQ(hex_lower(std::string_view("\x00\x01\x7f\x80\xff", 5)), "00017f80ff");
    const std::vector<std::uint8_t> data{0xde, 0xad, 0xbe, 0xef};
    EXPECT_EQ(hex_lower(data), "deadbeef");
    EXPECT_EQ(hex_lower(std::string_view("abc")), "616263");
}

TEST(Base64, Rfc4648Vectors) {
    const std::pair<const char*, const char*> vectors[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (const auto& [plain, encoded] : vectors) {
        SCOPED_TRACE(plain);
        EXPECT_EQ(base64_encode(bytes(plain)), encoded);
        const auto decoded = base64_decode(encoded);
        ASSERT_TRUE(decoded.has_value());
        EXPECT_EQ(decoded.value(), bytes(plain));
    }
}

TEST(Base64, UsesTheStandardAlphabet) {
    const std::vector<std::uint8_t> data{0xfb, 0xff, 0xbf};
    EXPECT_EQ(base64_encode(data), "+/+/");
    EXPECT_EQ(base64_decode("+/+/").value(), data);
}

TEST(Base64, DigitsOfBothAlphabets) {
    const std::string standard = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const std::string url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int i = 0; i < 64; ++i) {
        EXPECT_EQ(base64_digit(standard[static_cast<std::size_t>(i)], false), i);
        EXPECT_EQ(base64_digit(url[static_cast<std::size_t>(i)], true), i);
    }
    for (char c : {'-', '_', '=', ' ', '\0'}) {
        EXPECT_EQ(base64_digit(c, false), -1) << c;
    }
    for (char c : {'+', '/', '=', ' ', '\0'}) {
        EXPECT_EQ(base64_digit(c, true), -1) << c;
    }
}

TEST(Base64, RoundTripsEveryByteValue) {
    std::vector<std::uint8_t> all(256);
    for (std::size_t i = 0; i < all.size(); ++i) {
        all[i] = static_cast<std::uint8_t>(i);
    }
    for (std::size_t n = 0; n <= all.size(); n += 37) {
        const std::vector<std::uint8_t> part(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n));
        const std::string text = base64_encode(part);
        EXPECT_EQ(text.size() % 4, 0u);
        EXPECT_EQ(base64_decode(text).value(), part);
    }
}

TEST(Base64, RejectsInvalidInput) {
    for (const char* bad : {"Zg", "Zg=", "Zm9", "Z===", "====", "Zg==Zg==", "Zm9v\n", " Zm9v", "Zm-v", "Zm_v",
                            "Zm9v====", "Z=g=", "Zm=v"}) {
        SCOPED_TRACE(bad);
        EXPECT_FALSE(base64_decode(bad).has_value());
    }
}

}  // namespace
}  // namespace rad
