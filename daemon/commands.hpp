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
#include "config/config.hpp"
#include "daemon/https_client.hpp"
#include "daemon/session_client.hpp"
#include "pki/identity.hpp"
#include "signer/create_session.hpp"
#include "signer/endpoint.hpp"

namespace rad::daemon {

// CredentialOptions are the flags of credential-process, serve and update: one profile, as a [profiles.NAME]
// table of the configuration file would describe it (credential-process leaves its surfaces empty).
struct CredentialOptions {
    config::ProfileConfig profile;
    bool with_proxy = false;  // accepted for compatibility: the proxy variables always apply
    bool debug = false;
};

struct SignStringOptions {
    config::IdentitySpec identity;
    std::string digest = "SHA256";
    std::string format = "json";
    bool debug = false;
};

struct ReadCertificateDataOptions {
    // Of the identity, read-certificate-data takes the certificate, the PKCS#11 module of a "pkcs11:" one
    // and the passphrase of a PKCS#12 one (from the same sources as credential-process).
    config::IdentitySpec identity;
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

// endpoint_options are the settings of a profile that choose the endpoint, as the signer takes them (no
// environment applied).
signer::EndpointOptions endpoint_options(const config::ProfileConfig& profile);

// resolve_identity turns an IdentitySpec into what pki::load_identity reads: the passphrase, PIN and TPM
// password files read (as Secrets), the values handed over copied. check_validity_period is false only for
// commands that must describe an expired certificate too.
[[nodiscard]] Result<pki::IdentitySource> resolve_identity(const config::IdentitySpec& spec,
                                                           bool check_validity_period);

// prepare_session validates the profile's settings (ARNs, duration, timeouts), resolves the endpoint and
// loads the identity, in that order, so that usage errors come before file errors. Its messages name the
// command line's flags: the configuration file's own checks have run before a profile of it gets here.
[[nodiscard]] Result<PreparedSession> prepare_session(const config::ProfileConfig& profile,
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
