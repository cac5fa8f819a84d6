#pragma once
// Error values shared by every module. A failure is classified where it happens: its Errc says what went
// wrong, whether trying again later can help (is_retryable) and which sysexits code the CLI exits with.

#include <boost/assert/source_location.hpp>
#include <boost/system/result.hpp>
#include <chrono>
#include <span>
#include <string>
#include <string_view>

namespace rad {

// Errc is the class of a failure. The comments give the exit code of the command line (see exit_code()).
enum class Errc {
    usage = 1,            // 64 EX_USAGE: a flag is missing, unknown, malformed or conflicts with another
    input_missing,        // 66 EX_NOINPUT: a named file does not exist or cannot be read
    input_invalid,        // 65 EX_DATAERR: a file is not PEM/DER/PKCS#12, is truncated, too large, ...
    wrong_passphrase,     // 65 EX_DATAERR: an encrypted key or PKCS#12 file did not decrypt
    unsafe_permissions,   // 77 EX_NOPERM: a secret file is readable by group/others, a symlink, not ours
    key_cert_mismatch,    // 65 EX_DATAERR: the private key is not the key of the leaf certificate
    certificate_invalid,  // 65 EX_DATAERR: leaf not v3, a CA, lacks digitalSignature, chain out of order
    certificate_expired,  // 65 EX_DATAERR: leaf past its notAfter
    certificate_not_yet_valid,  // 65 EX_DATAERR: leaf before its notBefore (a clock behind, or a leaf
                                // issued with a start date ahead)
    unsupported_key,            // 65 EX_DATAERR: RSA < 2048 bits, a curve other than P-256/384/521, Ed25519
    config_invalid,             // 78 EX_CONFIG: the configuration file is wrong
    crypto_failure,             // 70 EX_SOFTWARE: OpenSSL failed where it should not
    upstream_unreachable,       // 75 EX_TEMPFAIL, retryable: DNS, connect, reset, proxy refused
    upstream_timeout,           // 75 EX_TEMPFAIL, retryable: connect, TLS or total deadline passed
    upstream_throttled,         // 75 EX_TEMPFAIL, retryable: HTTP 429 or a Throttling* error code
    upstream_server_error,      // 75 EX_TEMPFAIL, retryable: HTTP 5xx
    upstream_tls,           // 69 EX_UNAVAILABLE, retryable: handshake failed, untrusted or wrong-host cert
    upstream_malformed,     // 69 EX_UNAVAILABLE, retryable: an answer that is not valid CreateSession output
    upstream_rejected,      // 77 EX_NOPERM, not retryable: 400/403/404, e.g. AccessDeniedException
    agent_unavailable,      // 69 EX_UNAVAILABLE: no agent answers on its socket (and no fallback allowed)
    device_unavailable,     // 69 EX_UNAVAILABLE, retryable: a TPM or PKCS#11 token cannot be reached
    device_auth_failed,     // 77 EX_NOPERM: a TPM or token refused a password/PIN, or is locked out (never
                            // retried)
    peer_refused,           // 77 EX_NOPERM: the agent's socket refused this user (allowed_uids/allowed_gids)
    credentials_too_short,  // 69 EX_UNAVAILABLE: the service's credentials leave too little time to be served
                            // (a session cut short, or this host's clock ahead of the service's)
    internal,               // 70 EX_SOFTWARE (stays last: the table in error.cpp ends with it)
};

// Error is a failure with a one-line, human-readable message. The message names the file, flag or field
// and what is wrong; it never contains a secret, a token or a response body.
struct Error {
    Errc code = Errc::internal;
    std::string message;
    // retry_after is the server's Retry-After hint (zero when absent); meaningful for upstream_throttled.
    std::chrono::seconds retry_after{0};
};

// Result<T> holds a T or an Error. Functions returning it are [[nodiscard]] at their declaration.
template <class T>
using Result = boost::system::result<T, Error>;

// make_error builds an Error value; `return make_error(Errc::input_missing, "...")` converts to any Result.
inline Error make_error(Errc code, std::string message) {
    return Error{code, std::move(message), {}};
}

// ErrcRow is what the project knows about one Errc; kErrcTable in error.cpp holds one row per Errc, and the
// four functions below read it and nothing else.
struct ErrcRow {
    Errc code;
    const char* name;  // stable snake_case, for logs, JSON and the agent's socket (e.g. "upstream_throttled")
    int exit_code;     // the sysexits(3) code of the command line (documented in README.md)
    bool retryable;    // the failure may go away by itself (network, throttling, 5xx, a device)
};

// errc_table is every row, in the order of the enum.
std::span<const ErrcRow> errc_table() noexcept;

// is_retryable is true for failures that may go away by themselves (network, throttling, 5xx).
bool is_retryable(Errc code) noexcept;

// exit_code maps an Errc to the sysexits(3) code the command line exits with (documented in README.md).
int exit_code(Errc code) noexcept;

// errc_name is a stable snake_case name for logs and JSON (e.g. "upstream_throttled").
const char* errc_name(Errc code) noexcept;

// errc_from_name is the inverse of errc_name(); unknown names map to Errc::internal.
Errc errc_from_name(std::string_view name) noexcept;

// ResultError is what Result<T>::value() throws when it holds an Error. Only main() catches it.
class ResultError : public std::runtime_error {
public:
    explicit ResultError(Error error) : std::runtime_error(error.message), error_(std::move(error)) {}
    const Error& error() const noexcept { return error_; }

private:
    Error error_;
};

// throw_exception_from_error is found by ADL from boost::system::result<T, Error>::value().
[[noreturn]] void throw_exception_from_error(const Error& error, const boost::source_location& location);

}  // namespace rad
