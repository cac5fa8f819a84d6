#include "common/file_read.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <deque>

#include "common/unique_fd.hpp"

namespace rad {
namespace {

std::string quoted(const std::filesystem::path& path) {
    return path.string();
}

Error open_error(const std::filesystem::path& path, int err) {
    if (err == EACCES || err == EPERM) {
        return make_error(Errc::input_missing, quoted(path) + ": cannot be read: " + std::strerror(err));
    }
    return make_error(Errc::input_missing, quoted(path) + ": " + std::strerror(err));
}

// O_NONBLOCK so that a FIFO given by mistake does not hang the open; regular files ignore it.
constexpr int kReadFlags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;

FileFacts facts_of(const struct stat& st) {
    return FileFacts{st.st_uid, st.st_gid, st.st_mode};
}

// denied_error is open_error for EACCES on a file whose facts are known, with what the caller can change.
Error denied_error(const std::filesystem::path& path, const struct stat& file) {
    Error error = open_error(path, EACCES);
    if (auto hint = unreadable_hint(facts_of(file), ProcessIdentity{::geteuid(), ::getegid()})) {
        error.message += " (" + *hint + ")";
    }
    return error;
}

Result<int> open_checked(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), kReadFlags);
    if (fd < 0) {
        const int err = errno;
        struct stat st {};
        if (err == EACCES && ::stat(path.c_str(), &st) == 0) {
            return denied_error(path, st);
        }
        return open_error(path, err);
    }
    return fd;
}

std::string octal_mode(mode_t mode) {
    char text[8];
    std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
    return text;
}

// Where a walk stands: the directory it is in (a descriptor, and its name for messages, built lexically).
struct WalkDirectory {
    UniqueFd fd;
    std::string name;
};

std::string child_name(const std::string& directory, const std::string& entry) {
    if (directory.empty() || directory == ".") {
        return entry;
    }
    return directory == "/" ? "/" + entry : directory + "/" + entry;
}

std::string parent_name(const std::string& directory) {
    if (directory == "/") {
        return directory;
    }
    if (directory == "." || directory == ".." || directory.ends_with("/..")) {
        return directory == "." ? ".." : directory + "/..";
    }
    const auto slash = directory.rfind('/');
    if (slash == std::string::npos) {
        return ".";
    }
    return slash == 0 ? "/" : directory.substr(0, slash);
}

std::deque<std::string> split_path(const std::string& text) {
    std::deque<std::string> names;
    std::size_t begin = 0;
    while (begin <= text.size()) {
        const auto end = std::min(text.find('/', begin), text.size());
        if (end > begin) {
            names.emplace_back(text.substr(begin, end - begin));
        }
        begin = end + 1;
    }
    // "name/" names a directory (the kernel answers ENOTDIR for a file): resolve it as "name/.".
    if (!names.empty() && text.back() == '/') {
        names.emplace_back(".");
    }
    return names;
}

Result<WalkDirectory> open_root(bool absolute, const std::filesystem::path& path) {
    const int fd = ::open(absolute ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return open_error(path, errno);
    }
    return WalkDirectory{UniqueFd(fd), absolute ? "/" : "."};
}

// open_secret opens `path` for reading the way the kernel resolves it, one name at a time relative to the
// directory reached so far, and applies link_refusal and directory_refusal to what it passes through. It
// returns the descriptor of the last name, opened without following a link: what was checked is what is read.
Result<int> open_secret(const std::filesystem::path& path, ProcessIdentity self) {
    // The kernel's own limit on links followed in one resolution (MAXSYMLINKS).
    constexpr int kMaxLinks = 40;
    const std::string text = path.string();
    if (text.empty()) {
        return open_error(path, ENOENT);
    }
    auto directory = open_root(text.front() == '/', path);
    if (!directory) {
        return directory.error();
    }
    WalkDirectory here = std::move(*directory);
    std::deque<std::string> names = split_path(text);
    if (names.empty()) {
        names.emplace_back(".");  // "/" itself: read as a directory, refused as not a regular file
    }
    int links = 0;
    bool through_link = false;
    auto refuse = [&](const std::string& why) {
        return make_error(Errc::unsafe_permissions, quoted(path) + ": " + why);
    };
    auto check_here = [&]() -> std::optional<Error> {
        struct stat st {};
        if (::fstat(here.fd.get(), &st) != 0) {
            return open_error(path, errno);
        }
        if (auto why = directory_refusal(here.name, facts_of(st), self, through_link)) {
            return refuse(*why);
        }
        return std::nullopt;
    };
    while (!names.empty()) {
        const std::string name = std::move(names.front());
        names.pop_front();
        if (name == "." && !names.empty()) {
            continue;
        }
        struct stat entry {};
        if (::fstatat(here.fd.get(), name.c_str(), &entry, AT_SYMLINK_NOFOLLOW) != 0) {
            return open_error(path, errno);
        }
        if (S_ISLNK(entry.st_mode)) {
            through_link = true;
            if (++links > kMaxLinks) {
                return open_error(path, ELOOP);
            }
            if (auto why = link_refusal(child_name(here.name, name), facts_of(entry), self)) {
                return refuse(*why);
            }
            if (auto refused = check_here()) {
                return *refused;
            }
            std::string target(PATH_MAX, '\0');
            const ssize_t n = ::readlinkat(here.fd.get(), name.c_str(), target.data(), target.size());
            if (n < 0 || static_cast<std::size_t>(n) >= target.size()) {
                return open_error(path, n < 0 ? errno : ENAMETOOLONG);
            }
            target.resize(static_cast<std::size_t>(n));
            if (target.empty()) {
                return open_error(path, ENOENT);
            }
            if (target.front() == '/') {
                auto root = open_root(true, path);
                if (!root) {
                    return root.error();
                }
                here = std::move(*root);
            }
            auto more = split_path(target);
            names.insert(names.begin(), more.begin(), more.end());
            if (names.empty()) {
                names.emplace_back(".");  // a link to "/"
            }
            continue;
        }
        if (names.empty()) {
            // The secret itself: judged by the caller on this very descriptor; its directory here.
            if (auto refused = check_here()) {
                return *refused;
            }
            const int fd = ::openat(here.fd.get(), name.c_str(), kReadFlags | O_NOFOLLOW);
            if (fd < 0) {
                const int err = errno;
                return err == EACCES ? denied_error(path, entry) : open_error(path, err);
            }
            return fd;
        }
        if (through_link) {
            if (auto refused = check_here()) {
                return *refused;
            }
        }
        const int next = ::openat(here.fd.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            return open_error(path, errno);
        }
        here.fd.reset(next);
        here.name = name == ".."  ? parent_name(here.name)
                    : name == "." ? here.name
                                  : child_name(here.name, name);
    }
    return open_error(path, ENOENT);
}

// read_all reads a regular file through `fd` into `out`, refusing anything over kMaxInputFileBytes.
Result<void> read_all(int fd, const std::filesystem::path& path, const struct stat& st, std::string& out) {
    if (!S_ISREG(st.st_mode)) {
        return make_error(Errc::input_invalid, quoted(path) + ": not a regular file");
    }
    if (st.st_size > static_cast<off_t>(kMaxInputFileBytes)) {
        return make_error(Errc::input_invalid,
                          quoted(path) + ": larger than " + std::to_string(kMaxInputFileBytes) + " bytes");
    }
    out.reserve(static_cast<std::size_t>(st.st_size) + 1);
    char buffer[4096];
    for (;;) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            const int err = errno;
            explicit_bzero(buffer, sizeof buffer);
            return make_error(Errc::input_missing, quoted(path) + ": read failed: " + std::strerror(err));
        }
        if (n == 0) {
            break;
        }
        if (out.size() + static_cast<std::size_t>(n) > kMaxInputFileBytes) {
            explicit_bzero(buffer, sizeof buffer);
            return make_error(Errc::input_invalid, quoted(path) + ": larger than " +
                                                       std::to_string(kMaxInputFileBytes) + " bytes");
        }
        out.append(buffer, static_cast<std::size_t>(n));
    }
    explicit_bzero(buffer, sizeof buffer);
    return {};
}

}  // namespace

std::optional<std::string> secret_file_refusal(FileFacts file,
                                               ProcessIdentity self,
                                               SecretFilePolicy policy) {
    if (file.uid != self.uid && file.uid != 0) {
        return "owned by uid " + std::to_string(file.uid) + ", which is neither this user nor root";
    }
    // The rule of ssh's sshkey_perm_ok: nothing for group or others, owned by us (or root, which covers
    // systemd's LoadCredential= copies, 0400 root-owned, read through the credentials directory).
    if ((file.mode & 077) == 0) {
        return std::nullopt;
    }
    const bool group_reads_only = (file.mode & 037) == 0;
    if (policy.allow_group_read && group_reads_only) {
        return std::nullopt;
    }
    // A Kubernetes Secret volume cannot give a non-root agent a file of its own: the kubelet writes
    // root-owned files, and a pod's fsGroup makes them group-readable (it adds 0440 to defaultMode). Such a
    // file is private when its group is the agent's own primary group; group 0 is never that (every process
    // of some platforms runs with it).
    if (file.uid == 0 && self.gid != 0 && file.gid == self.gid && group_reads_only) {
        return std::nullopt;
    }
    const std::string permissions = "permissions " + octal_mode(file.mode);
    if (policy.allow_group_read) {
        return permissions +
               " are too open (others may access it, or the group write it); run chmod 640 on it";
    }
    if (file.uid == 0 && self.uid != 0) {
        const std::string group = self.gid != 0
                                      ? "fsGroup: " + std::to_string(self.gid) + " (the agent's group)"
                                      : "runAsGroup and fsGroup to a group of the agent's own, not 0";
        return permissions + " with group " + std::to_string(file.gid) +
               " are too open (group or others may access it); run chmod 600 on it, or for a Kubernetes "
               "Secret volume set defaultMode: 0440 and " +
               group;
    }
    return permissions + " are too open (group or others may access it); run chmod 600 on it";
}

std::optional<std::string> unreadable_hint(FileFacts file, ProcessIdentity self) {
    // What a non-root agent meets in a Kubernetes Secret volume without fsGroup, or with another one: root's
    // file, whose group is not the agent's.
    if (self.uid == 0 || file.uid != 0 || (file.gid == self.gid && self.gid != 0)) {
        return std::nullopt;
    }
    return "owned by root with group " + std::to_string(file.gid) + " and permissions " +
           octal_mode(file.mode) + "; this process runs as uid " + std::to_string(self.uid) + ", gid " +
           std::to_string(self.gid) +
           (self.gid != 0
                ? ": for a Kubernetes Secret volume set defaultMode: 0440 and fsGroup: " +
                      std::to_string(self.gid)
                : ": for a Kubernetes Secret volume give the agent a group of its own (runAsGroup), "
                  "fsGroup equal to it and defaultMode: 0440");
}

std::optional<std::string> directory_refusal(const std::string& directory,
                                             FileFacts facts,
                                             ProcessIdentity self,
                                             bool through_link) {
    const bool sticky = (facts.mode & S_ISVTX) != 0;
    // Anyone who may write the directory may rename another file over the key between two reads (the agent
    // re-reads it before every refresh). The sticky bit (/tmp) forbids that to non-owners.
    if (!through_link) {
        if ((facts.mode & S_IWOTH) != 0 && !sticky) {
            return "its directory " + directory + " is writable by others; run chmod o-w on it";
        }
        return std::nullopt;
    }
    // Through a symbolic link, the name the agent was given says nothing about where the file is: every
    // directory on the way must be one that only this user or root can change.
    if (facts.uid != self.uid && facts.uid != 0) {
        return "the directory " + directory + " on its way (through a symbolic link) is owned by uid " +
               std::to_string(facts.uid) + ", which is neither this user nor root";
    }
    if ((facts.mode & (S_IWGRP | S_IWOTH)) != 0 && !sticky) {
        return "the directory " + directory +
               " on its way (through a symbolic link) is writable by its group or others; run chmod go-w on "
               "it";
    }
    return std::nullopt;
}

std::optional<std::string> link_refusal(const std::string& link, FileFacts facts, ProcessIdentity self) {
    if (facts.uid != self.uid && facts.uid != 0) {
        return "the symbolic link " + link + " is owned by uid " + std::to_string(facts.uid) +
               ", which is neither this user nor root; point at the key file itself";
    }
    return std::nullopt;
}

Result<std::string> read_public_file(const std::filesystem::path& path) {
    auto fd = open_checked(path);
    if (!fd) {
        return fd.error();
    }
    UniqueFd owner(*fd);
    struct stat st {};
    if (::fstat(owner.get(), &st) != 0) {
        return make_error(Errc::input_missing, quoted(path) + ": " + std::strerror(errno));
    }
    std::string out;
    if (auto r = read_all(owner.get(), path, st, out); !r) {
        return r.error();
    }
    return out;
}

Result<Secret> read_secret_file(const std::filesystem::path& path, SecretFilePolicy policy) {
    const ProcessIdentity self{::geteuid(), ::getegid()};
    auto fd = policy.allow_loose_permissions ? open_checked(path) : open_secret(path, self);
    if (!fd) {
        return fd.error();
    }
    UniqueFd owner(*fd);
    struct stat st {};
    if (::fstat(owner.get(), &st) != 0) {
        return make_error(Errc::input_missing, quoted(path) + ": " + std::strerror(errno));
    }
    if (!policy.allow_loose_permissions && S_ISREG(st.st_mode)) {
        if (auto refusal = secret_file_refusal(facts_of(st), self, policy)) {
            return make_error(Errc::unsafe_permissions, quoted(path) + ": " + *refusal);
        }
    }
    Secret out;
    if (auto r = read_all(owner.get(), path, st, out.reveal_mutable()); !r) {
        return r.error();
    }
    return out;
}

Result<Secret> read_passphrase_file(const std::filesystem::path& path, SecretFilePolicy policy) {
    auto secret = read_secret_file(path, policy);
    if (!secret) {
        return secret.error();
    }
    std::string& value = secret->reveal_mutable();
    if (!value.empty() && value.back() == '\n') {
        value.pop_back();
        if (!value.empty() && value.back() == '\r') {
            value.pop_back();
        }
    }
    return std::move(*secret);
}

}  // namespace rad
