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

// TableReader reads the keys of one table, remembering where each was set and which were never asked for
// (unknown keys are errors: a typo must not silently turn a setting off). The first error wins; later
// reads return defaults so that the caller can read straight through and check once at the end.
class TableReader {
public:
    TableReader(const toml::table& table, Source& source, std::string context, std::optional<Error>& error)
        : table_(table), source_(source), context_(std::move(context)), error_(error) {
        for (auto&& [key, node] : table_) {
            source_.lines[std::string(key.str())] = line_of(node);
        }
    }

    void fail(std::string_view key, const std::string& what) {
        if (!error_) {
            error_ = make_error(Errc::config_invalid,
                                source_.where(key) + ": " + context_ + "." + std::string(key) + ": " + what);
        }
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

    void string_into(std::string_view key, std::string& out) {
        if (auto v = string(key)) {
            out = std::move(*v);
        }
    }

    void boolean_into(std::string_view key, bool& out) {
        const auto* n = node(key);
        if (n == nullptr) {
            return;
        }
        const auto* value = n->as_boolean();
        if (value == nullptr) {
            fail(key, "must be true or false");
            return;
        }
        out = value->get();
    }

    void integer_into(std::string_view key, int& out, long long min, long long max) {
        const auto* n = node(key);
        if (n == nullptr) {
            return;
        }
        const auto* value = n->as_integer();
        if (value == nullptr) {
            fail(key, "must be an integer");
            return;
        }
        const long long v = value->get();
        if (v < min || v > max) {
            fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) + " (got " +
                          std::to_string(v) + ")");
            return;
        }
        out = static_cast<int>(v);
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

    void ids_into(std::string_view key, std::vector<std::uint32_t>& out) {
        const auto* n = node(key);
        if (n == nullptr) {
            return;
        }
        const auto* array = n->as_array();
        if (array == nullptr) {
            fail(key, "must be an array of numeric ids");
            return;
        }
        for (const auto& element : *array) {
            const auto* id = element.as_integer();
            if (id == nullptr || id->get() < 0 || id->get() > 0xFFFFFFFELL) {
                fail(key, "must be an array of numeric ids (0-4294967294)");
                return;
            }
            out.push_back(static_cast<std::uint32_t>(id->get()));
        }
    }

    void finish() {
        for (auto&& [key, node] : table_) {
            if (!known_.contains(std::string(key.str()))) {
                fail(key.str(), "unknown key");
                return;
            }
        }
    }

private:
    const toml::table& table_;
    Source& source_;
    std::string context_;
    std::optional<Error>& error_;
    std::set<std::string, std::less<>> known_;
};

// FileResolver turns "credential:NAME" into $CREDENTIALS_DIRECTORY/NAME (noting its source in `copies` when
// the pre-start check recorded one) and checks that files exist.
struct FileResolver {
    const ConfigEnvironment& environment;
    TableReader& reader;
    std::vector<CredentialCopy>* copies = nullptr;

    void path_into(std::string_view key, std::filesystem::path& out, bool must_exist = true) {
        path_or_uri_into(key, out, must_exist, false);
    }

    // path_or_uri_into is path_into that also takes a "pkcs11:" URI (certificate, private_key), verbatim.
    void path_or_uri_into(std::string_view key,
                          std::filesystem::path& out,
                          bool must_exist,
                          bool allow_pkcs11) {
        auto value = reader.string(key);
        if (!value) {
            return;
        }
        if (value->empty()) {
            reader.fail(key, "must not be empty (leave the key out instead)");
            return;
        }
        // A TPM key handle is no path either (private_key only).
        if (allow_pkcs11 &&
            (value->starts_with("pkcs11:") || (key == "private_key" && value->starts_with("handle:")))) {
            out = *value;
            return;
        }
        std::filesystem::path path;
        if (value->starts_with("credential:")) {
            const std::string name = value->substr(std::strlen("credential:"));
            if (name.empty() || name.find('/') != std::string::npos) {
                reader.fail(key, "\"" + *value + "\" is not credential:NAME");
                return;
            }
            if (!environment.credentials_directory) {
                reader.fail(key, "\"" + *value + "\" needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)");
                return;
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
        if (must_exist && environment.check_files) {
            std::error_code ec;
            const auto status = std::filesystem::status(path, ec);
            if (ec || !std::filesystem::exists(status)) {
                reader.fail(key, path.string() + ": no such file");
                return;
            }
            if (!std::filesystem::is_regular_file(status)) {
                reader.fail(key, path.string() + ": not a regular file");
                return;
            }
            // Whoever can rewrite the identity files can make the agent sign with their key.
            using std::filesystem::perms;
            if ((status.permissions() & (perms::group_write | perms::others_write)) != perms::none) {
                reader.fail(key, path.string() + ": writable by group or others; chmod go-w it");
                return;
            }
        }
        out = std::move(path);
    }
};

void read_listen_list(TableReader& reader, std::string_view key, std::vector<ListenAddress>& out) {
    auto values = reader.strings(key);
    if (!values) {
        return;
    }
    for (const auto& value : *values) {
        auto address = parse_listen_address(value);
        if (!address) {
            reader.fail(key, address.error().message);
            return;
        }
        out.push_back(*address);
    }
}

void read_agent(const toml::table& table, AgentSettings& agent, std::optional<Error>& error) {
    TableReader r(table, agent.source, "agent", error);
    if (auto level = r.string("log_level")) {
        if (*level == "debug") {
            agent.log_level = LogLevel::debug;
        } else if (*level == "info") {
            agent.log_level = LogLevel::info;
        } else if (*level == "warning") {
            agent.log_level = LogLevel::warning;
        } else if (*level == "error") {
            agent.log_level = LogLevel::error;
        } else {
            r.fail("log_level", "must be debug, info, warning or error");
        }
    }
    if (auto format = r.string("log_format")) {
        if (*format == "text") {
            agent.log_format = LogFormat::text;
        } else if (*format == "json") {
            agent.log_format = LogFormat::json;
        } else {
            r.fail("log_format", "must be text or json");
        }
    }
    if (auto socket = r.string("socket_path")) {
        if (!socket->empty() && !socket->starts_with('/')) {
            r.fail("socket_path", "must be an absolute path (or \"\" for no socket)");
        }
        agent.socket_path = *socket;
    }
    if (const auto* mode = r.node("socket_mode")) {
        // Written as a string ("0660") because TOML has no octal-looking integers that people read right.
        const auto* text = mode->as_string();
        if (text == nullptr || text->get().empty() || text->get().size() > 4 ||
            text->get().find_first_not_of("01234567") != std::string::npos) {
            r.fail("socket_mode", "must be an octal mode string such as \"0660\"");
        } else {
            agent.socket_mode = static_cast<unsigned>(std::stoul(text->get(), nullptr, 8));
            if ((agent.socket_mode & 0007) != 0) {
                r.fail("socket_mode", "must not give others any access");
            }
        }
    }
    r.string_into("socket_group", agent.socket_group);
    r.ids_into("allowed_uids", agent.allowed_uids);
    r.ids_into("allowed_gids", agent.allowed_gids);
    if (auto ecs = r.string("ecs_listen")) {
        auto address = parse_listen_address(*ecs);
        if (!address) {
            r.fail("ecs_listen", address.error().message);
        } else {
            agent.ecs_listen = *address;
        }
    }
    if (auto health = r.string("health_listen")) {
        auto address = parse_listen_address(*health);
        if (!address) {
            r.fail("health_listen", address.error().message);
        } else {
            agent.health_listen = *address;
        }
    }
    r.boolean_into("allow_imdsv1", agent.allow_imdsv1);
    r.integer_into("hop_limit", agent.hop_limit, 1, 255);
    r.integer_into("max_connections", agent.max_connections, 1, 65536);
    if (const auto* window = r.node("refresh_window")) {
        const auto* array = window->as_array();
        auto number = [&](std::size_t i) -> std::optional<double> {
            const toml::node* n = array != nullptr ? array->get(i) : nullptr;
            if (const auto* value = n != nullptr ? n->as_floating_point() : nullptr) {
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
            r.fail("refresh_window",
                   "must be [MIN, MAX] fractions of the lifetime with 0.1 <= MIN <= MAX <= 0.9");
        } else {
            agent.refresh_window_min = *lo;
            agent.refresh_window_max = *hi;
        }
    }
    r.integer_into("retry_cap_seconds", agent.retry_cap_seconds, 1, 3600);
    r.integer_into("startup_jitter_seconds", agent.startup_jitter_seconds, 0, 3600);
    r.finish();
}

void read_profile(const toml::table& table,
                  ProfileConfig& profile,
                  const ConfigEnvironment& environment,
                  std::optional<Error>& error) {
    TableReader r(table, profile.source, "profiles." + profile.name, error);
    FileResolver files{environment, r, &profile.credential_copies};
    files.path_or_uri_into("certificate", profile.identity.certificate, true, /*allow_pkcs11=*/true);
    files.path_or_uri_into("private_key", profile.identity.private_key, true, /*allow_pkcs11=*/true);
    files.path_into("intermediates", profile.identity.intermediates);
    files.path_into("passphrase_file", profile.identity.passphrase_file);
    r.boolean_into("allow_insecure_key_permissions", profile.identity.allow_insecure_key_permissions);
    files.path_into("pkcs11_lib", profile.identity.pkcs11_lib);
    files.path_into("pin_file", profile.identity.pin_file);
    r.boolean_into("reuse_pin", profile.identity.reuse_pin);
    r.string_into("tpm_tcti", profile.identity.tpm_tcti);
    files.path_into("tpm_key_password_file", profile.identity.tpm_key_password_file);
    files.path_into("tpm_parent_password_file", profile.identity.tpm_parent_password_file);
    r.string_into("trust_anchor_arn", profile.trust_anchor_arn);
    r.string_into("profile_arn", profile.profile_arn);
    r.string_into("role_arn", profile.role_arn);
    r.string_into("region", profile.region);
    r.string_into("endpoint", profile.endpoint);
    r.boolean_into("use_fips_endpoint", profile.use_fips_endpoint);
    files.path_into("ca_bundle", profile.ca_bundle);
    r.boolean_into("no_verify_ssl", profile.no_verify_ssl);
    r.integer_into("session_duration", profile.session_duration, 900, 43200);
    r.string_into("role_session_name", profile.role_session_name);
    read_listen_list(r, "imds_listen", profile.imds_listen);
    if (auto path = r.string("ecs_path")) {
        if (!path->starts_with('/') || path->find_first_of("?# ") != std::string::npos) {
            r.fail("ecs_path", "must be an absolute URL path such as \"/credentials/" + profile.name + "\"");
        }
        profile.ecs_path = *path;
    }
    files.path_into("ecs_token_file", profile.ecs_token_file, /*must_exist=*/false);
    r.string_into("credentials_file_profile", profile.credentials_file_profile);
    files.path_into("credentials_file", profile.credentials_file, /*must_exist=*/false);
    r.finish();
    if (error) {
        return;
    }
    for (const char* required : {"certificate", "trust_anchor_arn", "profile_arn", "role_arn"}) {
        if (!profile.source.lines.contains(required)) {
            r.fail(required, "is required");
            return;
        }
    }
    // Present but empty is as good as absent (found by fuzzing: trust_anchor_arn = "" was accepted).
    const std::pair<const char*, bool> empty[] = {{"certificate", profile.identity.certificate.empty()},
                                                  {"trust_anchor_arn", profile.trust_anchor_arn.empty()},
                                                  {"profile_arn", profile.profile_arn.empty()},
                                                  {"role_arn", profile.role_arn.empty()}};
    for (const auto& [key, is_empty] : empty) {
        if (is_empty) {
            r.fail(key, "must not be empty");
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
    std::optional<Error> error;
    config.agent.source.file = origin.string();
    Source root_source{origin.string(), {}, 1};
    TableReader top(root, root_source, "(top level)", error);
    if (const auto* agent = top.node("agent")) {
        if (!agent->is_table()) {
            top.fail("agent", "must be a table ([agent])");
        } else {
            config.agent.source.table_line = line_of(*agent);
            read_agent(*agent->as_table(), config.agent, error);
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
                    if (!error) {
                        error = make_error(Errc::config_invalid, profile.source.where("") +
                                                                     ": profile name \"" + profile.name +
                                                                     "\" must be 1-64 of A-Z a-z 0-9 . _ -");
                    }
                    break;
                }
                if (!node.is_table()) {
                    if (!error) {
                        error = make_error(Errc::config_invalid, profile.source.where("") + ": profiles." +
                                                                     profile.name + " must be a table");
                    }
                    break;
                }
                read_profile(*node.as_table(), profile, environment, error);
                config.profiles.push_back(std::move(profile));
            }
        }
    }
    top.finish();
    if (error) {
        return *error;
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
