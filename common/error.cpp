#include "common/error.hpp"

namespace rad {

bool is_retryable(Errc code) noexcept {
    switch (code) {
        case Errc::upstream_unreachable:
        case Errc::upstream_timeout:
        case Errc::upstream_throttled:
        case Errc::upstream_server_error:
        case Errc::upstream_tls:
        case Errc::upstream_malformed:
        case Errc::device_unavailable:
            return true;
        default:
            return false;
    }
}

int exit_code(Errc code) noexcept {
    // sysexits.h values, spelled out so that the table in README.md can be checked against this one.
    switch (code) {
        case Errc::usage:
            return 64;
        case Errc::input_invalid:
        case Errc::wrong_passphrase:
        case Errc::key_cert_mismatch:
        case Errc::certificate_invalid:
        case Errc::certificate_expired:
        case Errc::unsupported_key:
            return 65;
        case Errc::input_missing:
            return 66;
        case Errc::upstream_tls:
        case Errc::upstream_malformed:
        case Errc::agent_unavailable:
        case Errc::device_unavailable:
            return 69;
        case Errc::crypto_failure:
        case Errc::internal:
            return 70;
        case Errc::upstream_unreachable:
        case Errc::upstream_timeout:
        case Errc::upstream_throttled:
        case Errc::upstream_server_error:
            return 75;
        case Errc::unsafe_permissions:
        case Errc::upstream_rejected:
        case Errc::device_auth_failed:
        case Errc::peer_refused:
            return 77;
        case Errc::config_invalid:
            return 78;
    }
    return 70;
}

const char* errc_name(Errc code) noexcept {
    switch (code) {
        case Errc::usage:
            return "usage";
        case Errc::input_missing:
            return "input_missing";
        case Errc::input_invalid:
            return "input_invalid";
        case Errc::wrong_passphrase:
            return "wrong_passphrase";
        case Errc::unsafe_permissions:
            return "unsafe_permissions";
        case Errc::key_cert_mismatch:
            return "key_cert_mismatch";
        case Errc::certificate_invalid:
            return "certificate_invalid";
        case Errc::certificate_expired:
            return "certificate_expired";
        case Errc::unsupported_key:
            return "unsupported_key";
        case Errc::config_invalid:
            return "config_invalid";
        case Errc::crypto_failure:
            return "crypto_failure";
        case Errc::upstream_unreachable:
            return "upstream_unreachable";
        case Errc::upstream_timeout:
            return "upstream_timeout";
        case Errc::upstream_throttled:
            return "upstream_throttled";
        case Errc::upstream_server_error:
            return "upstream_server_error";
        case Errc::upstream_tls:
            return "upstream_tls";
        case Errc::upstream_malformed:
            return "upstream_malformed";
        case Errc::upstream_rejected:
            return "upstream_rejected";
        case Errc::agent_unavailable:
            return "agent_unavailable";
        case Errc::device_unavailable:
            return "device_unavailable";
        case Errc::device_auth_failed:
            return "device_auth_failed";
        case Errc::peer_refused:
            return "peer_refused";
        case Errc::internal:
            return "internal";
    }
    return "internal";
}

void throw_exception_from_error(const Error& error, const boost::source_location&) {
    throw ResultError(error);
}

}  // namespace rad
