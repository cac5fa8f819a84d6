#include "common/file_read.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.hpp"

namespace rad {
namespace {

std::string quoted(const std::filesystem::path& path) {
    return path.string();
}

Result<int> open_checked(const std::filesystem::path& path, bool no_follow) {
    // O_NONBLOCK so that a FIFO given by mistake does not hang the open; regular files ignore it.
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    if (no_follow) {
        flags |= O_NOFOLLOW;
    }
    const int fd = ::open(path.c_str(), flags);
    if (fd < 0) {
        const int err = errno;
        if (err == ELOOP && no_follow) {
            return make_error(Errc::unsafe_permissions,
                              quoted(path) + ": is a symbolic link; point at the key file itself");
        }
        if (err == EACCES || err == EPERM) {
            return make_error(Errc::input_missing, quoted(path) + ": cannot be read: " + std::strerror(err));
        }
        return make_error(Errc::input_missing, quoted(path) + ": " + std::strerror(err));
    }
    return fd;
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

Result<std::string> read_public_file(const std::filesystem::path& path) {
    auto fd = open_checked(path, false);
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
    auto fd = open_checked(path, !policy.allow_loose_permissions);
    if (!fd) {
        return fd.error();
    }
    UniqueFd owner(*fd);
    struct stat st {};
    if (::fstat(owner.get(), &st) != 0) {
        return make_error(Errc::input_missing, quoted(path) + ": " + std::strerror(errno));
    }
    if (!policy.allow_loose_permissions && S_ISREG(st.st_mode)) {
        // The rule of ssh's sshkey_perm_ok: nothing for group or others, owned by us (or root, which
        // covers systemd's LoadCredential= copies, 0400 root-owned, read through the credentials dir).
        const mode_t forbidden = policy.allow_group_read ? 037 : 077;
        if ((st.st_mode & forbidden) != 0) {
            char mode[8];
            std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
            return make_error(
                Errc::unsafe_permissions,
                quoted(path) + ": permissions " + mode +
                    (policy.allow_group_read
                         ? " are too open (others may access it, or the group write it); run "
                           "chmod 640 on it"
                         : " are too open (group or others may access it); run chmod 600 on it"));
        }
        if (st.st_uid != ::geteuid() && st.st_uid != 0) {
            return make_error(Errc::unsafe_permissions, quoted(path) + ": owned by uid " +
                                                            std::to_string(st.st_uid) +
                                                            ", which is neither this user nor root");
        }
        // Anyone who may write the directory may rename another file over the key between two reads (the
        // agent re-reads it before every refresh). The sticky bit (/tmp) forbids that to non-owners.
        const std::filesystem::path parent = path.has_parent_path() ? path.parent_path() : ".";
        struct stat dir {};
        if (::stat(parent.c_str(), &dir) == 0 && (dir.st_mode & S_IWOTH) != 0 &&
            (dir.st_mode & S_ISVTX) == 0) {
            return make_error(Errc::unsafe_permissions, quoted(path) + ": its directory " + parent.string() +
                                                            " is writable by others; run chmod o-w on it");
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
