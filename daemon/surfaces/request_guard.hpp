#pragma once
// The checks every local surface applies before routing (docs/clients.md §2.9, docs/test-plan.md §6):
// requests that went through a proxy (X-Forwarded-For, Forwarded, Via), requests a browser made (Origin,
// Sec-Fetch-*), and Host values outside the allow-list (DNS rebinding) are refused.

#include <cstddef>
#include <optional>
#include <string_view>

#include "daemon/surfaces/http_types.hpp"

namespace rad::surfaces {

// host_allowed compares the host part of a Host header value (port ignored, IPv6 in brackets) with the
// allow-list: 127.0.0.1, localhost, [::1], 169.254.169.254 (IMDS), 169.254.170.2 (ECS).
bool host_allowed(std::string_view host_header) noexcept;

// kMaxRequestHeaderFields bounds the number of header fields of one request (431 above it): SDKs send about
// ten, and a thousand tiny fields fit under the 8 KiB header byte limit.
inline constexpr std::size_t kMaxRequestHeaderFields = 100;

// guard_request returns the refusal (400 for proxies, a target not in origin form ("/..."), a missing or
// repeated Host, or a request body (Transfer-Encoding, or Content-Length other than 0: no surface takes one);
// 431 for more than kMaxRequestHeaderFields fields; 403 for browsers and foreign hosts; with a short
// plain-text reason that never echoes the request) or nullopt when the request may be routed. Proxy headers
// refused: X-Forwarded-For, X-Forwarded-Host, X-Real-IP, Forwarded, Via. Browser headers refused: Origin,
// Sec-Fetch-*.
std::optional<SurfaceResponse> guard_request(const SurfaceRequest& request);

}  // namespace rad::surfaces
