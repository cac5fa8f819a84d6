#pragma once
// The one-shot commands of the command line, compatible with aws_signing_helper 1.8.0 (docs/protocol.md
// §7). Each takes parsed options, writes its result to `out` and returns a Result; main() turns an Error into
// one line on stderr and a sysexits code. Argument parsing lives in cli.cpp.

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "common/error.hpp"
#include "common/secret.hpp"
#include "daemon/https_client.hpp"
#include "daemon/session_client.hpp"
#include "pki/identity.hpp"
#include "signer/create_session.hpp"
#include "signer/endpoint.hpp"

namespace rad::daemon {

// IdentityOptions are the flags that name the certificate, key and passphrase.
struct IdentityOptions {
    std::string certificate;
    std::string private_key;
    std::string intermediates;
    // At most one passphrase source is set (the parser enforces it).
    std::optional<Secret> pkcs8_password;  // --pkcs8-password (compatibility; argv is scrubbed by main)
    std::string pkcs8_password_file;       // --pkcs8-password-file
    std::string pkcs8_password_env;        // --pkcs8-password-env NAME
    bool allow_insecure_key_permissions = false;
    // PKCS#11 (certificate or key given as a "pkcs11:" URI): --pkcs11-lib (empty: p11-kit's proxy),
    // --reuse-pin, and the configuration's pin_file (the command line puts the PIN in the URI).
    std::string pkcs11_lib;
    std::string pin_file;
    bool reuse_pin = false;
    // TPM (--private-key handle:0x81xxxxxx or a TSS2 PRIVATE KEY file): --tpm-tcti (empty: /dev/tpmrm0), the
    // key password from --tpm-key-password (compatibility; argv is scrubbed by main) or
    // --tpm-key-password-file, --no-tpm-key-password (the reference helper's way to say "none"), and
    // --tpm-parent-password-file.
    std::string tpm_tcti;
    std::optional<Secret> tpm_key_password;
    std::string tpm_key_password_file;
    bool no_tpm_key_password = false;
    std::string tpm_parent_password_file;
    // OS certificate store flags, accepted for compatibility; they are errors on Linux.
    std::string cert_selector;
    std::string system_store_name;
    bool use_latest_expiring_certificate = false;
};

// CredentialOptions are the flags of credential-process (and later serve/update).
struct CredentialOptions {
    IdentityOptions identity;
    std::string role_arn, profile_arn, trust_anchor_arn;
    int session_duration = 3600;
    std::string role_session_name;
    std::string region;
    std::string endpoint;
    bool use_fips_endpoint = false;
    bool no_verify_ssl = false;
    bool with_proxy = false;
    std::string ca_bundle;
    double connect_timeout_seconds = 5;
    double timeout_seconds = 20;
    bool debug = false;
};

struct SignStringOptions {
    IdentityOptions identity;
    std::string digest = "SHA256";
    std::string format = "json";
    bool debug = false;
};

struct ReadCertificateDataOptions {
    std::string certificate;
    std::string pkcs11_lib;  // for a "pkcs11:" --certificate
    // The passphrase of a PKCS#12 --certificate, from at most one source as for credential-process.
    std::optional<Secret> pkcs8_password;
    std::string pkcs8_password_file;
    std::string pkcs8_password_env;
    bool allow_insecure_key_permissions = false;
    std::string cert_selector;
    std::string system_store_name;
    bool debug = false;
};

// Diagnostics receives --debug lines and warnings (stderr in production). It never gets secrets.
struct Diagnostics {
    bool debug = false;
    std::FILE* stream = stderr;
    void warn(const std::string& line) const;
    void trace(const std::string& line) const;  // only with --debug
};

// PreparedSession is everything CreateSession needs, checked and loaded once: the identity (key parsed and
// matched to the leaf), the endpoint, the request parameters and the transport options. credential-process
// prepares one per run; the agent one per profile, again whenever the certificate or key files change.
struct PreparedSession {
    pki::Identity identity;
    signer::ResolvedEndpoint endpoint;
    signer::CreateSessionParams params;
    HttpsClientOptions client;
};

// endpoint_options are the flags that choose the endpoint, as the signer takes them (no environment applied).
signer::EndpointOptions endpoint_options(const CredentialOptions& options);

// prepare_session validates the flags (ARNs, duration, timeouts), resolves the endpoint and loads the
// identity, in that order, so that usage errors come before file errors.
[[nodiscard]] Result<PreparedSession> prepare_session(const CredentialOptions& options,
                                                      const Diagnostics& diag);

// production_hooks are the SessionClientHooks of the real world: send_request() over the network with
// `client` (borrowed: it must outlive the hooks), the system clock, a sleeping thread, a seeded PRNG, and
// --debug lines for failed attempts.
SessionClientHooks production_hooks(const HttpsClientOptions& client, const Diagnostics& diag);

[[nodiscard]] Result<void> run_credential_process(const CredentialOptions& options,
                                                  std::FILE* out,
                                                  const Diagnostics& diag);
[[nodiscard]] Result<void> run_sign_string(const SignStringOptions& options,
                                           std::FILE* out,
                                           const Diagnostics& diag);
[[nodiscard]] Result<void> run_read_certificate_data(const ReadCertificateDataOptions& options,
                                                     std::FILE* out,
                                                     const Diagnostics& diag);

// kVersion is the agent's version string.
extern const char* const kVersion;

}  // namespace rad::daemon
