#pragma once
// Reading the files the agent is pointed at, with the checks that belong to opening them: missing,
// unreadable, not a regular file, too large, and — for files holding secrets — ssh-style permission rules,
// with the one exception a Kubernetes Secret volume needs (a root-owned file that the agent's own group may
// read).

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>

#include "common/error.hpp"
#include "common/secret.hpp"

namespace rad {

// kMaxInputFileBytes bounds every certificate, key, bundle and passphrase file (1 MiB).
inline constexpr std::size_t kMaxInputFileBytes = 1 << 20;

// SecretFilePolicy says how strictly a file holding a secret (private key, passphrase, PIN) is checked.
struct SecretFilePolicy {
    // allow_loose_permissions skips the mode and owner checks and follows any symbolic link (compatibility
    // flag; a warning is due).
    bool allow_loose_permissions = false;
    // allow_group_read admits a file the group may read (not write): a secret shared with a group's members
    // on purpose, such as the container endpoint's token. Others still get nothing.
    bool allow_group_read = false;
};

// FileFacts is what the permission rules judge of a file, a directory or a symbolic link: its owner, its
// group and its st_mode (type and permission bits), as lstat/fstat report them.
struct FileFacts {
    uid_t uid = 0;
    gid_t gid = 0;
    mode_t mode = 0;
};

// ProcessIdentity is the effective user and group that the rules compare owners and groups with.
struct ProcessIdentity {
    uid_t uid = 0;
    gid_t gid = 0;
};

// secret_file_refusal says why a secret file with these facts must not be used by `self` (the text that
// follows "PATH: " in the error, one line, naming what to change), or nullopt when it may. Accepted:
//   owner           group                 permissions
//   self or root    any                   nothing for group or others (0600, 0400)
//   self or root    any                   the group may read, nothing else; only with policy.allow_group_read
//   root            self.gid, not 0       the group may read, nothing else (0440, 0640): a Kubernetes Secret
//                                         volume with defaultMode 0440 and fsGroup equal to the agent's group
// Everything else is refused; the caller skips the rules under policy.allow_loose_permissions.
[[nodiscard]] std::optional<std::string> secret_file_refusal(FileFacts file,
                                                             ProcessIdentity self,
                                                             SecretFilePolicy policy);

// unreadable_hint adds to "PATH: cannot be read: Permission denied" what a non-root agent can change about a
// root-owned file whose group is not its own (a Kubernetes Secret volume without the right fsGroup), or
// nullopt.
[[nodiscard]] std::optional<std::string> unreadable_hint(FileFacts file, ProcessIdentity self);

// directory_refusal says why `directory`, on the way to a secret file, must not be trusted (the text that
// follows "PATH: "), or nullopt. Without `through_link` (the file's own directory on a path without symbolic
// links): writable by others without the sticky bit (anyone could rename another file over the secret). With
// `through_link` (every directory holding a symbolic link that is followed, and every directory reached from
// the first such link on): also owned by anyone but self or root, or writable by its group without the sticky
// bit: a link is only as trustworthy as whoever may replace it.
[[nodiscard]] std::optional<std::string> directory_refusal(const std::string& directory,
                                                           FileFacts facts,
                                                           ProcessIdentity self,
                                                           bool through_link);

// link_refusal says why the symbolic link `link` must not be followed to a secret (owned by anyone but self
// or root: that user chooses what the link names), or nullopt.
[[nodiscard]] std::optional<std::string> link_refusal(const std::string& link,
                                                      FileFacts facts,
                                                      ProcessIdentity self);

// read_public_file reads a certificate or bundle. Errors: input_missing (absent/unreadable, naming the
// path and errno text), input_invalid (not a regular file, or larger than kMaxInputFileBytes).
[[nodiscard]] Result<std::string> read_public_file(const std::filesystem::path& path);

// read_secret_file reads a private key or passphrase file into a Secret. Beyond read_public_file's checks it
// applies the rules above (unsafe_permissions), unless policy.allow_loose_permissions: the path is resolved
// one name at a time, each directory opened relative to the one before, symbolic links followed only as
// link_refusal and directory_refusal allow (at most 40), and the file judged by secret_file_refusal on the
// descriptor it is read from (no check-then-open race). A Kubernetes Secret volume's layout (tls.key ->
// ..data/tls.key, ..data -> ..TIMESTAMP/, the volume's root sticky) therefore reads as the file it names.
[[nodiscard]] Result<Secret> read_secret_file(const std::filesystem::path& path, SecretFilePolicy policy);

// read_passphrase_file reads a secret file and strips one trailing "\n" or "\r\n" (editors add one).
[[nodiscard]] Result<Secret> read_passphrase_file(const std::filesystem::path& path, SecretFilePolicy policy);

}  // namespace rad
