#include "daemon/log.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace rad::daemon {

namespace {

// sd-daemon(3) priorities: <7> debug, <6> info, <4> warning, <3> error.
const char* priority_prefix(config::LogLevel level) {
    switch (level) {
        case config::LogLevel::debug:
            return "<7>";
        case config::LogLevel::info:
            return "<6>";
        case config::LogLevel::warning:
            return "<4>";
        case config::LogLevel::error:
            return "<3>";
    }
    return "<6>";
}

const char* level_name(config::LogLevel level) {
    switch (level) {
        case config::LogLevel::debug:
            return "debug";
        case config::LogLevel::info:
            return "info";
        case config::LogLevel::warning:
            return "warning";
        case config::LogLevel::error:
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

}  // namespace

std::string format_log_line(config::LogLevel level,
                            config::LogFormat format,
                            std::string_view event,
                            std::initializer_list<LogField> fields) {
    if (format == config::LogFormat::json) {
        nlohmann::ordered_json doc;
        doc["level"] = level_name(level);
        doc["event"] = event;
        for (const auto& [key, value] : fields) {
            doc[std::string(key)] = value;
        }
        return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    std::string line = priority_prefix(level);
    line.append("event=");
    append_value(line, event);
    for (const auto& [key, value] : fields) {
        line.push_back(' ');
        line.append(key);
        line.push_back('=');
        append_value(line, value);
    }
    return line;
}

void Logger::log(config::LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
    if (!enabled(level)) {
        return;
    }
    std::string line = format_log_line(level, format_, event, fields);
    line.push_back('\n');
    std::lock_guard lock(mutex_);
    std::fwrite(line.data(), 1, line.size(), stream_);
    std::fflush(stream_);
}

}  // namespace rad::daemon
