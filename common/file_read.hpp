#pragma once
// Reading the files the agent is pointed at, with the checks that belong to opening them: missing,
// unreadable, not a regular file, too large, and — for files holding secrets — ssh-style permission rules.

#include <cstddef>
#include <filesystem>
#include <string>

#include "common/error.hpp"
#include "common/secret.hpp"

namespace rad {

// kMaxInputFileBytes bounds every certificate, key, bundle and passphrase file (1 MiB).
inline constexpr std::size_t kMaxInputFileBytes = 1 << 20;

// SecretFilePolicy says how strictly a file holding a secret (private key, passphrase, PIN) is checked.
struct SecretFilePolicy {
    // allow_loose_permissions skips the mode/owner/symlink checks (compatibility flag; a warning is due).
    bool allow_loose_permissions = false;
    // allow_group_read admits a file the group may read (not write): a secret shared with a group's members
    // on purpose, such as the container endpoint's token. Others still get nothing.
    bool allow_group_read = false;
};

// read_public_file reads a certificate or bundle. Errors: input_missing (absent/unreadable, naming the
// path and errno text), input_invalid (not a regular file, or larger than kMaxInputFileBytes).
[[nodiscard]] Result<std::string> read_public_file(const std::filesystem::path& path);

// read_secret_file reads a private key or passphrase file into a Secret. Beyond read_public_file's
// checks it refuses (unsafe_permissions) a symlink, a file whose mode grants anything to group (but reading,
// with policy.allow_group_read) or others,
// one owned by a user other than the caller or root, or one in a directory writable by others without the
// sticky bit — unless policy.allow_loose_permissions. The file's checks are made on the opened descriptor
// (no check-then-open race).
[[nodiscard]] Result<Secret> read_secret_file(const std::filesystem::path& path, SecretFilePolicy policy);

// read_passphrase_file reads a secret file and strips one trailing "\n" or "\r\n" (editors add one).
[[nodiscard]] Result<Secret> read_passphrase_file(const std::filesystem::path& path, SecretFilePolicy policy);

}  // namespace rad
