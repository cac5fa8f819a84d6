#include "common/error.hpp"

#include <iterator>

namespace rad {

namespace {

// One row per Errc, in the order of the enum (checked below). The exit codes are sysexits.h values spelled
// out, so that the table in README.md can be checked against this one.
constexpr ErrcRow kErrcTable[] = {
    {Errc::usage, "usage", 64, false},
    {Errc::input_missing, "input_missing", 66, false},
    {Errc::input_invalid, "input_invalid", 65, false},
    {Errc::wrong_passphrase, "wrong_passphrase", 65, false},
    {Errc::unsafe_permissions, "unsafe_permissions", 77, false},
    {Errc::key_cert_mismatch, "key_cert_mismatch", 65, false},
    {Errc::certificate_invalid, "certificate_invalid", 65, false},
    {Errc::certificate_expired, "certificate_expired", 65, false},
    {Errc::certificate_not_yet_valid, "certificate_not_yet_valid", 65, false},
    {Errc::unsupported_key, "unsupported_key", 65, false},
    {Errc::config_invalid, "config_invalid", 78, false},
    {Errc::crypto_failure, "crypto_failure", 70, false},
    {Errc::upstream_unreachable, "upstream_unreachable", 75, true},
    {Errc::upstream_timeout, "upstream_timeout", 75, true},
    {Errc::upstream_throttled, "upstream_throttled", 75, true},
    {Errc::upstream_server_error, "upstream_server_error", 75, true},
    {Errc::upstream_tls, "upstream_tls", 69, true},
    {Errc::upstream_malformed, "upstream_malformed", 69, true},
    {Errc::upstream_rejected, "upstream_rejected", 77, false},
    {Errc::agent_unavailable, "agent_unavailable", 69, false},
    {Errc::device_unavailable, "device_unavailable", 69, true},
    {Errc::device_auth_failed, "device_auth_failed", 77, false},
    {Errc::peer_refused, "peer_refused", 77, false},
    {Errc::credentials_too_short, "credentials_too_short", 69, false},
    {Errc::internal, "internal", 70, false},
};

constexpr bool rows_in_enum_order() {
    int expected = static_cast<int>(Errc::usage);
    for (const ErrcRow& row : kErrcTable) {
        if (static_cast<int>(row.code) != expected++) {
            return false;
        }
    }
    return expected == static_cast<int>(Errc::internal) + 1;
}
// Row i is Errc i, and Errc::internal (the last) ends the table: a lookup is an index.
static_assert(rows_in_enum_order(), "kErrcTable needs one row per Errc, in the order of the enum");

// row_of is the row of `code`; a value outside the enum reads as Errc::internal.
const ErrcRow& row_of(Errc code) noexcept {
    const int index = static_cast<int>(code) - static_cast<int>(Errc::usage);
    if (index < 0 || index >= static_cast<int>(std::size(kErrcTable))) {
        return kErrcTable[std::size(kErrcTable) - 1];
    }
    return kErrcTable[index];
}

}  // namespace

std::span<const ErrcRow> errc_table() noexcept {
    return kErrcTable;
}

bool is_retryable(Errc code) noexcept {
    return row_of(code).retryable;
}

int exit_code(Errc code) noexcept {
    return row_of(code).exit_code;
}

const char* errc_name(Errc code) noexcept {
    return row_of(code).name;
}

Errc errc_from_name(std::string_view name) noexcept {
    for (const ErrcRow& row : kErrcTable) {
        if (name == row.name) {
            return row.code;
        }
    }
    return Errc::internal;
}

void throw_exception_from_error(const Error& error, const boost::source_location&) {
    throw ResultError(error);
}

}  // namespace rad
