#pragma once
// Byte encodings used on the wire: lowercase hex (signatures, hashes) and standard padded base64
// (X-Amz-X509). Pure functions, no allocation beyond the returned string.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rad {

// hex_lower encodes bytes as lowercase hexadecimal, two digits per byte.
std::string hex_lower(std::span<const std::uint8_t> bytes);
std::string hex_lower(std::string_view bytes);

// base64_encode encodes with the standard alphabet (RFC 4648 §4) and '=' padding, no line breaks.
std::string base64_encode(std::span<const std::uint8_t> bytes);

// base64_digit is the 6-bit value of `c` in the standard alphabet ('+' and '/', url false) or the URL-safe
// one ('-' and '_', url true, RFC 4648 §5), or -1 when `c` is not in it.
int base64_digit(char c, bool url) noexcept;

// base64_decode decodes standard padded base64 without whitespace; nullopt on any invalid character,
// bad padding or length.
std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text);

}  // namespace rad
