// Fuzz target: edit_credentials_file on arbitrary existing file text. The first input byte picks the profile
// name, the rest is the file. The output is read back with the rules of the header (a "[name]" line opens a
// section, "key = value" lines belong to it) and must hold, in the first section of that profile, each of
// the four keys exactly once with the new value; everything before that section is kept byte for byte; and
// editing the output again with the same credentials changes nothing.

#include <array>
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

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
}

std::string_view trim(std::string_view s) {
    const auto first = s.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
        return {};
    }
    return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> lines;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t nl = text.find('\n', pos);
        std::size_t next = nl == std::string_view::npos ? text.size() : nl + 1;
        std::size_t end = nl == std::string_view::npos ? text.size() : nl;
        if (end > pos && text[end - 1] == '\r' && nl != std::string_view::npos) {
            --end;
        }
        lines.push_back(text.substr(pos, end - pos));
        pos = next;
    }
    return lines;
}

std::optional<std::string_view> header_name(std::string_view line) {
    const auto t = trim(line);
    if (t.size() < 2 || t.front() != '[') {
        return std::nullopt;
    }
    const auto close = t.find(']');
    if (close == std::string_view::npos) {
        return std::nullopt;
    }
    return t.substr(1, close - 1);
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

// check_section finds the first [profile] section of `text` and checks its four keys; it returns the offset
// of the section's header line.
std::size_t check_section(std::string_view text, std::string_view profile) {
    const auto& c = credentials();
    const std::string expiration = rad::format_iso8601(c.expiration);
    const std::array<std::pair<std::string_view, std::string_view>, 4> wanted{{
        {"aws_access_key_id", c.access_key_id},
        {"aws_secret_access_key", c.secret_access_key.reveal()},
        {"aws_session_token", c.session_token.reveal()},
        {rad::daemon::kExpirationKey, expiration},
    }};
    std::array<int, 4> seen{};
    const auto lines = lines_of(text);
    std::optional<std::size_t> header_offset;
    for (const auto line : lines) {
        const auto name = header_name(line);
        if (name && header_offset) {
            break;
        }
        if (name) {
            if (*name == profile) {
                header_offset = static_cast<std::size_t>(line.data() - text.data());
            }
            continue;
        }
        if (!header_offset) {
            continue;
        }
        const auto t = trim(line);
        if (t.empty() || t.front() == '#' || t.front() == ';') {
            continue;
        }
        const auto eq = t.find('=');
        if (eq == std::string_view::npos) {
            continue;
        }
        const auto key = trim(t.substr(0, eq));
        for (std::size_t k = 0; k < wanted.size(); ++k) {
            if (key == wanted[k].first) {
                ++seen[k];
                if (trim(t.substr(eq + 1)) != wanted[k].second) {
                    fail("a key of the profile does not hold the new value");
                }
            }
        }
    }
    if (!header_offset) {
        fail("the profile's section is missing from the output");
    }
    for (const int count : seen) {
        if (count != 1) {
            fail("a key of the profile is missing or repeated");
        }
    }
    return *header_offset;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const std::string_view profile = kProfiles[data[0] % kProfiles.size()];
    const std::string_view existing(reinterpret_cast<const char*>(data + 1), size - 1);

    const rad::Secret edited = rad::daemon::edit_credentials_file(existing, profile, credentials());
    const std::string_view out = edited.reveal();
    const std::size_t header = check_section(out, profile);
    // Nothing before the profile's section is touched.
    if (header > existing.size() || out.substr(0, header) != existing.substr(0, header)) {
        // An appended section may follow a newline the editor added to an unterminated last line.
        if (!(header >= existing.size() && out.substr(0, existing.size()) == existing)) {
            fail("text before the profile's section changed");
        }
    }
    const rad::Secret again = rad::daemon::edit_credentials_file(out, profile, credentials());
    if (again.reveal() != out) {
        fail("editing twice with the same credentials is not idempotent");
    }
    return 0;
}
