#include "daemon/surfaces/served_credentials.hpp"

#include <algorithm>

#include "common/json_writer.hpp"

namespace rad::surfaces {

// json_object renders string fields in order, either compact or in IMDS's pretty style ("Name" : value, two
// spaces of indent, no trailing newline). The buffer is reserved for the worst case first: it never
// reallocates, so no copy of a secret is left behind in freed memory, and it moves into the Secret whole.
// nullopt when a value is not UTF-8 and so cannot be written exactly (common/json_writer.hpp).
std::optional<Secret> json_object(std::initializer_list<JsonField> fields, bool pretty) {
    std::size_t bound = 8;
    for (const auto& [name, value] : fields) {
        bound += json_string_bound(name.size()) + json_string_bound(value.size()) + 8;
    }
    Secret document;
    std::string& out = document.reveal_mutable();
    out.reserve(bound);
    out.push_back('{');
    bool first = true;
    for (const auto& [name, value] : fields) {
        if (!first) {
            out.push_back(',');
        }
        first = false;
        if (pretty) {
            out.append("\n  ");
        }
        if (!append_json_string(out, name)) {
            return std::nullopt;
        }
        out.append(pretty ? " : " : ":");
        if (!append_json_string(out, value)) {
            return std::nullopt;
        }
    }
    if (pretty) {
        out.push_back('\n');
    }
    out.push_back('}');
    return document;
}

const signer::Credentials* credentials_or_reason(const ServedCredentials& served, Error& why) {
    if (served.credentials == nullptr) {
        why = served.error;
        if (why.message.empty()) {
            why = make_error(Errc::internal, "no credentials are available");
        }
    }
    return served.credentials;
}

// error_json is {"Code":…,"Message":…}. A message names files and flags whose bytes are not ours to choose,
// and is no secret: what is not UTF-8 in it becomes U+FFFD, so that the client still reads what failed.
Secret error_json(std::string_view code, std::string_view message) {
    const std::string code_text = replace_invalid_utf8(code);
    const std::string message_text = replace_invalid_utf8(message);
    auto document = json_object({{"Code", code_text}, {"Message", message_text}}, false);
    return document ? std::move(*document) : Secret();  // never empty: both values are UTF-8 now
}

bool constant_time_equals(std::string_view a, std::string_view b) noexcept {
    // Lengths are not secret (every token of a kind has the same length); the bytes are. Every byte of the
    // longer input is visited and differences are OR-ed, so the time does not depend on where they are.
    const std::size_t n = std::max(a.size(), b.size());
    volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (std::size_t i = 0; i < n; ++i) {
        const auto x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        const auto y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff = static_cast<unsigned char>(diff | (x ^ y));
    }
    return diff == 0;
}

}  // namespace rad::surfaces
