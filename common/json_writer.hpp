#pragma once
// The JSON string writer behind every document that carries credentials (credential_process, IMDS, ECS) and
// their error bodies. It appends straight into the caller's buffer, so a secret never passes through a
// temporary std::string that would be freed unwiped: the caller reserves json_string_bound() bytes per value
// in its Secret's buffer first, and the buffer never reallocates.
//
// What it writes (RFC 8259 §7), one behaviour for every caller:
// - '"' and '\' as \" and \\; LF, CR and TAB as \n, \r and \t; every other byte below 0x20 as \u00XX.
// - DEL (0x7F) as \u007f. RFC 8259 lets it stand raw and every parser accepts either form; escaped, a
//   document of ASCII values stays printable ASCII (a terminal showing credential_process output, a log, a
//   curl of IMDS), and the value a client parses is the same.
// - Well-formed UTF-8 as it is; "/" and U+2028/U+2029 are not escaped (no client needs it).
// - A value that is not well-formed UTF-8 (a stray byte, an overlong form, a surrogate, a code point past
//   U+10FFFF, a truncated sequence) is refused: nothing is appended and append_json_string returns false.
//   JSON text must be UTF-8 (RFC 8259 §8.1): passed through raw, strict readers (botocore decodes
//   credential_process output as UTF-8 before parsing it; serde_json, System.Text.Json) reject the whole
//   document, and lenient ones (Go, JavaScript) turn the bytes into U+FFFD, which is what replacing them here
//   would do. Either way a client would hold a key or token that is not the one issued and fail much later
//   with a signature error, so a value is written exactly or not at all. Credentials are ASCII (key ids,
//   base64 keys and tokens) read by a JSON parser that refuses ill-formed UTF-8: a refusal here means a
//   broken invariant, never a routine case.
// - Text that is not a secret and must reach the client whatever its bytes (an error message naming a file
//   path given on the command line) goes through replace_invalid_utf8() first: the loss is explicit at the
//   call site, and never happens to a secret.

#include <cstddef>
#include <string>
#include <string_view>

namespace rad {

// append_json_string appends `value` as a JSON string literal, quotes included, to `out`, and returns true.
// When `value` is not well-formed UTF-8 it appends nothing and returns false.
[[nodiscard]] bool append_json_string(std::string& out, std::string_view value);

// json_string_bound is the most append_json_string appends for a value of `size` bytes: every byte as a
// six-character \u00XX escape, and the two quotes.
constexpr std::size_t json_string_bound(std::size_t size) noexcept {
    return 6 * size + 2;
}

// is_valid_utf8 is true when `text` is well-formed UTF-8 (RFC 3629 §4; the Unicode Standard, table 3-7).
bool is_valid_utf8(std::string_view text) noexcept;

// replace_invalid_utf8 is `text` with every byte that does not belong to a well-formed UTF-8 sequence
// replaced by U+FFFD (EF BF BD). For messages only: a secret must never be altered.
std::string replace_invalid_utf8(std::string_view text);

}  // namespace rad
