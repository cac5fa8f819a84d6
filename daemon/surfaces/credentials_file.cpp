#include "daemon/surfaces/credentials_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "common/time_format.hpp"
#include "common/unique_fd.hpp"
#include "daemon/surfaces/http_types.hpp"

namespace rad::surfaces {

namespace {

// Line is one line of the file: its text without terminator, and the terminator as found ("\n", "\r\n" or
// "" for a last line without one).
struct Line {
    std::string_view text;
    std::string_view end;
};

std::vector<Line> split_lines(std::string_view text) {
    std::vector<Line> lines;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos) {
            lines.push_back({text.substr(pos), {}});
            break;
        }
        std::size_t end_of_text = nl;
        if (end_of_text > pos && text[end_of_text - 1] == '\r') {
            --end_of_text;
        }
        lines.push_back(
            {text.substr(pos, end_of_text - pos), text.substr(end_of_text, nl + 1 - end_of_text)});
        pos = nl + 1;
    }
    return lines;
}

std::string_view trim(std::string_view s) {
    const auto first = s.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = s.find_last_not_of(" \t");
    return s.substr(first, last - first + 1);
}

// section_name is the name of a "[name]" header line, or nullopt for any other line.
std::optional<std::string_view> section_name(std::string_view line) {
    const auto t = trim(line);
    if (t.size() < 2 || t.front() != '[') {
        return std::nullopt;
    }
    const auto close = t.find(']');
    if (close == std::string_view::npos) {
        return std::nullopt;
    }
    // Exact, as botocore's configparser reads it: "[ rad ]" is the section " rad ", not "rad".
    return t.substr(1, close - 1);
}

// key_of is the key of a "key = value" or "key: value" line (trimmed), or empty for comments, blanks and
// other lines: the text before the first '=' or ':', as botocore's configparser splits it.
std::string_view key_of(std::string_view line) {
    const auto t = trim(line);
    if (t.empty() || t.front() == '#' || t.front() == ';') {
        return {};
    }
    const auto delimiter = t.find_first_of("=:");
    if (delimiter == std::string_view::npos) {
        return {};
    }
    return trim(t.substr(0, delimiter));
}

}  // namespace

Secret edit_credentials_file(std::string_view existing,
                             std::string_view profile,
                             const signer::Credentials& credentials) {
    const std::string expiration = format_iso8601(credentials.expiration);
    const std::array<std::pair<std::string_view, std::string_view>, 4> wanted{{
        {"aws_access_key_id", credentials.access_key_id},
        {"aws_secret_access_key", credentials.secret_access_key.reveal()},
        {"aws_session_token", credentials.session_token.reveal()},
        {kExpirationKey, expiration},
    }};
    const auto lines = split_lines(existing);

    // The newline style of the file: that of its first terminated line, "\n" for an empty file.
    std::string_view newline = "\n";
    for (const auto& line : lines) {
        if (!line.end.empty()) {
            newline = line.end;
            break;
        }
    }

    // Locate the section: [begin, end) lines, header at begin - 1.
    std::optional<std::size_t> begin;
    std::size_t end = lines.size();
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const auto name = section_name(lines[i].text);
        if (!name) {
            continue;
        }
        if (begin) {
            end = i;
            break;
        }
        if (*name == profile) {
            begin = i + 1;
        }
    }

    Secret out;
    std::string& text = out.reveal_mutable();
    text.reserve(existing.size() + 4096);
    auto put_key = [&](std::string_view key, std::string_view value) {
        text.append(key).append(" = ").append(value);
    };

    if (!begin) {
        text.append(existing);
        if (!text.empty() && text.back() != '\n') {
            text.append(newline);
        }
        if (!text.empty()) {
            text.append(newline);  // a blank line between the last section and ours
        }
        text.append("[").append(profile).append("]").append(newline);
        for (const auto& [key, value] : wanted) {
            put_key(key, value);
            text.append(newline);
        }
        return out;
    }

    std::array<bool, wanted.size()> written{};
    // Missing keys go after the section's last non-blank line (so blank lines before the next header stay
    // where they are).
    std::size_t insert_after = *begin - 1;
    for (std::size_t i = *begin; i < end; ++i) {
        if (!trim(lines[i].text).empty()) {
            insert_after = i;
        }
    }
    auto append_missing = [&] {
        for (std::size_t k = 0; k < wanted.size(); ++k) {
            if (!written[k]) {
                put_key(wanted[k].first, wanted[k].second);
                text.append(newline);
                written[k] = true;
            }
        }
    };
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const Line& line = lines[i];
        bool replaced = false;
        bool dropped = false;
        if (i >= *begin && i < end) {
            const auto key = key_of(line.text);
            for (std::size_t k = 0; k < wanted.size() && !key.empty(); ++k) {
                // Keys compare as botocore reads them, lower-cased: "AWS_ACCESS_KEY_ID" is the same key as
                // ours, and a file holding both would be refused as having a duplicate.
                if (iequals(key, wanted[k].first)) {
                    if (!written[k]) {
                        put_key(wanted[k].first, wanted[k].second);
                        text.append(line.end);
                        written[k] = true;
                    } else {
                        // A duplicate of a key we own is dropped: two different values would be ambiguous.
                        dropped = true;
                    }
                    replaced = true;
                    break;
                }
            }
        }
        if (!replaced) {
            text.append(line.text).append(line.end);
        }
        if (i == insert_after) {
            // A last line without an ending gets one only if keys follow it and it was written: a dropped
            // line leaves the line before it, which has its own ending, last.
            const bool missing = std::find(written.begin(), written.end(), false) != written.end();
            if (missing && !dropped && line.end.empty()) {
                text.append(newline);
            }
            append_missing();
        }
    }
    return out;
}

std::filesystem::path default_credentials_file() {
    if (const char* file = std::getenv("AWS_SHARED_CREDENTIALS_FILE"); file != nullptr && *file != '\0') {
        return file;
    }
    const char* home = std::getenv("HOME");
    return std::filesystem::path(home != nullptr ? home : "/") / ".aws" / "credentials";
}

namespace {

Error io_error(const std::filesystem::path& path, const char* what) {
    return make_error(Errc::internal, path.string() + ": " + what + ": " + std::strerror(errno));
}

Result<void> write_all(int fd, std::string_view data, const std::filesystem::path& path) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return io_error(path, "cannot write");
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

// remove_stale_temporaries deletes "<file>.tmp.*" left in the directory by a writer that was killed between
// creating its temporary file and renaming it. Called with the lock held: every writer of `path` creates its
// temporary file under that lock, so any such file seen here belongs to a writer that no longer runs. Only
// regular files are removed (never followed symlinks); failures are ignored, the leftover is harmless.
void remove_stale_temporaries(const std::filesystem::path& path) {
    const std::filesystem::path dir =
        path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    const std::string prefix = path.filename().string() + ".tmp.";
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.compare(0, prefix.size(), prefix) != 0) {
            continue;
        }
        struct stat st {};
        if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
            ::unlink(it->path().c_str());
        }
    }
}

// WriterLock is an flock on "<file>.lock", taken while that name leads to the locked inode; the file is
// removed before the lock is released.
//
// Why a lock file that is removed, rather than one kept forever or an flock on the directory: a kept file is
// litter beside the credentials that outlives every writer, and on NFS (home directories often are) flock is
// emulated with byte-range locks, which need a descriptor open for writing, which a directory cannot have.
// Removing it is safe because every writer checks, once locked, that the name still leads to the inode it
// locked, and starts over if not: a writer that opened the file just before its holder removed it wakes up
// holding an orphan, and takes the file now at the name instead. So at most one writer holds the lock of the
// file the name leads to. A writer killed while holding it leaves the file; the next one takes it over.
class WriterLock {
public:
    static Result<WriterLock> take(const std::filesystem::path& file) {
        WriterLock lock(file.string() + ".lock");
        for (;;) {
            lock.fd_.reset(::open(lock.path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
            if (!lock.fd_.valid()) {
                return io_error(lock.path_, "cannot open the lock file");
            }
            while (::flock(lock.fd_.get(), LOCK_EX) != 0) {
                if (errno != EINTR) {
                    return io_error(lock.path_, "cannot lock");
                }
            }
            struct stat locked {};
            if (::fstat(lock.fd_.get(), &locked) != 0) {
                return io_error(lock.path_, "cannot stat");
            }
            struct stat named {};
            if (::lstat(lock.path_.c_str(), &named) == 0) {
                if (named.st_dev == locked.st_dev && named.st_ino == locked.st_ino) {
                    lock.held_ = true;
                    return lock;
                }
            } else if (errno != ENOENT) {
                return io_error(lock.path_, "cannot stat");
            }
        }
    }
    WriterLock(WriterLock&&) = default;
    WriterLock& operator=(WriterLock&&) = delete;
    ~WriterLock() {
        if (held_ && fd_.valid()) {
            ::unlink(path_.c_str());  // still locked: fd_ closes (and unlocks) after this
        }
    }

private:
    explicit WriterLock(std::filesystem::path path) : path_(std::move(path)) {}
    std::filesystem::path path_;
    UniqueFd fd_;
    bool held_ = false;  // only the holder may remove the file: anyone else would free it for a third writer
};

// ensure_directory_of creates the directory `path` goes in, if missing.
Result<void> ensure_directory_of(const std::filesystem::path& path) {
    const std::filesystem::path dir =
        path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) {
        // Each missing directory is made 0700 by mkdir itself: create_directories would use 0777 & ~umask
        // and leave a window (wide open under umask 0000) before a chmod.
        std::filesystem::path partial;
        for (const auto& part : dir) {
            partial /= part;
            if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
                return io_error(partial, "cannot create the directory");
            }
        }
    }
    return {};
}

// check_existing refuses what write_credentials_file would refuse to rewrite: a file that is not a regular
// file, or one that group or others may access.
Result<void> check_existing(const std::filesystem::path& path, const struct stat& st) {
    if (!S_ISREG(st.st_mode)) {
        return make_error(Errc::input_invalid, path.string() + ": not a regular file");
    }
    if ((st.st_mode & 0077) != 0) {
        char octal[8];
        std::snprintf(octal, sizeof octal, "%03o", static_cast<unsigned>(st.st_mode & 0777));
        return make_error(
            Errc::unsafe_permissions,
            path.string() + ": readable or writable by group or others (mode " + octal + "); chmod 600 it");
    }
    return {};
}

}  // namespace

Result<void> check_credentials_file_writable(const std::filesystem::path& path) {
    if (auto r = ensure_directory_of(path); !r) {
        return r;
    }
    // Taking the writers' lock creates a file in the directory (and removes it again): the proof that a write
    // could create its temporary file there.
    auto lock = WriterLock::take(path);
    if (!lock) {
        return lock.error();
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        return check_existing(path, st);
    }
    if (errno != ENOENT) {
        return io_error(path, "cannot stat");
    }
    return {};
}

Result<void> write_credentials_file(const std::filesystem::path& path,
                                    std::string_view profile,
                                    const signer::Credentials& credentials) {
    if (auto r = ensure_directory_of(path); !r) {
        return r;
    }

    // Writers serialise on a lock file beside the credentials file (not on that file, which rename()
    // replaces); it is gone again when this returns.
    auto lock = WriterLock::take(path);
    if (!lock) {
        return lock.error();
    }

    remove_stale_temporaries(path);

    Secret old;
    mode_t mode = 0600;
    UniqueFd current(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (current.valid()) {
        struct stat st {};
        if (::fstat(current.get(), &st) != 0) {
            return io_error(path, "cannot stat");
        }
        if (auto r = check_existing(path, st); !r) {
            return r;
        }
        mode = st.st_mode & 0700;
        std::string& buffer = old.reveal_mutable();
        char chunk[8192];
        for (;;) {
            const ssize_t n = ::read(current.get(), chunk, sizeof chunk);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                return io_error(path, "cannot read");
            }
            if (n == 0) {
                break;
            }
            buffer.append(chunk, static_cast<std::size_t>(n));
            if (buffer.size() > 16 * 1024 * 1024) {
                return make_error(Errc::input_invalid, path.string() + ": larger than 16 MiB");
            }
        }
        explicit_bzero(chunk, sizeof chunk);
    } else if (errno != ENOENT) {
        return io_error(path, "cannot open");
    }

    const Secret updated = edit_credentials_file(old.reveal(), profile, credentials);

    return replace_file_atomically(path, updated.reveal(), mode);
}

Result<void> replace_file_atomically(const std::filesystem::path& path, std::string_view data, mode_t mode) {
    const std::filesystem::path dir =
        path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    // A unique temporary name in the same directory, so that rename() is atomic.
    std::random_device random;
    std::filesystem::path temp;
    UniqueFd out;
    for (int attempt = 0; attempt < 16 && !out.valid(); ++attempt) {
        temp = path.string() + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(random());
        out.reset(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
        if (!out.valid() && errno != EEXIST) {
            return io_error(temp, "cannot create the temporary file");
        }
    }
    if (!out.valid()) {
        return io_error(temp, "cannot create the temporary file");
    }
    auto fail = [&](Error error) -> Result<void> {
        ::unlink(temp.c_str());
        return error;
    };
    if (auto r = write_all(out.get(), data, temp); !r) {
        return fail(r.error());
    }
    if (::fsync(out.get()) != 0) {
        return fail(io_error(temp, "cannot fsync"));
    }
    if (::rename(temp.c_str(), path.c_str()) != 0) {
        return fail(io_error(path, "cannot rename the temporary file over"));
    }
    UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd.valid() || ::fsync(dir_fd.get()) != 0) {
        return io_error(dir, "cannot fsync the directory");
    }
    return {};
}

}  // namespace rad::surfaces
