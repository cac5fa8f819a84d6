#include "common/log.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "common/time_format.hpp"

namespace rad {

namespace {

// sd-daemon(3) priorities: <7> debug, <6> info, <4> warning, <3> error.
const char* priority_prefix(LogLevel level) {
    switch (level) {
        case LogLevel::debug:
            return "<7>";
        case LogLevel::info:
            return "<6>";
        case LogLevel::warning:
            return "<4>";
        case LogLevel::error:
            return "<3>";
    }
    return "<6>";
}

const char* level_name(LogLevel level) {
    switch (level) {
        case LogLevel::debug:
            return "debug";
        case LogLevel::info:
            return "info";
        case LogLevel::warning:
            return "warning";
        case LogLevel::error:
            return "error";
    }
    return "info";
}

// append_value quotes values with spaces, quotes, '=' or control characters; control characters become
// '?' so that one event is always one line.
void append_value(std::string& line, std::string_view value) {
    const bool plain = !value.empty() && value.find_first_of(" \"=\\") == std::string_view::npos &&
                       std::none_of(value.begin(), value.end(),
                                    [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
    if (plain) {
        line.append(value);
        return;
    }
    line.push_back('"');
    for (char c : value) {
        if (c == '"' || c == '\\') {
            line.push_back('\\');
            line.push_back(c);
        } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            line.push_back('?');
        } else {
            line.push_back(c);
        }
    }
    line.push_back('"');
}

// text_of renders a value for a text line: strings as they are, numbers in their shortest exact form.
std::string text_of(const LogValue& value) {
    return std::visit(
        [](const auto& v) -> std::string {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::string>) {
                return v;
            } else if constexpr (std::is_same_v<T, bool>) {
                return v ? "true" : "false";
            } else {
                char buf[32];
                const auto result = std::to_chars(buf, buf + sizeof buf, v);
                return std::string(buf, result.ptr);
            }
        },
        value.value());
}

nlohmann::ordered_json json_of(const LogValue& value) {
    return std::visit([](const auto& v) { return nlohmann::ordered_json(v); }, value.value());
}

// parse_decimal reads all of `text` as an unsigned decimal number (no sign, no blanks).
std::optional<std::uint64_t> parse_decimal(std::string_view text) {
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

// writes_to_journal is true when the stream is the journal's own: systemd connects stdout/stderr of a service
// to journald and names that socket in $JOURNAL_STREAM; a child whose stderr was redirected inherits the
// variable but not the stream, hence the comparison with fstat().
bool writes_to_journal(std::FILE* stream) {
    const char* journal_stream = std::getenv("JOURNAL_STREAM");
    struct stat st {};
    if (journal_stream == nullptr || stream == nullptr || ::fstat(::fileno(stream), &st) != 0) {
        return false;
    }
    return is_journal_stream(journal_stream, static_cast<std::uint64_t>(st.st_dev),
                             static_cast<std::uint64_t>(st.st_ino));
}

}  // namespace

bool is_journal_stream(std::string_view journal_stream, std::uint64_t device, std::uint64_t inode) noexcept {
    const std::size_t colon = journal_stream.find(':');
    if (colon == std::string_view::npos) {
        return false;
    }
    const auto stream_device = parse_decimal(journal_stream.substr(0, colon));
    const auto stream_inode = parse_decimal(journal_stream.substr(colon + 1));
    return stream_device == device && stream_inode == inode;
}

namespace {

template <class Fields>
std::string render_line(LogLevel level,
                        LogFormat format,
                        std::string_view event,
                        const Fields& fields,
                        std::optional<std::chrono::system_clock::time_point> time) {
    if (format == LogFormat::json) {
        nlohmann::ordered_json doc;
        if (time) {
            doc["time"] = format_rfc3339_ms(*time);
        }
        doc["level"] = level_name(level);
        doc["event"] = event;
        for (const auto& [key, value] : fields) {
            doc[std::string(key)] = json_of(value);
        }
        return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    std::string line;
    if (format == LogFormat::terminal) {
        line.append("rolesanywhere-agent: ").append(level_name(level)).append(": ");
        append_value(line, event);
    } else {
        // The timestamp goes first, where readers of a plain file look for it; "<N>" follows unchanged.
        line = time ? format_rfc3339_ms(*time) + " " : std::string();
        line.append(priority_prefix(level));
        line.append("event=");
        append_value(line, event);
    }
    for (const auto& [key, value] : fields) {
        line.push_back(' ');
        line.append(key);
        line.push_back('=');
        append_value(line, text_of(value));
    }
    return line;
}

}  // namespace

std::string format_log_line(LogLevel level,
                            LogFormat format,
                            std::string_view event,
                            std::initializer_list<LogField> fields,
                            std::optional<std::chrono::system_clock::time_point> time) {
    return render_line(level, format, event, fields, time);
}

std::string format_log_line(LogLevel level,
                            LogFormat format,
                            std::string_view event,
                            const LogFields& fields,
                            std::optional<std::chrono::system_clock::time_point> time) {
    return render_line(level, format, event, fields, time);
}

Logger::Logger(LogLevel level, LogFormat format, std::FILE* stream)
    : level_(level),
      format_(format),
      stream_(stream),
      timestamps_(format != LogFormat::terminal && !writes_to_journal(stream)) {}

void Logger::log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
    if (enabled(level)) {
        write(format_log_line(level, format_, event, fields, line_time()));
    }
}

void Logger::log(LogLevel level, std::string_view event, const LogFields& fields) {
    if (enabled(level)) {
        write(format_log_line(level, format_, event, fields, line_time()));
    }
}

std::optional<std::chrono::system_clock::time_point> Logger::line_time() const {
    return timestamps_ ? std::optional(std::chrono::system_clock::now()) : std::nullopt;
}

void Logger::write(std::string line) {
    line.push_back('\n');
    std::lock_guard lock(mutex_);
    std::fwrite(line.data(), 1, line.size(), stream_);
    std::fflush(stream_);
}

}  // namespace rad
