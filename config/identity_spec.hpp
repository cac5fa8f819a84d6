#pragma once
// IdentitySpec is what a user says about an identity: where its certificate, key and intermediates are, and
// where their secrets come from. The configuration file ([profiles.NAME]) and the command-line flags both
// produce one; the daemon resolves it, in one place, into the key material pki/ loads. Nothing here has been
// read: a path is a path (or a "pkcs11:" URI, or a TPM "handle:"), and only the secrets the user handed over
// directly (a flag's value, an environment variable) are held, already in memory.

#include <filesystem>
#include <memory>
#include <string>

#include "common/secret.hpp"

namespace rad::config {

struct IdentitySpec {
    // certificate: PEM or DER leaf, combined PEM, PKCS#12 bundle, or "pkcs11:" URI. private_key: key file,
    // "pkcs11:" URI, TPM "handle:0x81xxxxxx" or TSS2 PRIVATE KEY file; empty: taken from the certificate.
    std::filesystem::path certificate, private_key, intermediates;
    // The passphrase of an encrypted PKCS#8 key or of a PKCS#12 bundle: a file, or a value the command line
    // handed over (--pkcs8-password or --pkcs8-password-env; never read from the configuration file). An
    // empty value means no passphrase.
    std::filesystem::path passphrase_file;
    std::shared_ptr<const Secret> passphrase;
    bool allow_insecure_key_permissions = false;
    // PKCS#11: the module (empty: p11-kit's proxy), the user PIN's file when the URI carries none, and
    // whether that PIN also logs in to CKA_ALWAYS_AUTHENTICATE keys.
    std::filesystem::path pkcs11_lib, pin_file;
    bool reuse_pin = false;
    // TPM: the tpm2-tss TCTI (empty: device:/dev/tpmrm0), the key's password (a file, or the value of
    // --tpm-key-password) and its parent's password file.
    std::string tpm_tcti;
    std::filesystem::path tpm_key_password_file, tpm_parent_password_file;
    std::shared_ptr<const Secret> tpm_key_password;

    // same_as compares every field, secrets by content (a reload that changes only a passphrase value
    // still prepares the identity again).
    bool same_as(const IdentitySpec& other) const;
};

}  // namespace rad::config
