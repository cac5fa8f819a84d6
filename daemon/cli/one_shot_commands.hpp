#pragma once
// The one-shot commands of the command line, compatible with aws_signing_helper 1.8.0 (docs/protocol.md
// §7): credential-process, sign-string and read-certificate-data. Each takes parsed options, writes its
// result to `out` and returns a Result; main() turns an Error into one line on stderr and a sysexits code.
// Argument parsing lives in cli.cpp.

#include <cstdio>
#include <string>

#include "common/error.hpp"
#include "common/log.hpp"
#include "config/config.hpp"
#include "daemon/upstream/prepared_session.hpp"

namespace rad::cli {

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

// Each writes its --debug lines and warnings to `log` (the terminal's format, on stderr).
[[nodiscard]] Result<void> run_credential_process(const CredentialOptions& options,
                                                  std::FILE* out,
                                                  Logger& log);
[[nodiscard]] Result<void> run_sign_string(const SignStringOptions& options, std::FILE* out, Logger& log);
[[nodiscard]] Result<void> run_read_certificate_data(const ReadCertificateDataOptions& options,
                                                     std::FILE* out,
                                                     Logger& log);

}  // namespace rad::cli
