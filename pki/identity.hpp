#pragma once
// Identity is what signs a CreateSession request: the leaf certificate, the intermediates sent along, and the
// private key of the leaf. load_identity runs every local check before anything goes on the wire.

#include <filesystem>
#include <optional>
#include <vector>

#include "common/error.hpp"
#include "common/file_read.hpp"
#include "common/secret.hpp"
#include "pki/certificate.hpp"
#include "pki/private_key.hpp"
#include "pki/tpm_key.hpp"

namespace rad::pki {

struct Identity {
    Certificate leaf;
    // chain is sent as X-Amz-X509-Chain, in this order (file order for --intermediates).
    std::vector<Certificate> chain;
    PrivateKey key;
};

// IdentitySource says where the identity comes from, as the command-line flags (or config) name it.
struct IdentitySource {
    // certificate: PEM or DER leaf, or a PKCS#12 bundle (.p12/.pfx, detected by content).
    std::filesystem::path certificate;
    // private_key: PEM key file. Empty: the key is taken from the certificate file (combined PEM or PKCS#12).
    std::filesystem::path private_key;
    // intermediates: PEM bundle. Not allowed together with a PKCS#12 certificate (its chain is used).
    std::filesystem::path intermediates;
    // passphrase decrypts an encrypted PKCS#8 key or the PKCS#12 bundle; nullopt when none was given
    // (a PKCS#12 file is then tried with the empty password).
    std::optional<Secret> passphrase;
    SecretFilePolicy key_file_policy;
    // check_validity_period: false only for read-certificate-data, which must describe expired certs too.
    bool check_validity_period = true;
    // PKCS#11, used when certificate or private_key is a "pkcs11:" URI (pki/pkcs11.hpp): the module (empty:
    // p11-kit's proxy), the user PIN when the URI carries none, and whether it also serves
    // CKA_ALWAYS_AUTHENTICATE keys. A token key needs no private_key: the URI of a token certificate is used.
    std::string pkcs11_module;
    std::optional<Secret> pin;
    bool reuse_pin = false;
    // TPM, used when private_key is "handle:0x81xxxxxx" or a file holding a TSS2 PRIVATE KEY
    // (pki/tpm_key.hpp): the TCTI and the key and parent passwords.
    TpmKeyOptions tpm;
};

// load_identity loads and checks: files readable (or token objects found), formats, passphrase, supported
// key, leaf rules (check_leaf at `now`), key matches the leaf, chain in issuer order. The first failure is
// returned.
[[nodiscard]] Result<Identity> load_identity(const IdentitySource& source, SystemTime now);

// load_private_key loads source.private_key alone: a TPM handle, a TSS2 PRIVATE KEY file (read without the
// secret-file rules: the blob is only usable inside its TPM) or a PEM key file (with source.passphrase).
// Errors as PrivateKey::load, load_tpm_handle_key and load_tss2_key.
[[nodiscard]] Result<PrivateKey> load_private_key(const IdentitySource& source);

// load_leaf_certificate reads the certificate that source.certificate names, for read-certificate-data: the
// first certificate of a PEM file, a DER file, or the leaf of a PKCS#12 bundle opened with
// source.passphrase (read under the secret-file rules of source.key_file_policy, since it holds the key).
// No leaf rule or validity check. Errors as load_certificate and load_identity's PKCS#12 errors.
[[nodiscard]] Result<Certificate> load_leaf_certificate(const IdentitySource& source);

// is_pkcs12 is true when `bytes` look like a DER PKCS#12 PFX (used to route --certificate).
bool is_pkcs12(std::string_view bytes);

}  // namespace rad::pki
