#pragma once
// Plain data for the agent's local HTTP surfaces (IMDS, container endpoint, health). The Beast server turns
// wire requests into SurfaceRequest and SurfaceResponse back into bytes; everything in between is a pure
// function, tested without sockets.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/secret.hpp"

namespace rad::surfaces {

struct SurfaceRequest {
    std::string method;  // "GET", "PUT", ...
    std::string target;  // path and query as sent ("/latest/api/token")
    // headers as received; names are compared case-insensitively by header().
    std::vector<std::pair<std::string, std::string>> headers;
    // header returns the first value of `name` (case-insensitive), or nullptr.
    const std::string* header(std::string_view name) const;
    // count returns how many times `name` occurs.
    std::size_t count(std::string_view name) const;
};

struct SurfaceResponse {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    // body may hold credentials: a Secret, wiped once written.
    Secret body;
    // set_header replaces the value of a header of that name (case-insensitive), or appends one.
    void set_header(std::string name, std::string value);
    const std::string* header(std::string_view name) const;
};

// iequals compares ASCII strings case-insensitively.
bool iequals(std::string_view a, std::string_view b) noexcept;

}  // namespace rad::surfaces
