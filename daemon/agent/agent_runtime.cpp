#include "daemon/agent/agent_runtime.hpp"

namespace rad::daemon::agent_detail {

const char* refresh_reason_name(RefreshReason reason) noexcept {
    switch (reason) {
        case RefreshReason::startup:
            return "startup";
        case RefreshReason::timer:
            return "timer";
        case RefreshReason::retry:
            return "retry";
        case RefreshReason::fast_path:
            return "fast_path";
        case RefreshReason::reload:
            return "reload";
        case RefreshReason::rotation:
            return "rotation";
        case RefreshReason::wall_clock:
            return "wall_clock";
        case RefreshReason::command:
            return "command";
        case RefreshReason::client:
            return "client";
    }
    return "timer";
}

FileStamp stamp_of(const std::string& path) {
    FileStamp stamp;
    struct stat st {};
    if (path.empty() || ::stat(path.c_str(), &st) != 0) {
        return stamp;
    }
    stamp.device = st.st_dev;
    stamp.inode = st.st_ino;
    stamp.size = st.st_size;
    stamp.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    stamp.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    stamp.exists = true;
    return stamp;
}

std::vector<FileStamp> identity_stamps(const config::IdentitySpec& identity) {
    return {stamp_of(identity.certificate),
            stamp_of(identity.private_key),
            stamp_of(identity.intermediates),
            stamp_of(identity.passphrase_file),
            stamp_of(identity.pin_file),
            stamp_of(identity.tpm_key_password_file),
            stamp_of(identity.tpm_parent_password_file)};
}

std::optional<config::ListenAddress> socket_local_address(int fd) {
    sockaddr_storage storage{};
    socklen_t length = sizeof storage;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
        return std::nullopt;
    }
    char text[INET6_ADDRSTRLEN] = {};
    if (storage.ss_family == AF_INET) {
        const auto& in = reinterpret_cast<const sockaddr_in&>(storage);
        ::inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
        return config::ListenAddress{text, ntohs(in.sin_port)};
    }
    if (storage.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(storage);
        ::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
        return config::ListenAddress{text, ntohs(in6.sin6_port)};
    }
    return std::nullopt;
}

signer::Credentials clone_credentials(const signer::Credentials& c) {
    return signer::Credentials{c.access_key_id, c.secret_access_key.clone(), c.session_token.clone(),
                               c.expiration};
}

std::int64_t whole_seconds(std::chrono::steady_clock::duration d) {
    return std::chrono::duration_cast<std::chrono::seconds>(d).count();
}

std::pair<std::string, std::string> role_name_and_account(const std::string& role_arn) {
    auto arn = signer::parse_arn(role_arn, "role_arn");
    if (!arn) {
        return {"rolesanywhere-role", ""};
    }
    const auto slash = arn->resource.rfind('/');
    return {slash == std::string::npos ? arn->resource : arn->resource.substr(slash + 1), arn->account};
}

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
    if (auto r = replace_file_atomically(path, token.reveal(), 0400); !r) {
        return make_error(Errc::config_invalid,
                          path.string() + ": cannot write the token file: " + r.error().message);
    }
    if (created != nullptr) {
        *created = true;
    }
    return token;
}

}  // namespace rad::daemon::agent_detail
