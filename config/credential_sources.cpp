#include "config/credential_sources.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace rad::config {
namespace {

// field: the text as one field of a line (no separator, no line break, no NUL).
std::string field(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        if (c == '\t' || c == '\n' || c == '\r' || c == '\0') {
            c = '?';
        }
    }
    return out;
}

std::vector<std::string_view> split(std::string_view line, char separator) {
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    for (;;) {
        const std::size_t end = line.find(separator, start);
        parts.push_back(
            line.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
        if (end == std::string_view::npos) {
            return parts;
        }
        start = end + 1;
    }
}

// is_secret_key: the configuration keys whose files hold a secret read under the key-file rules (owner only).
bool is_secret_key(std::string_view key) {
    return key == "private_key" || key == "passphrase_file" || key == "pin_file" ||
           key == "tpm_key_password_file" || key == "tpm_parent_password_file";
}

}  // namespace

std::string format_credential_sources(const std::vector<CredentialSource>& sources) {
    std::string out(kCredentialSourcesHeader);
    out += '\n';
    for (const auto& s : sources) {
        out += field(s.name) + '\t' + field(s.source.string()) + '\t' + field(s.refusal) + '\t' +
               field(s.shared_refusal) + '\n';
    }
    return out;
}

Result<std::vector<CredentialSource>> parse_credential_sources(std::string_view text,
                                                               const std::filesystem::path& origin) {
    std::vector<CredentialSource> sources;
    auto lines = split(text, '\n');
    if (!lines.empty() && lines.back().empty()) {
        lines.pop_back();
    }
    if (lines.empty() || lines.front() != kCredentialSourcesHeader) {
        return make_error(Errc::config_invalid, origin.string() +
                                                    ":1: not a record of credential sources (\"" +
                                                    std::string(kCredentialSourcesHeader) + "\" expected)");
    }
    for (std::size_t i = 1; i < lines.size(); ++i) {
        const auto parts = split(lines[i], '\t');
        if (parts.size() != 4 || parts[0].empty() || parts[1].empty()) {
            return make_error(Errc::config_invalid,
                              origin.string() + ":" + std::to_string(i + 1) +
                                  ": expected NAME, SOURCE, REFUSAL and SHARED_REFUSAL separated by tabs");
        }
        sources.push_back(CredentialSource{std::string(parts[0]), std::string(parts[1]),
                                           std::string(parts[2]), std::string(parts[3])});
    }
    return sources;
}

Result<std::vector<CredentialSource>> read_credential_sources(const std::filesystem::path& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) {
            return std::vector<CredentialSource>{};
        }
        return make_error(Errc::config_invalid, path.string() + ": " + std::strerror(errno));
    }
    // Whoever could write it could make the agent refuse a good key, or name files falsely.
    if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        return make_error(Errc::config_invalid,
                          path.string() + ": not a regular file owned by root and writable by root only");
    }
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in && !in.eof()) {
        return make_error(Errc::config_invalid, path.string() + ": cannot be read");
    }
    return parse_credential_sources(text.str(), path);
}

Result<void> refuse_unsafe_sources(const std::vector<CredentialCopy>& copies) {
    for (const auto& c : copies) {
        const std::string& refusal = c.key == "ecs_token_file"
                                         ? c.source.shared_refusal
                                         : (is_secret_key(c.key) ? c.source.refusal : "");
        if (!refusal.empty()) {
            return make_error(Errc::unsafe_permissions, c.key + ": " + c.copy.string() +
                                                            " (LoadCredential= copy of " +
                                                            c.source.source.string() + "): " + refusal);
        }
    }
    return {};
}

std::string name_credential_sources(std::string message, const std::vector<CredentialCopy>& copies) {
    for (const auto& c : copies) {
        const std::string copy = c.copy.string();
        const std::string note = " (LoadCredential= copy of " + c.source.source.string() + ")";
        if (copy.empty()) {
            continue;
        }
        std::size_t at = 0;
        while ((at = message.find(copy, at)) != std::string::npos) {
            at += copy.size();
            // A longer path that starts with this one (agent.key.old) is another file.
            if (at < message.size() && message[at] != ' ' && message[at] != ':' && message[at] != ',' &&
                message[at] != ')' && message[at] != ';' && message[at] != '"') {
                continue;
            }
            if (message.compare(at, note.size(), note) != 0) {
                message.insert(at, note);
            }
            at += note.size();
        }
    }
    return message;
}

}  // namespace rad::config
