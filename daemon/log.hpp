#pragma once
// Logger writes one line per event on stderr: `key=value` pairs behind an sd-daemon "<N>" priority prefix
// (journald turns it into the entry's priority), or one JSON object per line with --log-format json.
// Callers pass field values that are safe to log: access key ids only through redact_access_key_id(), never
// secrets, tokens or bodies. Thread-safe: refresh workers and the event loop share one Logger.

#include <cstdio>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "config/config.hpp"

namespace rad::daemon {

using LogField = std::pair<std::string_view, std::string>;

class Logger {
public:
    Logger(config::LogLevel level, config::LogFormat format, std::FILE* stream = stderr)
        : level_(level), format_(format), stream_(stream) {}

    void log(config::LogLevel level, std::string_view event, std::initializer_list<LogField> fields);
    void debug(std::string_view event, std::initializer_list<LogField> fields = {}) {
        log(config::LogLevel::debug, event, fields);
    }
    void info(std::string_view event, std::initializer_list<LogField> fields = {}) {
        log(config::LogLevel::info, event, fields);
    }
    void warning(std::string_view event, std::initializer_list<LogField> fields = {}) {
        log(config::LogLevel::warning, event, fields);
    }
    void error(std::string_view event, std::initializer_list<LogField> fields = {}) {
        log(config::LogLevel::error, event, fields);
    }
    bool enabled(config::LogLevel level) const noexcept { return level >= level_; }
    void set_level(config::LogLevel level) noexcept { level_ = level; }

private:
    config::LogLevel level_;
    config::LogFormat format_;
    std::FILE* stream_;
    std::mutex mutex_;
};

// format_log_line renders one line (without the trailing newline) as Logger writes it; pure, for tests.
std::string format_log_line(config::LogLevel level,
                            config::LogFormat format,
                            std::string_view event,
                            std::initializer_list<LogField> fields);

}  // namespace rad::daemon
