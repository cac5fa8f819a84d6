#include "daemon/cli/credential_sources_command.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/file_read.hpp"

namespace rad::cli {
namespace {

// The system bus (dbus-daemon): PID 1's private socket is no bus (busctl's Hello fails there), and
// `systemctl show` prints LoadCredential as "[unprintable]" (systemd 252 and 257).
constexpr const char* kBus = "--system";

// read_command runs argv (no shell) and returns its standard output, or why it failed.
Result<std::string> read_command(const std::vector<std::string>& argv) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        return make_error(Errc::internal, std::string("pipe: ") + std::strerror(errno));
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        return make_error(Errc::internal, std::string("fork: ") + std::strerror(errno));
    }
    if (pid == 0) {
        ::dup2(pipe_fds[1], STDOUT_FILENO);
        const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd >= 0) {
            ::dup2(null_fd, STDIN_FILENO);
        }
        std::vector<char*> args;
        for (const auto& a : argv) {
            args.push_back(const_cast<char*>(a.c_str()));
        }
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ::close(pipe_fds[1]);
    std::string out;
    char buffer[4096];
    for (;;) {
        const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        out.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(pipe_fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        return make_error(Errc::internal, argv[0] + " exited with status " +
                                              std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1));
    }
    return out;
}

const char* find_busctl() {
    for (const char* candidate : {"/usr/bin/busctl", "/bin/busctl"}) {
        if (::access(candidate, X_OK) == 0) {
            return candidate;
        }
    }
    return nullptr;
}

Result<void> write_record(const std::filesystem::path& path, const std::string& text) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    const std::filesystem::path temporary = path.string() + ".new";
    ::unlink(temporary.c_str());
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        return make_error(Errc::internal, temporary.string() + ": " + std::strerror(errno));
    }
    const bool written =
        ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fchmod(fd, 0644) == 0;
    const int err = errno;
    if (::close(fd) != 0 || !written || ::rename(temporary.c_str(), path.c_str()) != 0) {
        ::unlink(temporary.c_str());
        return make_error(Errc::internal, path.string() + ": " + std::strerror(written ? errno : err));
    }
    return {};
}

// holds_private_key: the source is a PEM private key (plain or encrypted), the one kind of secret the check
// can recognise by itself; only those are reported here (a certificate is 0644 by design). The agent refuses
// whatever a profile uses as a secret, recognisable or not.
bool holds_private_key(const std::string& source) {
    auto content = read_secret_file(source, SecretFilePolicy{/*allow_loose_permissions=*/true});
    return content && content->reveal().find("PRIVATE KEY-----") != std::string::npos;
}

}  // namespace

std::string bus_object_path(const std::string& unit) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "/org/freedesktop/systemd1/unit/";
    if (unit.empty()) {
        return out + "_";
    }
    for (const unsigned char c : unit) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
            out += static_cast<char>(c);
        } else {
            out += '_';
            out += kHex[c >> 4];
            out += kHex[c & 0xf];
        }
    }
    return out;
}

Result<std::vector<std::pair<std::string, std::string>>> parse_load_credentials(const std::string& json) {
    const auto doc = nlohmann::json::parse(json, nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || doc.value("type", "") != "a(ss)" || !doc.contains("data") ||
        !doc["data"].is_array()) {
        return make_error(Errc::config_invalid, "LoadCredential: not an a(ss) property");
    }
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const auto& item : doc["data"]) {
        if (!item.is_array() || item.size() != 2 || !item[0].is_string() || !item[1].is_string()) {
            return make_error(Errc::config_invalid, "LoadCredential: an entry is not a (name, source) pair");
        }
        pairs.emplace_back(item[0].get<std::string>(), item[1].get<std::string>());
    }
    return pairs;
}

config::CredentialSource check_source(const std::string& name, const std::string& source) {
    config::CredentialSource checked{name, source, "", ""};
    // A relative source is looked up in systemd's credential stores, a directory or socket is no key file:
    // the rules are about plain files named by a path.
    if (source.empty() || source.front() != '/') {
        return checked;
    }
    struct stat st {};
    if (::lstat(source.c_str(), &st) != 0 || !(S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))) {
        return checked;
    }
    const auto refusal = [&source](SecretFilePolicy policy) -> std::string {
        auto read = read_secret_file(source, policy);  // the content is wiped when `read` goes
        return !read && read.error().code == Errc::unsafe_permissions ? read.error().message : "";
    };
    checked.refusal = refusal(SecretFilePolicy{});
    checked.shared_refusal = refusal(SecretFilePolicy{false, /*allow_group_read=*/true});
    return checked;
}

Result<void> run_check_credential_sources(const CredentialSourcesOptions& options, std::FILE* err) {
    if (options.unit.empty() || options.output.empty()) {
        return make_error(Errc::usage, "--unit and --output are required");
    }
    // A record of an earlier start must not outlive this one, whatever happens below.
    ::unlink(options.output.c_str());
    std::vector<config::CredentialSource> sources;
    const char* busctl = find_busctl();
    auto property = busctl == nullptr
                        ? Result<std::string>(make_error(Errc::internal, "busctl is not installed"))
                        : read_command({busctl, kBus, "--json=short", "get-property",
                                        "org.freedesktop.systemd1", bus_object_path(options.unit),
                                        "org.freedesktop.systemd1.Service", "LoadCredential"});
    using Pairs = std::vector<std::pair<std::string, std::string>>;
    auto pairs = property ? parse_load_credentials(*property) : Result<Pairs>(property.error());
    if (!pairs) {
        std::fprintf(
            err,
            "rolesanywhere-agent: warning: cannot learn the LoadCredential= sources of %s (%s); their "
            "permissions go unchecked\n",
            options.unit.c_str(), pairs.error().message.c_str());
    } else {
        for (const auto& [name, source] : *pairs) {
            sources.push_back(check_source(name, source));
            const auto& checked = sources.back();
            if (!checked.refusal.empty() && holds_private_key(source)) {
                std::fprintf(
                    err,
                    "rolesanywhere-agent: warning: credential %s: %s; the profiles using this key are "
                    "refused\n",
                    name.c_str(), checked.refusal.c_str());
            }
        }
    }
    return write_record(options.output, config::format_credential_sources(sources));
}

}  // namespace rad::cli
