#include "signer/credentials.hpp"

#include "common/time_format.hpp"

namespace rad::signer {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

// append_json_string writes `value` as a JSON string literal straight into `out`. It is hand-written rather
// than nlohmann's dump() so that the secret and the token never pass through a temporary std::string that
// would be freed unwiped; `out` is the Secret's own buffer, reserved up front so it never reallocates.
void append_json_string(std::string& out, std::string_view value) {
    out += '"';
    for (const char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        switch (ch) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20 || c == 0x7F) {
                    out += "\\u00";
                    out += kHexDigits[c >> 4];
                    out += kHexDigits[c & 0x0F];
                } else {
                    out += ch;
                }
        }
    }
    out += '"';
}

}  // namespace

std::string redact_access_key_id(const std::string& access_key_id) {
    // Four characters are enough to tell keys apart in logs; a key too short to hide anything is not shown.
    constexpr std::size_t kShown = 4;
    if (access_key_id.size() <= kShown) {
        return "…";
    }
    return "…" + access_key_id.substr(access_key_id.size() - kShown);
}

Secret credential_process_json(const Credentials& credentials) {
    const std::string_view access_key_id = credentials.access_key_id;
    const std::string_view secret = credentials.secret_access_key.reveal();
    const std::string_view token = credentials.session_token.reveal();
    const std::string expiration = format_iso8601(credentials.expiration);

    Secret document;
    std::string& out = document.reveal_mutable();
    // Worst case every byte becomes a six-character \u00XX escape; reserving that keeps the buffer in place.
    out.reserve(96 + 6 * (access_key_id.size() + secret.size() + token.size()) + expiration.size());
    out += R"({"Version":1,"AccessKeyId":)";
    append_json_string(out, access_key_id);
    out += R"(,"SecretAccessKey":)";
    append_json_string(out, secret);
    out += R"(,"SessionToken":)";
    append_json_string(out, token);
    out += R"(,"Expiration":)";
    append_json_string(out, expiration);
    out += '}';
    return document;
}

}  // namespace rad::signer
