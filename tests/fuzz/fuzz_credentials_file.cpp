// Fuzz target: edit_credentials_file on arbitrary existing file text. The first input byte picks the profile
// name, the rest is the file.
//
// The oracle is written from the promises of credentials_file.hpp, not from the editor's code: it never
// rebuilds the file or splits the output into sections. It finds two lines in the input, the first one that
// opens the profile ("[name]" after leading blanks) and the next header after it (a "[" after leading blanks,
// with a "]" later on the line), and requires of the output:
//  - the bytes up to the end of that header's text, and the bytes from the next header on, unchanged;
//  - between them, the input's lines in order, each with its own line ending, once the lines that set one of
//    the four keys are taken out of both; and each key set exactly once, to the new value;
//  - every key where the input set it first; a key the section lacked after its last non-blank line, so that
//    the blank lines that end the section still end it;
//  - with no such section, the input kept whole and the section added after it: blank lines, the header, the
//    four keys, nothing else;
//  - a file whose lines all end in CRLF keeps CRLF everywhere; a file without CR gets none;
//  - editing the output again with the same credentials changes nothing.

#include <array>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/time_format.hpp"
#include "daemon/surfaces/credentials_file.hpp"

namespace {

using namespace std::chrono_literals;

constexpr std::array<std::string_view, 4> kProfiles = {"default", "rad", "web", "prod-eu-west-1"};
constexpr std::size_t kKeys = 4;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
}

const rad::signer::Credentials& credentials() {
    static const rad::signer::Credentials c = [] {
        rad::signer::Credentials made;
        made.access_key_id = "ASIAFUZZEXAMPLE00001";
        made.secret_access_key = rad::Secret(std::string_view("wJalrXUtnFEMI/K7MDENG+bPxRfiCYFUZZSECRETKEY"));
        made.session_token =
            rad::Secret(std::string_view("IQoJb3JpZ2luX2VjFUZZSESSIONTOKEN//////////wEaCXVz"));
        made.expiration = std::chrono::system_clock::time_point{} + 1795397699s;
        return made;
    }();
    return c;
}

// The four keys and the values the edit must leave.
struct Wanted {
    std::array<std::string_view, kKeys> keys{"aws_access_key_id", "aws_secret_access_key",
                                             "aws_session_token", rad::surfaces::kExpirationKey};
    std::string expiration = rad::format_iso8601(credentials().expiration);
    std::array<std::string_view, kKeys> values{credentials().access_key_id,
                                               credentials().secret_access_key.reveal(),
                                               credentials().session_token.reveal(), expiration};
};

const Wanted& wanted() {
    static const Wanted w;
    return w;
}

// A line as stored: where it starts in its text, what it says, and how it ends ("\n", "\r\n", or "" for a
// last line without an ending).
struct Line {
    std::size_t at;
    std::string_view text;
    std::string_view ending;
};

std::vector<Line> lines_of(std::string_view text) {
    std::vector<Line> lines;
    std::size_t at = 0;
    while (at < text.size()) {
        const std::size_t newline = text.find('\n', at);
        if (newline == std::string_view::npos) {
            lines.push_back({at, text.substr(at), {}});
            break;
        }
        const bool crlf = newline > at && text[newline - 1] == '\r';
        const std::size_t text_end = crlf ? newline - 1 : newline;
        lines.push_back({at, text.substr(at, text_end - at), crlf ? "\r\n" : "\n"});
        at = newline + 1;
    }
    return lines;
}

std::string_view skip_blanks(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    return s;
}

bool blank(std::string_view text) {
    return skip_blanks(text).empty();
}

bool opens_a_section(std::string_view text) {
    const std::string_view s = skip_blanks(text);
    return !s.empty() && s.front() == '[' && s.find(']') != std::string_view::npos;
}

bool opens_profile(std::string_view text, std::string_view profile) {
    const std::string header = "[" + std::string(profile) + "]";
    return skip_blanks(text).substr(0, header.size()) == header;
}

// key_set_by is the index of the wanted key a line sets ("key = value" or "key: value", blanks allowed
// around the key, its letters in any case, as botocore reads the file), or kKeys when it sets none of them.
std::size_t key_set_by(std::string_view text) {
    const std::string_view s = skip_blanks(text);
    for (std::size_t k = 0; k < kKeys; ++k) {
        const std::string_view key = wanted().keys[k];
        if (s.size() < key.size()) {
            continue;
        }
        bool same = true;
        for (std::size_t i = 0; i < key.size(); ++i) {
            same = same && std::tolower(static_cast<unsigned char>(s[i])) == key[i];
        }
        const std::string_view rest = skip_blanks(s.substr(key.size()));
        if (same && !rest.empty() && (rest.front() == '=' || rest.front() == ':')) {
            return k;
        }
    }
    return kKeys;
}

std::string_view value_of(std::string_view text) {
    std::string_view value = skip_blanks(text.substr(text.find('=') + 1));
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
        value.remove_suffix(1);
    }
    return value;
}

void check_line_endings(std::string_view existing, std::string_view out) {
    if (existing.find('\r') == std::string_view::npos && out.find('\r') != std::string_view::npos) {
        fail("a file without CR got one");
    }
    const auto all_crlf = [](std::string_view text) {
        for (std::size_t at = text.find('\n'); at != std::string_view::npos; at = text.find('\n', at + 1)) {
            if (at == 0 || text[at - 1] != '\r') {
                return false;
            }
        }
        return true;
    };
    if (existing.find('\n') != std::string_view::npos && all_crlf(existing) && !all_crlf(out)) {
        fail("a CRLF file got a line ending in LF alone");
    }
}

// check_appended: the input had no section for the profile.
void check_appended(std::string_view existing, std::string_view out, std::string_view profile) {
    if (out.substr(0, existing.size()) != existing) {
        fail("the input was not kept whole before the appended section");
    }
    const std::string_view added = out.substr(existing.size());
    if (!existing.empty() && existing.back() != '\n' &&
        !(added.starts_with("\n") || added.starts_with("\r\n"))) {
        fail("the appended section continues the input's last line");
    }
    const auto lines = lines_of(added);
    std::size_t i = 0;
    while (i < lines.size() && lines[i].text.empty()) {
        ++i;
    }
    if (i == lines.size() || lines[i].text != "[" + std::string(profile) + "]") {
        fail("no header for the appended section");
    }
    std::array<int, kKeys> seen{};
    for (++i; i < lines.size(); ++i) {
        const std::size_t k = key_set_by(lines[i].text);
        if (k == kKeys || value_of(lines[i].text) != wanted().values[k] || lines[i].ending.empty()) {
            fail("the appended section holds something other than the four keys, each on its own line");
        }
        ++seen[k];
    }
    for (const int count : seen) {
        if (count != 1) {
            fail("the appended section lacks a key or repeats one");
        }
    }
}

// check_edited: the input's first section for the profile has its header at lines[header], and the next
// section's header at lines[next] (lines.size() when there is none).
void check_edited(std::string_view existing,
                  std::string_view out,
                  const std::vector<Line>& lines,
                  std::size_t header,
                  std::size_t next) {
    const std::size_t kept_before = lines[header].at + lines[header].text.size();
    const std::string_view kept_after = next < lines.size() ? existing.substr(lines[next].at) : "";
    if (out.size() < kept_before + kept_after.size() ||
        out.substr(0, kept_before) != existing.substr(0, kept_before) ||
        out.substr(out.size() - kept_after.size()) != kept_after) {
        fail("bytes outside the profile's section changed");
    }
    std::string_view between = out.substr(kept_before, out.size() - kept_after.size() - kept_before);
    // The header's own line ending, kept; a header that ended the file gets one.
    const std::string_view header_ending = lines[header].ending;
    if (!header_ending.empty() ? !between.starts_with(header_ending)
                               : !(between.starts_with("\n") || between.starts_with("\r\n"))) {
        fail("the header's line ending changed");
    }
    between.remove_prefix(!header_ending.empty() ? header_ending.size()
                                                 : (between.starts_with("\n") ? 1 : 2));
    if (!kept_after.empty() && !between.empty() && between.back() != '\n') {
        fail("the section's last line runs into the next header");
    }
    const std::vector<Line> body_out = lines_of(between);
    const std::vector<Line> body_in(lines.begin() + static_cast<std::ptrdiff_t>(header) + 1,
                                    lines.begin() + static_cast<std::ptrdiff_t>(next));

    // The lines other than the keys', in order, on both sides; and where each key is: after how many of them.
    std::vector<Line> others_in;
    std::array<std::optional<std::size_t>, kKeys> first_in{};
    std::size_t others_up_to_last_non_blank = 0;
    for (const Line& line : body_in) {
        const std::size_t k = key_set_by(line.text);
        if (k < kKeys && !first_in[k]) {
            first_in[k] = others_in.size();
        }
        if (k == kKeys) {
            others_in.push_back(line);
        }
        if (!blank(line.text)) {
            others_up_to_last_non_blank = others_in.size();
        }
    }
    std::vector<Line> others_out;
    std::array<int, kKeys> seen{};
    for (const Line& line : body_out) {
        const std::size_t k = key_set_by(line.text);
        if (k == kKeys) {
            others_out.push_back(line);
            continue;
        }
        ++seen[k];
        if (value_of(line.text) != wanted().values[k]) {
            fail("a key of the profile does not hold the new value");
        }
        const std::size_t where = first_in[k] ? *first_in[k] : others_up_to_last_non_blank;
        if (others_out.size() != where) {
            fail(first_in[k] ? "a key was moved instead of replaced in place"
                             : "a missing key was not added after the section's last non-blank line");
        }
    }
    for (const int count : seen) {
        if (count != 1) {
            fail("a key of the profile is missing or repeated");
        }
    }
    if (others_out.size() != others_in.size()) {
        fail("the section's other lines were not kept");
    }
    for (std::size_t i = 0; i < others_in.size(); ++i) {
        const Line& before = others_in[i];
        const Line& after = others_out[i];
        const std::string kept = std::string(before.text) + std::string(before.ending);
        const std::string now = std::string(after.text) + std::string(after.ending);
        // The file's last line, without an ending, gets the file's newline ("\n" or "\r\n") when keys are
        // added after it.
        const bool ended_now = before.ending.empty() && after.at != body_out.back().at &&
                               (now == kept + "\n" || now == kept + "\r\n");
        if (now != kept && !ended_now) {
            fail("a line of the section other than the keys changed");
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const std::string_view profile = kProfiles[data[0] % kProfiles.size()];
    const std::string_view existing(reinterpret_cast<const char*>(data + 1), size - 1);

    const rad::Secret edited = rad::surfaces::edit_credentials_file(existing, profile, credentials());
    const std::string_view out = edited.reveal();

    const std::vector<Line> lines = lines_of(existing);
    std::size_t header = 0;
    while (header < lines.size() && !opens_profile(lines[header].text, profile)) {
        ++header;
    }
    if (header == lines.size()) {
        check_appended(existing, out, profile);
    } else {
        std::size_t next = header + 1;
        while (next < lines.size() && !opens_a_section(lines[next].text)) {
            ++next;
        }
        check_edited(existing, out, lines, header, next);
    }
    check_line_endings(existing, out);

    const rad::Secret again = rad::surfaces::edit_credentials_file(out, profile, credentials());
    if (again.reveal() != out) {
        fail("editing twice with the same credentials is not idempotent");
    }
    return 0;
}
