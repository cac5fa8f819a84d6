#pragma once
// The container endpoint's token file, and the random bytes the agent keys its tokens with.

#include <cstddef>
#include <filesystem>

#include "common/error.hpp"
#include "common/secret.hpp"

namespace rad::agent {

// ensure_token_file returns the ECS token: the file's content, or a new random token written 0400 (no
// trailing newline: every SDK refuses a token containing CR or LF); `created` says which.
[[nodiscard]] Result<Secret> ensure_token_file(const std::filesystem::path& path, bool* created = nullptr);

// random_secret draws `size` bytes from the kernel's random generator (getrandom): the IMDS token key and the
// ECS token. Error internal when the kernel refuses.
[[nodiscard]] Result<Secret> random_secret(std::size_t size);

}  // namespace rad::agent
