#pragma once
// Timestamp formats of the protocols: X-Amz-Date (basic ISO 8601), the SDKs' Expiration (extended ISO 8601
// in UTC with a Z and no fraction), and parsing of the service's RFC 3339 expiration.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace rad {

using SystemTime = std::chrono::system_clock::time_point;

// format_amz_date gives "YYYYMMDDTHHMMSSZ" (UTC), the X-Amz-Date header value.
std::string format_amz_date(SystemTime t);

// format_date_stamp gives "YYYYMMDD" (UTC), the date part of the SigV4 credential scope.
std::string format_date_stamp(SystemTime t);

// format_iso8601 gives "YYYY-MM-DDTHH:MM:SSZ" (UTC, seconds truncated): the one Expiration format every SDK
// parses without side effects (docs/clients.md §2.6).
std::string format_iso8601(SystemTime t);

// format_rfc3339_ms gives "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC, truncated to the millisecond): log timestamps.
std::string format_rfc3339_ms(SystemTime t);

// parse_rfc3339 accepts "YYYY-MM-DDTHH:MM:SS[.fraction](Z|z|±HH:MM)" and returns the instant, or nullopt
// for anything else (including out-of-range fields, and instants system_clock cannot hold: before 1678 or
// after 2262). Fractions are truncated to whole seconds.
std::optional<SystemTime> parse_rfc3339(std::string_view text);

}  // namespace rad
