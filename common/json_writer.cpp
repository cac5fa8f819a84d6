#include "common/json_writer.hpp"

#include <algorithm>
#include <iterator>

namespace rad {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

// ShortEscape is a byte JSON has a two-character escape for, and the letter after the backslash. The other
// bytes that need escaping (controls, DEL) are written as \u00XX.
struct ShortEscape {
    char byte;
    char letter;
};
constexpr ShortEscape kShortEscapes[] = {{'"', '"'}, {'\\', '\\'}, {'\n', 'n'}, {'\r', 'r'}, {'\t', 't'}};

// utf8_sequence_length is the length of the well-formed UTF-8 sequence at the start of `s` (1 for ASCII),
// or 0 when there is none. The second byte's range excludes overlong forms (E0, F0), surrogates (ED) and
// code points above U+10FFFF (F4).
std::size_t utf8_sequence_length(std::string_view s) noexcept {
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    const unsigned char lead = byte(0);
    std::size_t length = 0;
    unsigned char low = 0x80;
    unsigned char high = 0xBF;
    if (lead < 0x80) {
        return 1;
    }
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        low = lead == 0xE0 ? 0xA0 : 0x80;
        high = lead == 0xED ? 0x9F : 0xBF;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        low = lead == 0xF0 ? 0x90 : 0x80;
        high = lead == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (s.size() < length || byte(1) < low || byte(1) > high) {
        return 0;
    }
    for (std::size_t i = 2; i < length; ++i) {
        if (byte(i) < 0x80 || byte(i) > 0xBF) {
            return 0;
        }
    }
    return length;
}

}  // namespace

bool is_valid_utf8(std::string_view text) noexcept {
    std::size_t i = 0;
    while (i < text.size()) {
        const std::size_t length = utf8_sequence_length(text.substr(i));
        if (length == 0) {
            return false;
        }
        i += length;
    }
    return true;
}

std::string replace_invalid_utf8(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
        const std::size_t length = utf8_sequence_length(text.substr(i));
        if (length == 0) {
            // One replacement per byte, so that the number of bad bytes stays visible.
            out.append("\xEF\xBF\xBD");
            ++i;
        } else {
            out.append(text.substr(i, length));
            i += length;
        }
    }
    return out;
}

bool append_json_string(std::string& out, std::string_view value) {
    // Checked before anything is written, so that a refused value leaves no partial copy in `out`.
    if (!is_valid_utf8(value)) {
        return false;
    }
    out.push_back('"');
    std::size_t i = 0;
    while (i < value.size()) {
        // Runs of bytes that need no escaping (all of a key, a token) are copied at once; multi-byte UTF-8
        // is part of such a run, being already known to be well-formed.
        std::size_t plain = i;
        while (plain < value.size()) {
            const auto b = static_cast<unsigned char>(value[plain]);
            if (b < 0x20 || b == 0x7F || b == '"' || b == '\\') {
                break;
            }
            ++plain;
        }
        out.append(value.substr(i, plain - i));
        if (plain == value.size()) {
            break;
        }
        const char c = value[plain];
        const auto* escape = std::find_if(std::begin(kShortEscapes), std::end(kShortEscapes),
                                          [c](const ShortEscape& e) { return e.byte == c; });
        if (escape != std::end(kShortEscapes)) {
            out.push_back('\\');
            out.push_back(escape->letter);
        } else {
            const auto b = static_cast<unsigned char>(c);
            out.append("\\u00");
            out.push_back(kHexDigits[b >> 4]);
            out.push_back(kHexDigits[b & 0x0F]);
        }
        i = plain + 1;
    }
    out.push_back('"');
    return true;
}

}  // namespace rad
