#include "daemon/systemd/handover.hpp"

#include <charconv>

#include "common/json_writer.hpp"
#include "config/settings.hpp"

namespace rad::systemd {

namespace {

constexpr std::string_view kMagic = "rolesanywhere-agent-handover 1";
constexpr char kHex[] = "0123456789abcdef";

void append_hex(std::string& out, std::string_view bytes) {
    for (const char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        out += kHex[c >> 4];
        out += kHex[c & 0x0F];
    }
}

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

// decode_hex_into appends the bytes of lowercase hex `text` to `out`; false on any other character.
bool decode_hex_into(std::string& out, std::string_view text) {
    if (text.size() % 2 != 0) {
        return false;
    }
    out.reserve(out.size() + text.size() / 2);
    for (std::size_t i = 0; i < text.size(); i += 2) {
        const int high = hex_value(text[i]);
        const int low = hex_value(text[i + 1]);
        if (high < 0 || low < 0) {
            return false;
        }
        out += static_cast<char>(high * 16 + low);
    }
    return true;
}

std::optional<Secret> secret_from_hex(std::string_view text) {
    Secret secret;
    if (!decode_hex_into(secret.reveal_mutable(), text)) {
        return std::nullopt;
    }
    return secret;
}

std::optional<std::int64_t> number(std::string_view text) {
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

std::int64_t unix_seconds(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::vector<std::string_view> fields_of(std::string_view line) {
    std::vector<std::string_view> fields;
    while (!line.empty()) {
        const auto space = line.find(' ');
        fields.push_back(line.substr(0, space));
        if (space == std::string_view::npos) {
            break;
        }
        line.remove_prefix(space + 1);
    }
    return fields;
}

Error invalid(const std::string& what) {
    return make_error(Errc::input_invalid, "handover state: " + what);
}

}  // namespace

std::string credentials_settings_key(const config::ProfileConfig& p) {
    // The settings marked credentials_key (config/settings.cpp), in the order of the description: the texts
    // hex-encoded, each followed by '.', then the numbers in decimal. The same key as every earlier version
    // of the agent wrote, so that an upgrade adopts what the previous process handed over.
    std::string key, numbers;
    for (const auto& setting : config::profile_settings()) {
        if ((setting.roles & config::role::credentials_key) == 0) {
            continue;
        }
        const std::string value = config::value_text(setting, p);
        if (setting.kind == config::ValueKind::integer) {
            numbers += (numbers.empty() ? "" : ".") + value;
        } else {
            append_hex(key, value);
            key += '.';
        }
    }
    return key + numbers;
}

Secret encode_handover(const Handover& handover) {
    std::size_t size = kMagic.size() + 16 + handover.token_key.size() * 2;
    for (const auto& p : handover.profiles) {
        size += 128 + p.name.size() + p.settings.size() + p.credentials.access_key_id.size() +
                2 * p.certificate.size() +
                2 * (p.credentials.secret_access_key.size() + p.credentials.session_token.size());
    }
    Secret text;
    std::string& out = text.reveal_mutable();
    out.reserve(size);  // never reallocated: no copy of the secrets is left behind unwiped
    out.append(kMagic).append("\ntoken-key ");
    append_hex(out, handover.token_key.reveal());
    out += '\n';
    for (const auto& p : handover.profiles) {
        out.append("profile ").append(p.name).append(" ").append(p.settings).append(" ");
        out.append(p.credentials.access_key_id).append(" ");
        out.append(std::to_string(unix_seconds(p.credentials.expiration))).append(" ");
        out.append(std::to_string(unix_seconds(p.received))).append(" ");
        append_hex(out, p.credentials.secret_access_key.reveal());
        out += ' ';
        append_hex(out, p.credentials.session_token.reveal());
        out += ' ';
        append_hex(out, p.certificate);
        out += '\n';
    }
    return text;
}

Result<Handover> decode_handover(std::string_view text) {
    Handover handover;
    bool seen_key = false;
    bool first = true;
    while (!text.empty()) {
        const auto newline = text.find('\n');
        if (newline == std::string_view::npos) {
            return invalid("the last line is not terminated");
        }
        const std::string_view line = text.substr(0, newline);
        text.remove_prefix(newline + 1);
        if (first) {
            if (line != kMagic) {
                return invalid("unknown format");
            }
            first = false;
            continue;
        }
        const auto fields = fields_of(line);
        if (fields.size() == 2 && fields[0] == "token-key" && !seen_key) {
            auto key = secret_from_hex(fields[1]);
            if (!key) {
                return invalid("malformed token key");
            }
            handover.token_key = std::move(*key);
            seen_key = true;
            continue;
        }
        // Eight fields: written by an agent that did not record the certificate.
        if ((fields.size() != 8 && fields.size() != 9) || fields[0] != "profile") {
            return invalid("unknown line");
        }
        HandedOverProfile p;
        p.name = std::string(fields[1]);
        p.settings = std::string(fields[2]);
        p.credentials.access_key_id = std::string(fields[3]);
        const auto expiration = number(fields[4]);
        const auto received = number(fields[5]);
        auto secret = secret_from_hex(fields[6]);
        auto token = secret_from_hex(fields[7]);
        if (p.name.empty() || p.settings.empty() || p.credentials.access_key_id.empty() || !expiration ||
            !received || !secret || !token || secret->empty() || token->empty()) {
            return invalid("malformed profile line");
        }
        // signer::Credentials are UTF-8 text, or no JSON document could carry them exactly.
        if (!is_valid_utf8(p.credentials.access_key_id) || !is_valid_utf8(secret->reveal()) ||
            !is_valid_utf8(token->reveal())) {
            return invalid("credentials that are not UTF-8 text");
        }
        for (const auto& other : handover.profiles) {
            if (other.name == p.name) {
                return invalid("profile " + p.name + " twice");
            }
        }
        p.credentials.expiration = std::chrono::system_clock::time_point(std::chrono::seconds(*expiration));
        p.received = std::chrono::system_clock::time_point(std::chrono::seconds(*received));
        p.credentials.secret_access_key = std::move(*secret);
        p.credentials.session_token = std::move(*token);
        if (fields.size() == 9 && !decode_hex_into(p.certificate, fields[8])) {
            return invalid("malformed certificate fingerprint");
        }
        handover.profiles.push_back(std::move(p));
    }
    if (first || !seen_key) {
        return invalid("incomplete");
    }
    return handover;
}

}  // namespace rad::systemd
