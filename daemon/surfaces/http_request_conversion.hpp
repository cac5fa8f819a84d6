#pragma once
// to_surface_request is the one conversion from a request the HTTP server has parsed to the SurfaceRequest
// its handlers see. The server (http_server.cpp) and the HTTP fuzz target both call it, so what the fuzzer
// checks is what the agent runs. It is a template over the parsed message so that this header stays free of
// Beast (scripts/check-layering keeps Beast in the two translation units that need it).

#include <string>

#include "daemon/surfaces/http_types.hpp"

namespace rad::surfaces {

// to_surface_request copies the method and target as sent, and every header field in order, names as sent,
// duplicates kept (the guard and the handlers judge them). The body is not carried. `Message` is a parsed
// boost::beast::http::request (method_string(), target(), and fields with name_string() and value()).
template <class Message>
SurfaceRequest to_surface_request(const Message& message) {
    SurfaceRequest request;
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    for (const auto& field : message) {
        request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    return request;
}

}  // namespace rad::surfaces
