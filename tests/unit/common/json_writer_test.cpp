// The JSON string writer: what every byte becomes, and which values are refused.

#include "common/json_writer.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "common/encoding.hpp"

namespace rad {
namespace {

std::optional<std::string> written(std::string_view value) {
    std::string out;
    if (!append_json_string(out, value)) {
        EXPECT_EQ(out, "") << "a refused value left bytes behind";
        return std::nullopt;
    }
    return out;
}

TEST(JsonString, EscapesAndPassThrough) {
    using namespace std::string_view_literals;
    const std::pair<std::string_view, std::string_view> cases[] = {
        {""sv, R"("")"sv},
        {"ASIAEXAMPLE/+=="sv, R"("ASIAEXAMPLE/+==")"sv},  // '/' stays as it is
        {"\""sv, R"("\"")"sv},
        {"\\"sv, R"("\\")"sv},
        {"\n\r\t"sv, R"("\n\r\t")"sv},
        {"\x00"sv, R"("\u0000")"sv},
        {"\x01\x08\x0c\x1f"sv, R"("\u0001\u0008\u000c\u001f")"sv},
        {" ~"sv, R"(" ~")"sv},
        {"\x7f"sv, R"("\u007f")"sv},  // DEL: escaped, so ASCII values stay printable
        {"a\x7f!"sv, R"("a\u007f!")"sv},
        {"caf\xc3\xa9"sv, "\"caf\xc3\xa9\""sv},            // two-byte UTF-8 as it is
        {"\xe2\x82\xac"sv, "\"\xe2\x82\xac\""sv},          // U+20AC
        {"\xe2\x80\xa8"sv, "\"\xe2\x80\xa8\""sv},          // U+2028, not escaped
        {"\xef\xbf\xbf"sv, "\"\xef\xbf\xbf\""sv},          // U+FFFF
        {"\xf0\x9f\x94\x91"sv, "\"\xf0\x9f\x94\x91\""sv},  // U+1F511
        {"\xf4\x8f\xbf\xbf"sv, "\"\xf4\x8f\xbf\xbf\""sv},  // U+10FFFF, the last code point
        {"s\\e\nc\tr\x01t\"\xc3\xa9"sv, "\"s\\\\e\\nc\\tr\\u0001t\\\"\xc3\xa9\""sv},
    };
    for (const auto& [value, expected] : cases) {
        SCOPED_TRACE(hex_lower(value));
        const auto out = written(value);
        ASSERT_TRUE(out.has_value());
        EXPECT_EQ(*out, expected);
        // What a client parses back is the value, byte for byte.
        EXPECT_EQ(nlohmann::json::parse(*out).get<std::string>(), value);
    }
}

TEST(JsonString, RefusesWhatIsNotUtf8) {
    using namespace std::string_view_literals;
    for (const std::string_view value : {
             "\x80"sv,                 // a continuation byte alone
             "tok\xff"sv,              // never in UTF-8
             "\xc0\xaf"sv,             // overlong '/'
             "\xc1\xbf"sv,             // overlong
             "\xe0\x80\xaf"sv,         // overlong, three bytes
             "\xf0\x80\x80\xaf"sv,     // overlong, four bytes
             "\xed\xa0\x80"sv,         // U+D800, a surrogate
             "\xed\xbf\xbf"sv,         // U+DFFF
             "\xf4\x90\x80\x80"sv,     // U+110000, past the last code point
             "\xf5\x80\x80\x80"sv,     // lead byte past F4
             "\xc3"sv,                 // truncated at the end
             "\xe2\x82"sv,             // truncated at the end
             "\xe2\x82x"sv,            // truncated before ASCII
             "\xc3\xa9\xa9"sv,         // a continuation byte too many
             "valid\x7f then \xfe"sv,  // bad byte after escapes
         }) {
        SCOPED_TRACE(hex_lower(value));
        EXPECT_FALSE(written(value).has_value());
        EXPECT_FALSE(is_valid_utf8(value));
    }
}

TEST(JsonString, AppendsToWhatIsThere) {
    std::string out = "{\"k\":";
    ASSERT_TRUE(append_json_string(out, "v"));
    EXPECT_EQ(out, R"({"k":"v")");
    EXPECT_FALSE(append_json_string(out, "\xff"));
    EXPECT_EQ(out, R"({"k":"v")");
}

TEST(JsonString, EverySingleByteIsEscapedParsedBackOrRefused) {
    for (int b = 0; b < 256; ++b) {
        const std::string value(1, static_cast<char>(b));
        const auto out = written(value);
        if (b >= 0x80) {
            EXPECT_FALSE(out.has_value()) << b;
            continue;
        }
        ASSERT_TRUE(out.has_value()) << b;
        EXPECT_LE(out->size(), json_string_bound(1)) << b;
        for (const char c : *out) {
            // ASCII in, printable ASCII out: no control character reaches a terminal or a log.
            EXPECT_TRUE(c >= 0x20 && c < 0x7F) << b;
        }
        EXPECT_EQ(nlohmann::json::parse(*out).get<std::string>(), value) << b;
    }
}

TEST(JsonString, BoundHoldsForTheWorstCase) {
    const std::string value(100, '\x01');
    std::string out;
    out.reserve(json_string_bound(value.size()));
    const char* buffer = out.data();
    ASSERT_TRUE(append_json_string(out, value));
    EXPECT_EQ(out.size(), json_string_bound(value.size()));
    EXPECT_EQ(out.data(), buffer) << "the reserved buffer was reallocated";
}

TEST(ReplaceInvalidUtf8, OneReplacementPerBadByte) {
    using namespace std::string_view_literals;
    const std::pair<std::string_view, std::string_view> cases[] = {
        {""sv, ""sv},
        {"plain\x7f"sv, "plain\x7f"sv},
        {"caf\xc3\xa9 \xf0\x9f\x94\x91"sv, "caf\xc3\xa9 \xf0\x9f\x94\x91"sv},
        {"/etc/x\xff"sv, "/etc/x\xef\xbf\xbd"sv},
        {"\xed\xa0\x80"sv, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"sv},  // a surrogate: three bad bytes
        {"\xe2\x82x"sv, "\xef\xbf\xbd\xef\xbf\xbdx"sv},
        {"\xc3"sv, "\xef\xbf\xbd"sv},
    };
    for (const auto& [text, expected] : cases) {
        const std::string replaced = replace_invalid_utf8(text);
        EXPECT_EQ(replaced, expected);
        EXPECT_TRUE(is_valid_utf8(replaced));
    }
}

}  // namespace
}  // namespace rad
