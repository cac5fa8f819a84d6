#include "daemon/control/control_protocol.hpp"

#include <charconv>

namespace rad::control {

namespace {

Error protocol_error(std::string what) {
    return make_error(Errc::upstream_malformed, "agent socket: " + what);
}

bool valid_profile_name(std::string_view name) {
    return !name.empty() && name.size() <= 64 &&
           name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
               std::string_view::npos;
}

std::string_view strip_newline(std::string_view line) {
    if (line.ends_with('\n')) {
        line.remove_suffix(1);
    }
    return line;
}

}  // namespace

Result<ControlRequest> parse_control_request(std::string_view line) {
    line = strip_newline(line);
    ControlRequest request;
    if (line == "status") {
        return request;
    }
    if (line == "reload") {
        request.kind = ControlRequest::Kind::reload;
        return request;
    }
    constexpr std::string_view kRefresh = "refresh ";
    if (line.starts_with(kRefresh)) {
        request.kind = ControlRequest::Kind::refresh;
        request.profile = std::string(line.substr(kRefresh.size()));
        if (!valid_profile_name(request.profile)) {
            return protocol_error("bad profile name");
        }
        return request;
    }
    constexpr std::string_view kCredentials = "credentials ";
    if (!line.starts_with(kCredentials)) {
        return protocol_error("unknown request");
    }
    line.remove_prefix(kCredentials.size());
    const auto space = line.find(' ');
    if (space == std::string_view::npos) {
        return protocol_error("credentials request without min-seconds");
    }
    request.kind = ControlRequest::Kind::credentials;
    request.profile = std::string(line.substr(0, space));
    if (!valid_profile_name(request.profile)) {
        return protocol_error("bad profile name");
    }
    std::string_view number = line.substr(space + 1);
    if (const auto next = number.find(' '); next != std::string_view::npos) {
        constexpr std::string_view kConfig = "config=";
        const std::string_view identity = number.substr(next + 1);
        number = number.substr(0, next);
        if (!identity.starts_with(kConfig) || identity.size() == kConfig.size() || identity.size() > 256 ||
            identity.find_first_not_of("0123456789:.", kConfig.size()) != std::string_view::npos) {
            return protocol_error("bad config identity");
        }
    }
    if (number == "default") {
        request.min_seconds = ControlRequest::kDefaultMinSeconds;
        return request;
    }
    const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), request.min_seconds);
    if (ec != std::errc() || end != number.data() + number.size() || request.min_seconds < 0 ||
        request.min_seconds > 43200) {
        return protocol_error("bad min-seconds");
    }
    return request;
}

std::string format_control_request(const ControlRequest& request) {
    if (request.kind == ControlRequest::Kind::status) {
        return "status\n";
    }
    if (request.kind == ControlRequest::Kind::reload) {
        return "reload\n";
    }
    if (request.kind == ControlRequest::Kind::refresh) {
        return "refresh " + request.profile + "\n";
    }
    const std::string min = request.min_seconds == ControlRequest::kDefaultMinSeconds
                                ? std::string("default")
                                : std::to_string(request.min_seconds);
    return "credentials " + request.profile + " " + min + "\n";
}

Secret format_ok_reply(std::string_view payload) {
    Secret reply;
    std::string& text = reply.reveal_mutable();
    text.reserve(payload.size() + 4);
    text.append("ok ").append(payload).push_back('\n');
    return reply;
}

std::string format_error_reply(const Error& error) {
    std::string message = error.message;
    for (char& c : message) {
        if (c == '\n' || c == '\r') {
            c = ' ';
        }
    }
    return std::string("error ") + errc_name(error.code) + " " + message + "\n";
}

Result<Secret> parse_control_reply(std::string_view line) {
    if (!line.ends_with('\n')) {
        return protocol_error("truncated reply");
    }
    line = strip_newline(line);
    if (line.starts_with("ok ")) {
        return Secret(line.substr(3));
    }
    if (line.starts_with("error ")) {
        line.remove_prefix(6);
        const auto space = line.find(' ');
        const std::string_view name = line.substr(0, space);
        const std::string_view message =
            space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
        return make_error(errc_from_name(name), "agent: " + std::string(message));
    }
    return protocol_error("unrecognised reply");
}

}  // namespace rad::control
