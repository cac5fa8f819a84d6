#pragma once
// Logger writes one line per event on stderr: `key=value` pairs behind an sd-daemon "<N>" priority prefix
// (journald turns it into the entry's priority), or one JSON object per line with --log-format json; for a
// person at a terminal, "rolesanywhere-agent: LEVEL: event key=value ...". It is the one logger of the
// program: the agent's, and the one-shot commands' --debug lines and warnings. Outside the journal (stderr is
// not the stream systemd names in $JOURNAL_STREAM) a text or JSON line also carries its time: an RFC 3339 UTC
// timestamp with milliseconds in front of a text line, a "time" member in JSON; journald stamps its entries
// itself. Callers pass field values that are safe to log: access key ids only through redact_access_key_id(),
// never secrets, tokens or bodies. Thread-safe: the event loop and the thread that signs with a device key
// share one Logger, and the level may change (on reload) meanwhile.

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace rad {

// text and json are the agent's formats (config's log_format); terminal is for a command run by a person (the
// one-shot commands' --debug lines and warnings): "rolesanywhere-agent: warning: event key=value ...", no
// time.
enum class LogFormat { text, json, terminal };
enum class LogLevel { debug, info, warning, error };

// LogValue is a field's value: text, or an integer, a double or a boolean, which JSON lines write as JSON
// numbers and booleans (text lines write them as plain text: 418, 0.25, true). Its constructors are
// implicit so that {"retry_in", 418} and {"profile", name} both make a LogField.
class LogValue {
public:
    using Value = std::variant<std::string, std::int64_t, std::uint64_t, double, bool>;

    LogValue(std::string text) : value_(std::move(text)) {}
    LogValue(std::string_view text) : value_(std::string(text)) {}
    LogValue(const char* text) : value_(std::string(text)) {}
    template <std::signed_integral T>
    LogValue(T number) : value_(static_cast<std::int64_t>(number)) {}
    template <std::unsigned_integral T>
    requires(!std::same_as<T, bool>) LogValue(T number) : value_(static_cast<std::uint64_t>(number)) {}
    LogValue(double number) : value_(number) {}
    LogValue(bool flag) : value_(flag) {}

    const Value& value() const noexcept { return value_; }

private:
    Value value_;
};

using LogField = std::pair<std::string_view, LogValue>;
// LogFields are fields that own their keys, for a line built in one place and written in another (the
// agent's engine returns its log lines as commands).
using LogFields = std::vector<std::pair<std::string, LogValue>>;

class Logger {
public:
    // The stream's place is decided once, here: the journal when $JOURNAL_STREAM names fd `stream`.
    Logger(LogLevel level, LogFormat format, std::FILE* stream = stderr);

    void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields);
    void log(LogLevel level, std::string_view event, const LogFields& fields);
    void debug(std::string_view event, std::initializer_list<LogField> fields = {}) {
        log(LogLevel::debug, event, fields);
    }
    void info(std::string_view event, std::initializer_list<LogField> fields = {}) {
        log(LogLevel::info, event, fields);
    }
    void warning(std::string_view event, std::initializer_list<LogField> fields = {}) {
        log(LogLevel::warning, event, fields);
    }
    void error(std::string_view event, std::initializer_list<LogField> fields = {}) {
        log(LogLevel::error, event, fields);
    }
    bool enabled(LogLevel level) const noexcept { return level >= level_.load(std::memory_order_relaxed); }
    void set_level(LogLevel level) noexcept { level_.store(level, std::memory_order_relaxed); }

private:
    std::optional<std::chrono::system_clock::time_point> line_time() const;
    void write(std::string line);

    std::atomic<LogLevel> level_;
    const LogFormat format_;
    std::FILE* const stream_;
    const bool timestamps_;  // false when the stream is the journal's
    std::mutex mutex_;
};

// format_log_line renders one line (without the trailing newline) as Logger writes it; pure, for tests. With
// `time`, a text line starts with "YYYY-MM-DDTHH:MM:SS.mmmZ " and a JSON object with a "time" member.
std::string format_log_line(LogLevel level,
                            LogFormat format,
                            std::string_view event,
                            std::initializer_list<LogField> fields,
                            std::optional<std::chrono::system_clock::time_point> time = std::nullopt);
std::string format_log_line(LogLevel level,
                            LogFormat format,
                            std::string_view event,
                            const LogFields& fields,
                            std::optional<std::chrono::system_clock::time_point> time = std::nullopt);

// is_journal_stream says whether a stream with this device and inode is the one that $JOURNAL_STREAM
// ("DEVICE:INODE", both decimal, as systemd sets it) names.
bool is_journal_stream(std::string_view journal_stream, std::uint64_t device, std::uint64_t inode) noexcept;

}  // namespace rad
