#include "daemon/agent/ecs_token.hpp"

#include <sys/random.h>

#include "common/encoding.hpp"
#include "common/file_read.hpp"
#include "daemon/surfaces/credentials_file.hpp"

namespace rad::agent {

Result<Secret> random_secret(std::size_t size) {
    Secret secret;
    std::string& bytes = secret.reveal_mutable();
    bytes.resize(size);
    if (::getrandom(bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size())) {
        return make_error(Errc::internal, "getrandom failed");
    }
    return secret;
}

Result<Secret> ensure_token_file(const std::filesystem::path& path, bool* created) {
    if (std::filesystem::exists(path)) {
        // A token provisioned to be shared with a group of clients may be group-readable (0640 root:GROUP).
        auto token = read_secret_file(path, SecretFilePolicy{.allow_group_read = true});
        if (!token) {
            return token.error();
        }
        std::string& text = token->reveal_mutable();
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
            text.pop_back();
        }
        if (text.empty() || text.find_first_of("\r\n") != std::string::npos) {
            return make_error(Errc::config_invalid,
                              path.string() + ": the token must be one line, not empty");
        }
        return std::move(*token);
    }
    auto random = random_secret(32);
    if (!random) {
        return random.error();
    }
    Secret token(hex_lower(random->reveal()));
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (auto r = surfaces::replace_file_atomically(path, token.reveal(), 0400); !r) {
        return make_error(Errc::config_invalid,
                          path.string() + ": cannot write the token file: " + r.error().message);
    }
    if (created != nullptr) {
        *created = true;
    }
    return token;
}

}  // namespace rad::agent
