#pragma once
// The decisions of the front executable (`rolesanywhere-agent`, front_main.cpp) as pure functions over
// bytes: which command lines it answers itself, where the agent's socket is, what it sends, and what a reply
// means. No libc, no allocation, no exceptions: front_main.cpp runs them without a C runtime, and the unit
// tests (tests/unit/daemon/front_logic_test.cpp) hold them to the full program's own parser and protocol
// (daemon/fast_path.cpp, daemon/control_protocol.cpp, config/config.cpp).
//
// The rule that keeps the front honest: whenever it is not certain to reach the same answer as the full
// program, it hands the command line to the full program unchanged. It accepts a subset of the command
// lines, of the configuration files and of the replies; everything else costs one execve.

#include <stddef.h>
#include <stdint.h>

namespace rad::front {

// Text is a byte range that does not own its bytes.
struct Text {
    const char* data = nullptr;
    size_t size = 0;
};

constexpr Text text(const char* s) {
    size_t n = 0;
    while (s[n] != '\0') {
        ++n;
    }
    return Text{s, n};
}

constexpr bool equal(Text a, Text b) {
    if (a.size != b.size) {
        return false;
    }
    for (size_t i = 0; i < a.size; ++i) {
        if (a.data[i] != b.data[i]) {
            return false;
        }
    }
    return true;
}

constexpr bool starts_with(Text a, Text prefix) {
    return a.size >= prefix.size && equal(Text{a.data, prefix.size}, prefix);
}

// The configuration's defaults (config::kDefaultConfigPath, config::AgentSettings::socket_path).
inline constexpr char kDefaultConfigPath[] = "/etc/rolesanywhere-agent/config.toml";
inline constexpr char kDefaultSocketPath[] = "/run/rolesanywhere-agent/agent.sock";
// A Unix socket path must fit sockaddr_un::sun_path with its terminating NUL.
inline constexpr size_t kMaxSocketPath = 107;
// The agent's reply line limit (daemon::kMaxControlLine) and the configuration size limit (load_config).
inline constexpr size_t kMaxReply = 64 * 1024;
inline constexpr size_t kMaxConfig = 1024 * 1024;

// ---- the command line ------------------------------------------------------------------------------------

struct Options {
    Text profile;
    Text config;  // empty: the default path
    Text socket;  // empty: from the configuration
    bool no_fallback = false;
    int min_lifetime = -1;       // -1: "default"
    int64_t timeout_ms = 20000;  // --timeout, in whole milliseconds
};

// Profile names the agent's protocol carries ([A-Za-z0-9._-], 1..64).
constexpr bool is_profile_name(Text name) {
    if (name.size == 0 || name.size > 64) {
        return false;
    }
    for (size_t i = 0; i < name.size; ++i) {
        const char c = name.data[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '.' || c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

// parse_min_lifetime: decimal digits only, 0..43200.
constexpr bool parse_min_lifetime(Text value, int& out) {
    if (value.size == 0 || value.size > 5) {
        return false;
    }
    int n = 0;
    for (size_t i = 0; i < value.size; ++i) {
        if (value.data[i] < '0' || value.data[i] > '9') {
            return false;
        }
        n = n * 10 + (value.data[i] - '0');
    }
    if (n > 43200) {
        return false;
    }
    out = n;
    return true;
}

// parse_timeout_ms: "SECONDS" or "SECONDS.FRACTION" with at most 9 digits before the point and 3 after, more
// than zero. The full program reads any strtod number and rounds to the nearest millisecond; for these
// spellings that is exactly the value computed here.
constexpr bool parse_timeout_ms(Text value, int64_t& out) {
    int64_t whole = 0;
    int64_t fraction = 0;
    size_t i = 0;
    size_t whole_digits = 0;
    while (i < value.size && value.data[i] >= '0' && value.data[i] <= '9') {
        whole = whole * 10 + (value.data[i] - '0');
        ++i;
        ++whole_digits;
    }
    if (whole_digits == 0 || whole_digits > 9) {
        return false;
    }
    if (i < value.size) {
        if (value.data[i] != '.') {
            return false;
        }
        ++i;
        size_t digits = 0;
        while (i < value.size && digits < 3 && value.data[i] >= '0' && value.data[i] <= '9') {
            fraction = fraction * 10 + (value.data[i] - '0');
            ++i;
            ++digits;
        }
        if (digits == 0 || i != value.size) {
            return false;
        }
        for (; digits < 3; ++digits) {
            fraction *= 10;
        }
    }
    const int64_t ms = whole * 1000 + fraction;
    if (ms <= 0) {
        return false;
    }
    out = ms;
    return true;
}

// parse_arguments recognises `credential-process --profile NAME` with the fast path's flags (--config,
// --socket, --no-fallback, --min-lifetime, --timeout; `--flag value` or `--flag=value`, each at most once),
// as daemon::parse_fast_path_arguments does, and only spellings whose meaning is beyond doubt. false: the
// full program takes the command line.
constexpr bool parse_arguments(int argc, const char* const* argv, Options& out) {
    if (argc < 2 || !equal(text(argv[1]), text("credential-process"))) {
        return false;
    }
    Options options;
    bool seen_profile = false, seen_config = false, seen_socket = false, seen_min = false,
         seen_timeout = false;
    for (int i = 2; i < argc; ++i) {
        const Text arg = text(argv[i]);
        if (equal(arg, text("--no-fallback"))) {
            if (options.no_fallback) {
                return false;
            }
            options.no_fallback = true;
            continue;
        }
        Text name = arg;
        Text value;
        bool has_value = false;
        size_t eq = 0;
        while (eq < arg.size && arg.data[eq] != '=') {
            ++eq;
        }
        if (starts_with(arg, text("--")) && eq < arg.size) {
            name = Text{arg.data, eq};
            value = Text{arg.data + eq + 1, arg.size - eq - 1};
            has_value = true;
        } else if (i + 1 < argc) {
            value = text(argv[++i]);
            has_value = true;
        }
        if (!has_value || value.size == 0 || value.data[0] == '-') {
            return false;
        }
        auto take = [](bool& seen) {
            if (seen) {
                return false;
            }
            seen = true;
            return true;
        };
        if (equal(name, text("--profile")) && take(seen_profile)) {
            if (!is_profile_name(value)) {
                return false;
            }
            options.profile = value;
        } else if (equal(name, text("--config")) && take(seen_config)) {
            options.config = value;
        } else if (equal(name, text("--socket")) && take(seen_socket)) {
            options.socket = value;
        } else if (equal(name, text("--min-lifetime")) && take(seen_min)) {
            if (!parse_min_lifetime(value, options.min_lifetime)) {
                return false;
            }
        } else if (equal(name, text("--timeout")) && take(seen_timeout)) {
            if (!parse_timeout_ms(value, options.timeout_ms)) {
                return false;
            }
        } else {
            return false;
        }
    }
    if (!seen_profile) {
        return false;
    }
    out = options;
    return true;
}

// ---- the configuration file ------------------------------------------------------------------------------

enum class Scan {
    found,    // [agent] socket_path is set to an absolute path: `path`
    not_set,  // the file does not set it: the default socket
    unsure,   // anything the quick scan does not read with certainty: the full program loads the file
};

namespace detail {

constexpr bool is_bare_key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

constexpr bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

// Lexer walks TOML text for the scan. Its helpers return false on anything it does not read with certainty.
struct Lexer {
    Text in;
    size_t i = 0;

    constexpr bool done() const { return i >= in.size; }
    constexpr char peek() const { return in.data[i]; }
    constexpr void skip_blanks() {
        while (!done() && is_blank(peek())) {
            ++i;
        }
    }
    // end_of_line consumes an optional comment and the line break (or the end of the text).
    constexpr bool end_of_line() {
        skip_blanks();
        if (!done() && peek() == '#') {
            while (!done() && peek() != '\n') {
                ++i;
            }
        }
        if (done()) {
            return true;
        }
        if (peek() == '\r') {
            ++i;
            if (done() || peek() != '\n') {
                return false;
            }
        }
        if (peek() != '\n') {
            return false;
        }
        ++i;
        return true;
    }
    // dotted_key reads `a.b . c` (bare keys only) into `key` without the blanks.
    constexpr bool dotted_key(char* key, size_t cap, size_t& length) {
        length = 0;
        for (;;) {
            skip_blanks();
            const size_t start = i;
            while (!done() && is_bare_key_char(peek())) {
                ++i;
            }
            if (i == start || length + (i - start) + 1 > cap) {
                return false;
            }
            for (size_t k = start; k < i; ++k) {
                key[length++] = in.data[k];
            }
            skip_blanks();
            if (done() || peek() != '.') {
                return true;
            }
            key[length++] = '.';
            ++i;
        }
    }
    // single_line_string reads "..." without escapes or '...', printable ASCII only.
    constexpr bool single_line_string(Text& value) {
        if (done() || (peek() != '"' && peek() != '\'')) {
            return false;
        }
        const char quote = peek();
        const size_t start = ++i;
        while (!done() && peek() != quote) {
            const auto c = static_cast<unsigned char>(peek());
            if (c < 0x20 || c >= 0x7f || c == '\\') {
                return false;
            }
            ++i;
        }
        if (done()) {
            return false;
        }
        value = Text{in.data + start, i - start};
        ++i;
        return true;
    }
    // skip_value passes over any value (strings, arrays and inline tables over several lines, comments)
    // and its line break.
    constexpr bool skip_value() {
        int depth = 0;
        while (!done()) {
            const char c = peek();
            if (c == '"' || c == '\'') {
                ++i;
                while (!done() && peek() != c && peek() != '\n') {
                    if (c == '"' && peek() == '\\') {
                        ++i;
                        if (done() || peek() == '\n') {
                            return false;
                        }
                    }
                    ++i;
                }
                if (done() || peek() != c) {
                    return false;
                }
                ++i;
            } else if (c == '#') {
                while (!done() && peek() != '\n') {
                    ++i;
                }
            } else if (c == '[' || c == '{') {
                ++depth;
                ++i;
            } else if (c == ']' || c == '}') {
                if (--depth < 0) {
                    return false;
                }
                ++i;
            } else if (c == '\n') {
                ++i;
                if (depth == 0) {
                    return true;
                }
            } else {
                ++i;
            }
        }
        return depth == 0;
    }
};

constexpr bool contains(Text haystack, Text needle) {
    for (size_t i = 0; i + needle.size <= haystack.size; ++i) {
        if (equal(Text{haystack.data + i, needle.size}, needle)) {
            return true;
        }
    }
    return false;
}

}  // namespace detail

// scan_socket_path reads the [agent] table's socket_path from TOML text the quick way. It understands table
// headers, bare and dotted keys, single-line strings, comments, and values (arrays, inline tables) over
// several lines; multi-line strings, quoted keys near [agent], a dotted `agent.` key, a repeated [agent] or
// socket_path, escapes in the path, non-ASCII outside comments and anything malformed are `unsure`. The
// agent double-checks the result: it answers only a client whose file identity is its own (the
// `config=` field of the request), so a misread can only cost time, never a wrong answer.
constexpr Scan scan_socket_path(Text toml, Text& path) {
    using detail::Lexer;
    if (detail::contains(toml, text("\"\"\"")) || detail::contains(toml, text("'''"))) {
        return Scan::unsure;
    }
    enum class Table { top, agent, other } table = Table::top;
    bool agent_seen = false;
    bool found = false;
    Lexer lx{toml};
    char key[128] = {};
    size_t key_length = 0;
    while (!lx.done()) {
        lx.skip_blanks();
        if (lx.done()) {
            break;
        }
        const char c = lx.peek();
        if (c == '#' || c == '\n' || c == '\r') {
            if (!lx.end_of_line()) {
                return Scan::unsure;
            }
            continue;
        }
        if (static_cast<unsigned char>(c) >= 0x80) {
            return Scan::unsure;
        }
        if (c == '[') {
            ++lx.i;
            const bool array = !lx.done() && lx.peek() == '[';
            if (array) {
                ++lx.i;
            }
            if (!lx.dotted_key(key, sizeof key, key_length)) {
                return Scan::unsure;
            }
            for (int closing = array ? 2 : 1; closing > 0; --closing) {
                if (lx.done() || lx.peek() != ']') {
                    return Scan::unsure;
                }
                ++lx.i;
            }
            if (!lx.end_of_line()) {
                return Scan::unsure;
            }
            const Text name{key, key_length};
            if (equal(name, text("agent"))) {
                if (array || agent_seen) {
                    return Scan::unsure;
                }
                agent_seen = true;
                table = Table::agent;
            } else {
                table = Table::other;
            }
            continue;
        }
        if (!lx.dotted_key(key, sizeof key, key_length)) {
            return Scan::unsure;  // a quoted key, or not a key at all
        }
        const Text name{key, key_length};
        if (table == Table::top && (equal(name, text("agent")) || starts_with(name, text("agent.")))) {
            return Scan::unsure;
        }
        if (lx.done() || lx.peek() != '=') {
            return Scan::unsure;
        }
        ++lx.i;
        lx.skip_blanks();
        if (table == Table::agent && starts_with(name, text("socket_path"))) {
            Text value;
            if (found || !equal(name, text("socket_path")) || !lx.single_line_string(value) ||
                !lx.end_of_line()) {
                return Scan::unsure;
            }
            found = true;
            path = value;
            continue;
        }
        const size_t value_start = lx.i;
        if (!lx.skip_value()) {
            return Scan::unsure;
        }
        for (size_t k = value_start; k < lx.i; ++k) {
            if (static_cast<unsigned char>(toml.data[k]) >= 0x80) {
                return Scan::unsure;  // the full program says where (unless it is in a comment)
            }
        }
    }
    if (!found) {
        return Scan::not_set;
    }
    if (path.size == 0 || path.data[0] != '/' || path.size > kMaxSocketPath) {
        return Scan::unsure;
    }
    return Scan::found;
}

// ---- the exchange with the agent --------------------------------------------------------------------------

// Writer appends to a fixed buffer. What does not fit is cut off, and `ok` turns false (and stays).
struct Writer {
    char* out;
    size_t cap;
    size_t size = 0;
    bool ok = true;

    constexpr void put(Text t) {
        for (size_t i = 0; i < t.size; ++i) {
            if (size == cap) {
                ok = false;
                return;
            }
            out[size++] = t.data[i];
        }
    }
    constexpr void put(const char* s) { put(text(s)); }
    constexpr void put_unsigned(uint64_t v) {
        char digits[20] = {};
        size_t n = 0;
        do {
            digits[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        char reversed[20] = {};
        for (size_t i = 0; i < n; ++i) {
            reversed[i] = digits[n - 1 - i];
        }
        put(Text{reversed, n});
    }
};

// FileIdentity holds the statx fields of config::file_identity().
struct FileIdentity {
    uint32_t dev_major = 0, dev_minor = 0;
    uint64_t inode = 0, size = 0;
    int64_t mtime_sec = 0;
    uint32_t mtime_nsec = 0;
    int64_t ctime_sec = 0;
    uint32_t ctime_nsec = 0;
};

// identity_of takes those fields from a struct statx (the kernel's, or glibc's in the tests).
template <class Statx>
constexpr FileIdentity identity_of(const Statx& s) {
    FileIdentity id;
    id.dev_major = s.stx_dev_major;
    id.dev_minor = s.stx_dev_minor;
    id.inode = s.stx_ino;
    id.size = s.stx_size;
    id.mtime_sec = s.stx_mtime.tv_sec;
    id.mtime_nsec = s.stx_mtime.tv_nsec;
    id.ctime_sec = s.stx_ctime.tv_sec;
    id.ctime_nsec = s.stx_ctime.tv_nsec;
    return id;
}

constexpr bool same_identity(const FileIdentity& a, const FileIdentity& b) {
    return a.dev_major == b.dev_major && a.dev_minor == b.dev_minor && a.inode == b.inode &&
           a.size == b.size && a.mtime_sec == b.mtime_sec && a.mtime_nsec == b.mtime_nsec &&
           a.ctime_sec == b.ctime_sec && a.ctime_nsec == b.ctime_nsec;
}

// format_identity writes "MAJOR:MINOR:INODE:SIZE:MTIME_S.NS:CTIME_S.NS"; false for times before 1970 (which
// the protocol does not carry) or a buffer too small.
constexpr bool format_identity(const FileIdentity& id, Writer& w) {
    if (id.mtime_sec < 0 || id.ctime_sec < 0) {
        return false;
    }
    w.put_unsigned(id.dev_major);
    w.put(":");
    w.put_unsigned(id.dev_minor);
    w.put(":");
    w.put_unsigned(id.inode);
    w.put(":");
    w.put_unsigned(id.size);
    w.put(":");
    w.put_unsigned(static_cast<uint64_t>(id.mtime_sec));
    w.put(".");
    w.put_unsigned(id.mtime_nsec);
    w.put(":");
    w.put_unsigned(static_cast<uint64_t>(id.ctime_sec));
    w.put(".");
    w.put_unsigned(id.ctime_nsec);
    return w.ok;
}

// format_request writes the credentials request line (control_protocol.hpp); identity may be empty.
constexpr bool format_request(const Options& options, Text identity, Writer& w) {
    w.put("credentials ");
    w.put(options.profile);
    w.put(" ");
    if (options.min_lifetime < 0) {
        w.put("default");
    } else {
        w.put_unsigned(static_cast<uint64_t>(options.min_lifetime));
    }
    if (identity.size > 0) {
        w.put(" config=");
        w.put(identity);
    }
    w.put("\n");
    return w.ok;
}

enum class ReplyKind {
    credentials,  // print `payload` (the credential_process JSON) and exit 0
    final_error,  // print "rolesanywhere-agent: agent: <payload>" and exit `exit_code`
    ask_core,     // anything else: the full program runs the command line
};

struct Reply {
    ReplyKind kind = ReplyKind::ask_core;
    Text payload;
    int exit_code = 0;
};

namespace detail {

struct ErrcExit {
    char name[24];
    int exit_code;
};

// Errc names and their exit codes (common/error.cpp: errc_name, exit_code); an unknown name is `internal`.
inline constexpr ErrcExit kErrcExits[] = {
    {"usage", 64},
    {"input_missing", 66},
    {"input_invalid", 65},
    {"wrong_passphrase", 65},
    {"unsafe_permissions", 77},
    {"key_cert_mismatch", 65},
    {"certificate_invalid", 65},
    {"certificate_expired", 65},
    {"unsupported_key", 65},
    {"config_invalid", 78},
    {"crypto_failure", 70},
    {"upstream_unreachable", 75},
    {"upstream_timeout", 75},
    {"upstream_throttled", 75},
    {"upstream_server_error", 75},
    {"upstream_tls", 69},
    {"upstream_malformed", 69},
    {"upstream_rejected", 77},
    {"agent_unavailable", 69},
    {"device_unavailable", 69},
    {"device_auth_failed", 77},
    {"peer_refused", 77},
    {"internal", 70},
};

}  // namespace detail

constexpr int exit_code_of(Text errc_name) {
    for (const auto& entry : detail::kErrcExits) {
        if (equal(errc_name, text(entry.name))) {
            return entry.exit_code;
        }
    }
    return 70;
}

// classify_reply reads one complete reply line (with its '\n'). The agent's own errors are final, as in
// daemon::settled(): only "no agent" (agent_unavailable) without --no-fallback goes on to signing here,
// which is the full program's job.
constexpr Reply classify_reply(Text line, bool no_fallback) {
    Reply reply;
    if (line.size == 0 || line.data[line.size - 1] != '\n') {
        return reply;
    }
    const Text body{line.data, line.size - 1};
    if (starts_with(body, text("ok "))) {
        reply.kind = ReplyKind::credentials;
        reply.payload = Text{body.data + 3, body.size - 3};
        return reply;
    }
    if (starts_with(body, text("error "))) {
        const Text rest{body.data + 6, body.size - 6};
        size_t space = 0;
        while (space < rest.size && rest.data[space] != ' ') {
            ++space;
        }
        const Text name{rest.data, space};
        if (equal(name, text("agent_unavailable")) && !no_fallback) {
            return reply;
        }
        reply.kind = ReplyKind::final_error;
        reply.exit_code = exit_code_of(name);
        reply.payload = space < rest.size ? Text{rest.data + space + 1, rest.size - space - 1} : Text{};
        return reply;
    }
    return reply;  // "other-config", or a reply this front does not know
}

}  // namespace rad::front
