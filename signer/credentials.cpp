#include "signer/credentials.hpp"

#include "common/json_writer.hpp"
#include "common/time_format.hpp"

namespace rad::signer {

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
    // Reserved for the worst case (the names and punctuation are 77 bytes), so the buffer never reallocates
    // and leaves no copy of a secret behind.
    out.reserve(96 + json_string_bound(access_key_id.size()) + json_string_bound(secret.size()) +
                json_string_bound(token.size()) + json_string_bound(expiration.size()));
    out += R"({"Version":1,"AccessKeyId":)";
    bool written = append_json_string(out, access_key_id);
    out += R"(,"SecretAccessKey":)";
    written = written && append_json_string(out, secret);
    out += R"(,"SessionToken":)";
    written = written && append_json_string(out, token);
    out += R"(,"Expiration":)";
    written = written && append_json_string(out, expiration);
    out += '}';
    if (!written) {
        // A value that is not UTF-8 cannot be written exactly (common/json_writer.hpp); no document at all
        // is better than one that parses to other credentials.
        return Secret();
    }
    return document;
}

}  // namespace rad::signer
