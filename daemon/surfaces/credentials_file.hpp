#pragma once
// The shared credentials file (~/.aws/credentials) as `update` and the agent's credentials-file surface write
// it. Editing is a pure function of the old text; writing is atomic (temp file, fsync, rename, fsync of the
// directory) under an flock on a lock file beside it, so a reader never sees half a file and two writers
// never lose each other's profiles. The lock file exists only while a writer holds it.

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/secret.hpp"
#include "signer/credentials.hpp"

namespace rad::surfaces {

// kExpirationKey is written next to the three standard keys so that people and tools can see when the
// credentials run out (the SDKs ignore unknown keys in this file).
inline constexpr std::string_view kExpirationKey = "x_expiration";

// edit_credentials_file returns `existing` with the first `[profile]` section's aws_access_key_id,
// aws_secret_access_key, aws_session_token and x_expiration set to `credentials`. Every other byte is kept:
// other sections, other keys of the section, comments, blank lines and line endings (CRLF files stay CRLF).
// Keys already present are replaced in place (keys compare as botocore reads them: case-insensitively, before
// the first '=' or ':'), later duplicates of them dropped; missing ones are added after the section's last
// non-blank line; a missing section is appended at the end. The result holds secrets, hence Secret.
Secret edit_credentials_file(std::string_view existing,
                             std::string_view profile,
                             const signer::Credentials& credentials);

// write_credentials_file applies edit_credentials_file to `path` (created 0600 if missing, with its directory
// 0700), locking "<path>.lock" and removing it again. Under the lock it first removes "<path>.tmp.*" files
// that a killed writer left behind (and takes over the lock file one left). Errors:
// input_invalid (the file is not a regular file), unsafe_permissions (group/world readable existing file),
// internal (I/O failures), each naming the path.
[[nodiscard]] Result<void> write_credentials_file(const std::filesystem::path& path,
                                                  std::string_view profile,
                                                  const signer::Credentials& credentials);

// check_credentials_file_writable makes the checks of a write without writing (at the agent's start): the
// directory exists (or is created 0700) and takes a new file, and an existing file is a regular file that
// group and others cannot access. Errors as write_credentials_file's, naming the path.
[[nodiscard]] Result<void> check_credentials_file_writable(const std::filesystem::path& path);

// replace_file_atomically puts `data` at `path` so that readers see the old file or the new one, never half:
// a uniquely named temporary file (O_EXCL, `mode`) in the same directory, written and fsynced, renamed over
// `path`, then the directory fsynced. Errors are internal, naming the file.
[[nodiscard]] Result<void> replace_file_atomically(const std::filesystem::path& path,
                                                   std::string_view data,
                                                   mode_t mode);

// default_credentials_file is $AWS_SHARED_CREDENTIALS_FILE, else $HOME/.aws/credentials.
std::filesystem::path default_credentials_file();

}  // namespace rad::surfaces
