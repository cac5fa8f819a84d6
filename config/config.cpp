#include "config/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <set>

// toml++'s assertions are off in every build type, as in Debian's release-built library: toml++ 3.3 asserts,
// in builds without NDEBUG, parser states it then reports as ordinary parse errors (a NUL byte in a table
// header aborted the Debug fuzz build of fuzz_config; Config.BinaryGarbageIsAParseErrorInEveryBuild).
#define TOML_ASSERT(expr) static_assert(true)
#include <toml++/toml.h>

#include "config/setting_access.hpp"
#include "config/settings.hpp"

namespace rad::config {

std::string ListenAddress::to_string() const {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

namespace {

// ip_bytes is the 16-byte IPv6 form of an IP literal (IPv4 as IPv4-mapped), or nullopt.
std::optional<std::array<unsigned char, 16>> ip_bytes(const std::string& host) {
    std::array<unsigned char, 16> bytes{};
    in_addr v4{};
    if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) {
        bytes[10] = bytes[11] = 0xff;
        std::memcpy(bytes.data() + 12, &v4, 4);
        return bytes;
    }
    if (::inet_pton(AF_INET6, host.c_str(), bytes.data()) == 1) {
        return bytes;
    }
    return std::nullopt;
}

}  // namespace

bool same_listen_address(const ListenAddress& configured, const ListenAddress& bound) {
    if (configured.port != 0 && configured.port != bound.port) {
        return false;
    }
    const auto bound_ip = ip_bytes(bound.host);
    if (!bound_ip) {
        return false;
    }
    if (configured.host == "localhost") {
        return *bound_ip == *ip_bytes("127.0.0.1") || *bound_ip == *ip_bytes("::1");
    }
    const auto configured_ip = ip_bytes(configured.host);
    return configured_ip && *configured_ip == *bound_ip;
}

Result<ListenAddress> parse_listen_address(std::string_view text) {
    ListenAddress address;
    std::string_view port;
    if (text.starts_with('[')) {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return make_error(Errc::config_invalid, "\"" + std::string(text) + "\" is not [IPv6]:PORT");
        }
        address.host = std::string(text.substr(1, close - 1));
        port = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos || text.find(':') != colon) {
            return make_error(
                Errc::config_invalid,
                "\"" + std::string(text) + "\" is not HOST:PORT (IPv6 addresses go in brackets)");
        }
        address.host = std::string(text.substr(0, colon));
        port = text.substr(colon + 1);
    }
    if (address.host.empty() || port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoul(std::string(port)) > 65535) {
        return make_error(Errc::config_invalid,
                          "\"" + std::string(text) + "\" is not HOST:PORT with a port 0-65535");
    }
    address.port = static_cast<std::uint16_t>(std::stoul(std::string(port)));
    return address;
}

std::string Source::where(std::string_view key) const {
    const auto it = lines.find(key);
    return file + ":" + std::to_string(it != lines.end() ? it->second : table_line);
}

const ProfileConfig* AgentConfig::find_profile(std::string_view name) const {
    for (const auto& profile : profiles) {
        if (profile.name == name) {
            return &profile;
        }
    }
    return nullptr;
}

namespace {

int line_of(const toml::node& node) {
    return static_cast<int>(node.source().begin.line);
}

// FirstError keeps the error of the earliest line of the file: the tables are read setting by setting, in
// the order of the description, and the one to fix first is the one the file shows first.
struct FirstError {
    std::optional<Error> error;
    int line = 0;

    void offer(int at, Error candidate) {
        if (!error || at < line) {
            error = std::move(candidate);
            line = at;
        }
    }
};

// TableReader reads the keys of one table, remembering where each was set and which were never asked for
// (unknown keys are errors: a typo must not silently turn a setting off). A read that fails records its
// error and returns nothing, so that the caller can read straight through and check once at the end.
class TableReader {
public:
    TableReader(const toml::table& table, Source& source, std::string context, FirstError& errors)
        : table_(table), source_(source), context_(std::move(context)), errors_(errors) {
        for (auto&& [key, node] : table_) {
            source_.lines[std::string(key.str())] = line_of(node);
        }
    }

    void fail(std::string_view key, const std::string& what) {
        const auto it = source_.lines.find(key);
        errors_.offer(it != source_.lines.end() ? it->second : source_.table_line,
                      make_error(Errc::config_invalid, source_.where(key) + ": " + context_ + "." +
                                                           std::string(key) + ": " + what));
    }

    const toml::node* node(std::string_view key) {
        known_.insert(std::string(key));
        return table_.get(key);
    }

    std::optional<std::string> string(std::string_view key) {
        const auto* n = node(key);
        if (n == nullptr) {
            return std::nullopt;
        }
        const auto* value = n->as_string();
        if (value == nullptr) {
            fail(key, "must be a string");
            return std::nullopt;
        }
        return value->get();
    }

    std::optional<bool> boolean(std::string_view key) {
        const auto* n = node(key);
        if (n == nullptr) {
            return std::nullopt;
        }
        const auto* value = n->as_boolean();
        if (value == nullptr) {
            fail(key, "must be true or false");
            return std::nullopt;
        }
        return value->get();
    }

    std::optional<int> integer(std::string_view key, long long min, long long max) {
        const auto* n = node(key);
        if (n == nullptr) {
            return std::nullopt;
        }
        const auto* value = n->as_integer();
        if (value == nullptr) {
            fail(key, "must be an integer");
            return std::nullopt;
        }
        const long long v = value->get();
        if (v < min || v > max) {
            fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) + " (got " +
                          std::to_string(v) + ")");
            return std::nullopt;
        }
        return static_cast<int>(v);
    }

    // strings accepts a string or an array of strings.
    std::optional<std::vector<std::string>> strings(std::string_view key) {
        const auto* n = node(key);
        if (n == nullptr) {
            return std::nullopt;
        }
        std::vector<std::string> out;
        if (const auto* single = n->as_string()) {
            out.push_back(single->get());
            return out;
        }
        if (const auto* array = n->as_array()) {
            for (const auto& element : *array) {
                const auto* text = element.as_string();
                if (text == nullptr) {
                    fail(key, "must be a string or an array of strings");
                    return std::nullopt;
                }
                out.push_back(text->get());
            }
            return out;
        }
        fail(key, "must be a string or an array of strings");
        return std::nullopt;
    }

    std::optional<std::vector<std::uint32_t>> ids(std::string_view key) {
        const auto* n = node(key);
        if (n == nullptr) {
            return std::nullopt;
        }
        const auto* array = n->as_array();
        if (array == nullptr) {
            fail(key, "must be an array of numeric ids");
            return std::nullopt;
        }
        std::vector<std::uint32_t> out;
        for (const auto& element : *array) {
            const auto* id = element.as_integer();
            if (id == nullptr || id->get() < 0 || id->get() > 0xFFFFFFFELL) {
                fail(key, "must be an array of numeric ids (0-4294967294)");
                return std::nullopt;
            }
            out.push_back(static_cast<std::uint32_t>(id->get()));
        }
        return out;
    }

    // fractions reads [MIN, MAX] with 0.1 <= MIN <= MAX <= 0.9.
    std::optional<std::pair<double, double>> fractions(std::string_view key) {
        const auto* n = node(key);
        if (n == nullptr) {
            return std::nullopt;
        }
        const auto* array = n->as_array();
        auto number = [&](std::size_t i) -> std::optional<double> {
            const toml::node* element = array != nullptr ? array->get(i) : nullptr;
            if (const auto* value = element != nullptr ? element->as_floating_point() : nullptr) {
                return value->get();
            }
            return std::nullopt;
        };
        std::optional<double> lo, hi;
        if (array != nullptr && array->size() == 2) {
            lo = number(0);
            hi = number(1);
        }
        if (!lo || !hi || *lo < 0.1 || *hi > 0.9 || *lo > *hi) {
            fail(key, "must be [MIN, MAX] fractions of the lifetime with 0.1 <= MIN <= MAX <= 0.9");
            return std::nullopt;
        }
        return std::pair{*lo, *hi};
    }

    void finish() {
        for (auto&& [key, node] : table_) {
            if (!known_.contains(std::string(key.str()))) {
                fail(key.str(), "unknown key");
            }
        }
    }

private:
    const toml::table& table_;
    Source& source_;
    std::string context_;
    FirstError& errors_;
    std::set<std::string, std::less<>> known_;
};

// FileResolver turns "credential:NAME" into $CREDENTIALS_DIRECTORY/NAME (noting its source in `copies` when
// the pre-start check recorded one) and checks that files exist, for the tables whose files are needed
// (ConfigEnvironment::file_checks); elsewhere paths are kept as written.
struct FileResolver {
    const ConfigEnvironment& environment;
    TableReader& reader;
    bool resolve = true;
    std::vector<CredentialCopy>* copies = nullptr;

    enum class Accepts { path, path_or_pkcs11, path_pkcs11_or_handle };

    std::optional<std::filesystem::path> path(std::string_view key, bool must_exist, Accepts accepts) {
        auto value = reader.string(key);
        if (!value) {
            return std::nullopt;
        }
        if (value->empty()) {
            reader.fail(key, "must not be empty (leave the key out instead)");
            return std::nullopt;
        }
        // A "pkcs11:" URI (certificate, private_key) or a TPM key handle (private_key) is no path.
        if ((accepts != Accepts::path && value->starts_with("pkcs11:")) ||
            (accepts == Accepts::path_pkcs11_or_handle && value->starts_with("handle:"))) {
            return std::filesystem::path(*value);
        }
        std::filesystem::path path;
        if (value->starts_with("credential:")) {
            const std::string name = value->substr(std::strlen("credential:"));
            if (name.empty() || name.find('/') != std::string::npos) {
                reader.fail(key, "\"" + *value + "\" is not credential:NAME");
                return std::nullopt;
            }
            if (!resolve) {
                return std::filesystem::path(*value);
            }
            if (!environment.credentials_directory) {
                reader.fail(key, "\"" + *value + "\" needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)");
                return std::nullopt;
            }
            path = *environment.credentials_directory / name;
            for (const auto& source : environment.credential_sources) {
                if (source.name == name && copies != nullptr) {
                    copies->push_back(CredentialCopy{std::string(key), path, source});
                }
            }
        } else {
            path = *value;
        }
        if (must_exist && resolve && environment.check_files) {
            std::error_code ec;
            const auto status = std::filesystem::status(path, ec);
            if (ec || !std::filesystem::exists(status)) {
                reader.fail(key, path.string() + ": no such file");
                return std::nullopt;
            }
            if (!std::filesystem::is_regular_file(status)) {
                reader.fail(key, path.string() + ": not a regular file");
                return std::nullopt;
            }
            // Whoever can rewrite the identity files can make the agent sign with their key.
            using std::filesystem::perms;
            if ((status.permissions() & (perms::group_write | perms::others_write)) != perms::none) {
                reader.fail(key, path.string() + ": writable by group or others; chmod go-w it");
                return std::nullopt;
            }
        }
        return path;
    }
};

std::optional<ListenAddress> listen_address(TableReader& reader, std::string_view key) {
    auto text = reader.string(key);
    if (!text) {
        return std::nullopt;
    }
    auto address = parse_listen_address(*text);
    if (!address) {
        reader.fail(key, address.error().message);
        return std::nullopt;
    }
    return *address;
}

std::optional<std::vector<ListenAddress>> listen_list(TableReader& reader, std::string_view key) {
    auto values = reader.strings(key);
    if (!values) {
        return std::nullopt;
    }
    std::vector<ListenAddress> out;
    for (const auto& value : *values) {
        auto address = parse_listen_address(value);
        if (!address) {
            reader.fail(key, address.error().message);
            return std::nullopt;
        }
        out.push_back(*address);
    }
    return out;
}

// Named is one accepted word of a setting that is one of a few.
template <class Value>
struct Named {
    std::string_view name;
    Value value;
};
constexpr Named<LogLevel> kLogLevels[] = {{"debug", LogLevel::debug},
                                          {"info", LogLevel::info},
                                          {"warning", LogLevel::warning},
                                          {"error", LogLevel::error}};
constexpr Named<LogFormat> kLogFormats[] = {{"text", LogFormat::text}, {"json", LogFormat::json}};

template <class Value, std::size_t N>
std::optional<Value> one_of(TableReader& reader, std::string_view key, const Named<Value> (&names)[N]) {
    auto text = reader.string(key);
    if (!text) {
        return std::nullopt;
    }
    std::string list;
    for (std::size_t i = 0; i < N; ++i) {
        if (names[i].name == *text) {
            return names[i].value;
        }
        list += std::string(i == 0 ? "" : i + 1 == N ? " or " : ", ") + std::string(names[i].name);
    }
    reader.fail(key, "must be " + list);
    return std::nullopt;
}

std::optional<unsigned> octal_mode(TableReader& reader, std::string_view key) {
    const auto* node = reader.node(key);
    if (node == nullptr) {
        return std::nullopt;
    }
    // Written as a string ("0660") because TOML has no octal-looking integers that people read right.
    const auto* text = node->as_string();
    if (text == nullptr || text->get().empty() || text->get().size() > 4 ||
        text->get().find_first_not_of("01234567") != std::string::npos) {
        reader.fail(key, "must be an octal mode string such as \"0660\"");
        return std::nullopt;
    }
    const auto mode = static_cast<unsigned>(std::stoul(text->get(), nullptr, 8));
    if ((mode & 0007) != 0) {
        reader.fail(key, "must not give others any access");
        return std::nullopt;
    }
    return mode;
}

// read_setting reads one setting of a table into `target`, as its kind says; an absent key leaves the
// default. `table_name` is the profile's name in examples ("/credentials/NAME").
template <class Setting, class Target>
void read_setting(const Setting& setting,
                  TableReader& r,
                  FileResolver& files,
                  Target& target,
                  std::string_view table_name) {
    const std::string_view key = setting.key;
    const auto store = [&](auto value) {
        if (value) {
            access::store(setting.field, target, std::move(*value));
        }
    };
    using Accepts = FileResolver::Accepts;
    switch (setting.kind) {
        case ValueKind::text:
            return store(r.string(key));
        case ValueKind::flag:
            return store(r.boolean(key));
        case ValueKind::integer:
            return store(r.integer(key, setting.min, setting.max));
        case ValueKind::file:
            return store(files.path(key, true, Accepts::path));
        case ValueKind::new_file:
            return store(files.path(key, false, Accepts::path));
        case ValueKind::certificate_source:
            return store(files.path(key, true, Accepts::path_or_pkcs11));
        case ValueKind::key_source:
            return store(files.path(key, true, Accepts::path_pkcs11_or_handle));
        case ValueKind::listen: {
            auto address = listen_address(r, key);
            return store(address ? std::optional<std::optional<ListenAddress>>(std::move(address))
                                 : std::nullopt);
        }
        case ValueKind::listen_list:
            return store(listen_list(r, key));
        case ValueKind::ids:
            return store(r.ids(key));
        case ValueKind::log_level:
            return store(one_of(r, key, kLogLevels));
        case ValueKind::log_format:
            return store(one_of(r, key, kLogFormats));
        case ValueKind::octal_mode:
            return store(octal_mode(r, key));
        case ValueKind::socket_path: {
            auto path = r.string(key);
            if (path && !path->empty() && !path->starts_with('/')) {
                r.fail(key, "must be an absolute path (or \"\" for no socket)");
                return;
            }
            return store(path ? std::optional(std::filesystem::path(*path)) : std::nullopt);
        }
        case ValueKind::url_path: {
            auto path = r.string(key);
            if (path && (!path->starts_with('/') || path->find_first_of("?# ") != std::string::npos)) {
                r.fail(key, "must be an absolute URL path such as \"/credentials/" + std::string(table_name) +
                                "\"");
                return;
            }
            return store(path);
        }
        case ValueKind::fraction_window:
            return store(r.fractions(key));
    }
}

void read_agent(const toml::table& table,
                AgentSettings& agent,
                const ConfigEnvironment& environment,
                FirstError& errors) {
    TableReader r(table, agent.source, "agent", errors);
    FileResolver files{environment, r};
    for (const auto& setting : agent_settings()) {
        read_setting(setting, r, files, agent, "agent");
    }
    r.finish();
}

void read_profile(const toml::table& table,
                  ProfileConfig& profile,
                  const ConfigEnvironment& environment,
                  FirstError& errors) {
    TableReader r(table, profile.source, "profiles." + profile.name, errors);
    const bool files_needed =
        environment.file_checks == FileChecks::every_profile ||
        (environment.file_checks == FileChecks::one_profile && environment.checked_profile == profile.name);
    FileResolver files{environment, r, files_needed, &profile.credential_copies};
    for (const auto& setting : profile_settings()) {
        read_setting(setting, r, files, profile, profile.name);
    }
    r.finish();
    if (errors.error) {
        return;  // a missing key may be a misspelt one, which the error names
    }
    for (const auto& setting : profile_settings()) {
        if ((setting.roles & role::required) == 0) {
            continue;
        }
        // Present but empty is as good as absent (found by fuzzing: trust_anchor_arn = "" was accepted; an
        // empty path is refused as it is read).
        if (!profile.source.lines.contains(setting.key)) {
            r.fail(setting.key, "is required");
            return;
        }
        if (setting.kind == ValueKind::text && value_text(setting, profile).empty()) {
            r.fail(setting.key, "must not be empty");
            return;
        }
    }
    if (!profile.ecs_path.empty() && profile.ecs_token_file.empty()) {
        r.fail("ecs_token_file", "is required when ecs_path is set");
    }
}

// one_line replaces control characters (CR, LF, ...) in an error message with '?': messages quote TOML
// keys, values and toml++'s description of the bad byte, all of which can hold them (found by fuzzing),
// and an error is one line of a log or a terminal.
std::string one_line(std::string message) {
    for (char& c : message) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            c = '?';
        }
    }
    return message;
}

Result<AgentConfig> parse_config_text(std::string_view text,
                                      const std::filesystem::path& origin,
                                      const ConfigEnvironment& environment);

// first_non_ascii_outside_comments is the line of the first byte >= 0x80 that is not in a comment, or 0.
// toml++ 3.3 classifies non-ASCII characters of keys, table headers and multi-line strings with a table
// that has gaps (U+00A1..U+0499 among them) where it reaches __builtin_unreachable: undefined behaviour
// (found by fuzz_config under UBSan). Every key and value the agent reads is ASCII (ARNs, regions,
// addresses, names, and paths, which must be ASCII too), so anything else is refused before toml++ sees it;
// comments may hold any text. A small TOML lexer: '#' inside a string does not start a comment.
std::size_t first_non_ascii_outside_comments(std::string_view text) {
    enum class In { code, comment, basic, literal, multi_basic, multi_literal } in = In::code;
    std::size_t line = 1;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        const std::string_view rest = text.substr(i);
        if (c == '\n') {
            ++line;
            if (in == In::comment || in == In::basic || in == In::literal) {
                in = In::code;  // a single-line string cannot continue: toml++ reports it
            }
            continue;
        }
        if (static_cast<unsigned char>(c) >= 0x80 && in != In::comment) {
            return line;
        }
        switch (in) {
            case In::code:
                if (c == '#') {
                    in = In::comment;
                } else if (rest.starts_with("\"\"\"")) {
                    in = In::multi_basic;
                    i += 2;
                } else if (rest.starts_with("'''")) {
                    in = In::multi_literal;
                    i += 2;
                } else if (c == '"') {
                    in = In::basic;
                } else if (c == '\'') {
                    in = In::literal;
                }
                break;
            case In::basic:
            case In::multi_basic:
                if (c == '\\' && i + 1 < text.size() && text[i + 1] != '\n') {
                    ++i;  // an escaped character (a backslash before a newline is a line continuation)
                } else if (in == In::basic && c == '"') {
                    in = In::code;
                } else if (in == In::multi_basic && rest.starts_with("\"\"\"")) {
                    in = In::code;
                    i += 2;
                }
                break;
            case In::literal:
                if (c == '\'') {
                    in = In::code;
                }
                break;
            case In::multi_literal:
                if (rest.starts_with("'''")) {
                    in = In::code;
                    i += 2;
                }
                break;
            case In::comment:
                break;
        }
    }
    return 0;
}

}  // namespace

Result<AgentConfig> parse_config(std::string_view text,
                                 const std::filesystem::path& origin,
                                 const ConfigEnvironment& environment) {
    auto parsed = parse_config_text(text, origin, environment);
    if (!parsed) {
        Error error = parsed.error();
        error.message = one_line(std::move(error.message));
        return error;
    }
    return parsed;
}

namespace {

Result<AgentConfig> parse_config_text(std::string_view text,
                                      const std::filesystem::path& origin,
                                      const ConfigEnvironment& environment) {
    AgentConfig config;
    config.path = origin;
    if (const std::size_t line = first_non_ascii_outside_comments(text); line != 0) {
        return make_error(
            Errc::config_invalid,
            origin.string() + ":" + std::to_string(line) +
                ": non-ASCII character outside a comment (keys, values and paths must be ASCII)");
    }
    toml::table root;
    try {
        root = toml::parse(text, origin.string());
    } catch (const toml::parse_error& e) {
        return make_error(Errc::config_invalid, origin.string() + ":" +
                                                    std::to_string(e.source().begin.line) + ": " +
                                                    std::string(e.description()));
    }
    FirstError errors;
    config.agent.source.file = origin.string();
    Source root_source{origin.string(), {}, 1};
    TableReader top(root, root_source, "(top level)", errors);
    if (const auto* agent = top.node("agent")) {
        if (!agent->is_table()) {
            top.fail("agent", "must be a table ([agent])");
        } else {
            config.agent.source.table_line = line_of(*agent);
            read_agent(*agent->as_table(), config.agent, environment, errors);
        }
    }
    if (const auto* profiles = top.node("profiles")) {
        if (!profiles->is_table()) {
            top.fail("profiles", "must hold one table per profile ([profiles.NAME])");
        } else {
            // toml::table iterates in key order; profiles are kept (and checked) in file order.
            std::vector<std::pair<std::string, const toml::node*>> in_file_order;
            for (auto&& [name, node] : *profiles->as_table()) {
                in_file_order.emplace_back(std::string(name.str()), &node);
            }
            std::stable_sort(in_file_order.begin(), in_file_order.end(), [](const auto& a, const auto& b) {
                return line_of(*a.second) < line_of(*b.second);
            });
            for (const auto& [name, node_ptr] : in_file_order) {
                const toml::node& node = *node_ptr;
                ProfileConfig profile;
                profile.name = name;
                profile.source.file = origin.string();
                profile.source.table_line = line_of(node);
                const bool good_name = !profile.name.empty() && profile.name.size() <= 64 &&
                                       profile.name.find_first_not_of(
                                           "abcdefghijklmnopqrstuvwxyz"
                                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == std::string::npos;
                if (!good_name) {
                    errors.offer(profile.source.table_line,
                                 make_error(Errc::config_invalid,
                                            profile.source.where("") + ": profile name \"" + profile.name +
                                                "\" must be 1-64 of A-Z a-z 0-9 . _ -"));
                    break;
                }
                if (!node.is_table()) {
                    errors.offer(profile.source.table_line,
                                 make_error(Errc::config_invalid, profile.source.where("") + ": profiles." +
                                                                      profile.name + " must be a table"));
                    break;
                }
                read_profile(*node.as_table(), profile, environment, errors);
                config.profiles.push_back(std::move(profile));
            }
        }
    }
    top.finish();
    if (errors.error) {
        return *errors.error;
    }
    if (config.profiles.empty()) {
        return make_error(Errc::config_invalid,
                          origin.string() + ":1: no profile defined (add [profiles.NAME])");
    }
    // Cross-profile rules: one IMDS listener serves one role, ECS paths and credential-file targets are
    // unique.
    std::map<std::string, const ProfileConfig*> imds, ecs, cred_targets;
    for (const auto& profile : config.profiles) {
        for (const auto& address : profile.imds_listen) {
            auto [it, inserted] = imds.emplace(address.to_string(), &profile);
            if (!inserted) {
                return make_error(Errc::config_invalid, profile.source.where("imds_listen") + ": profiles." +
                                                            profile.name +
                                                            ".imds_listen: " + address.to_string() +
                                                            " is already the IMDS listener of profile " +
                                                            it->second->name + " (one role per listener)");
            }
        }
        if (!profile.ecs_path.empty()) {
            if (!config.agent.ecs_listen) {
                return make_error(Errc::config_invalid, profile.source.where("ecs_path") + ": profiles." +
                                                            profile.name +
                                                            ".ecs_path: needs agent.ecs_listen");
            }
            auto [it, inserted] = ecs.emplace(profile.ecs_path, &profile);
            if (!inserted) {
                return make_error(Errc::config_invalid,
                                  profile.source.where("ecs_path") + ": profiles." + profile.name +
                                      ".ecs_path: also used by profile " + it->second->name);
            }
        }
        if (!profile.credentials_file_profile.empty()) {
            const std::string target =
                profile.credentials_file.string() + "\n" + profile.credentials_file_profile;
            auto [it, inserted] = cred_targets.emplace(target, &profile);
            if (!inserted) {
                return make_error(Errc::config_invalid,
                                  profile.source.where("credentials_file_profile") + ": profiles." +
                                      profile.name + ".credentials_file_profile: also written by profile " +
                                      it->second->name);
            }
        }
    }
    return config;
}

}  // namespace

std::optional<std::filesystem::path> read_socket_path(std::string_view text) {
    // The same guard as parse_config_text: toml++ never sees the non-ASCII text it mishandles.
    if (first_non_ascii_outside_comments(text) != 0) {
        return std::nullopt;
    }
    toml::table root;
    try {
        root = toml::parse(text);
    } catch (const toml::parse_error&) {
        return std::nullopt;
    }
    const toml::node* agent = root.get("agent");
    if (agent != nullptr && !agent->is_table()) {
        return std::nullopt;
    }
    const toml::node* socket = agent != nullptr ? agent->as_table()->get("socket_path") : nullptr;
    if (socket == nullptr) {
        return AgentSettings{}.socket_path;
    }
    // What read_agent accepts.
    const auto* value = socket->as_string();
    if (value == nullptr || (!value->get().empty() && !value->get().starts_with('/'))) {
        return std::nullopt;
    }
    return std::filesystem::path(value->get());
}

Result<ConfigFile> read_config_file(const std::filesystem::path& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        return make_error(Errc::config_invalid,
                          path.string() + ": cannot read the configuration: " + std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        return make_error(Errc::config_invalid, path.string() + ": not a regular file");
    }
    if ((st.st_mode & 0022) != 0) {
        char octal[8];
        std::snprintf(octal, sizeof octal, "%03o", static_cast<unsigned>(st.st_mode & 0777));
        return make_error(Errc::config_invalid, path.string() + ": writable by group or others (mode " +
                                                    std::string(octal) + "); chmod go-w it");
    }
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return make_error(Errc::config_invalid,
                          path.string() + ": cannot read the configuration: " + std::strerror(errno));
    }
    ConfigFile file;
    constexpr std::size_t limit = 1024 * 1024;
    char chunk[16384];
    for (;;) {
        const ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            return make_error(Errc::config_invalid,
                              path.string() + ": cannot read the configuration: " + std::strerror(err));
        }
        if (n == 0) {
            break;
        }
        file.text.append(chunk, static_cast<std::size_t>(n));
        if (file.text.size() > limit) {
            ::close(fd);
            return make_error(Errc::config_invalid, path.string() + ": larger than 1 MiB");
        }
    }
    ::close(fd);
    return file;
}

Result<AgentConfig> load_config(const std::filesystem::path& path, const ConfigEnvironment& environment) {
    if (environment.credential_sources_error) {
        return *environment.credential_sources_error;
    }
    auto file = read_config_file(path);
    if (!file) {
        return file.error();
    }
    return parse_config(file->text, path, environment);
}

}  // namespace rad::config
