#pragma once
// TPM 2.0 keys: a persistent key named by its handle ("handle:0x81000002") or a key blob in a "TSS2 PRIVATE
// KEY" PEM file (the format of tpm2-openssl, tpm2-tss-engine and tpm2_encodeobject). The private key never
// leaves the TPM. The result is an ordinary PrivateKey: its public half is known in memory (for matches(),
// description() and sign-string), and every sign() talks to the TPM through the TSS ESAPI.
//
// Each signature opens its own connection to the TPM, loads what it needs (the storage primary of a
// hierarchy parent, then the key blob), signs, flushes every transient object it created and disconnects.
// Nothing stays loaded between signatures, so a TPM (or swtpm, or resource manager) that restarted is used
// again at the next signature without any recovery logic, and no transient handle outlives a signature.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/secret.hpp"
#include "pki/private_key.hpp"

namespace rad::pki {

// kDefaultTcti is the TPM used when none is configured: the kernel's resource manager.
inline constexpr std::string_view kDefaultTcti = "device:/dev/tpmrm0";

struct TpmKeyOptions {
    // tcti is a tpm2-tss TCTI configuration ("device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=2321",
    // "tabrmd:bus_type=system"). Empty: $TPM_DEVICE as a device node when set (the reference helper's
    // variable), else kDefaultTcti.
    std::string tcti;
    // key_password is the key's authorization value; nullopt for a key without one (emptyAuth).
    std::optional<Secret> key_password;
    // parent_password authorizes the parent: the persistent parent key, or the hierarchy (owner, endorsement,
    // platform) under which the storage primary is created. nullopt: empty authorization.
    std::optional<Secret> parent_password;

    TpmKeyOptions clone() const;
};

// is_tpm_handle_reference is true for a "handle:" key reference.
bool is_tpm_handle_reference(std::string_view reference) noexcept;

// is_tss2_private_key is true when `contents` holds a "-----BEGIN TSS2 PRIVATE KEY-----" line.
bool is_tss2_private_key(std::string_view contents) noexcept;

// resolve_tcti applies the defaults of TpmKeyOptions::tcti to `configured`.
std::string resolve_tcti(std::string_view configured);

// load_tpm_handle_key reads the public area of the persistent key named by `reference` ("handle:0x81xxxxxx",
// hexadecimal) from the TPM. Errors: usage (malformed reference or not a persistent handle, password too
// long), input_missing (no object at that handle), unsupported_key (not a signing key, a restricted key,
// an unsupported algorithm, scheme or size), device_unavailable (the TPM cannot be reached).
[[nodiscard]] Result<PrivateKey> load_tpm_handle_key(std::string_view reference,
                                                     const TpmKeyOptions& options);

// load_tss2_key parses a TSS2 PRIVATE KEY PEM (a loadable key, OID 2.23.133.10.1.3) without touching the TPM:
// the parent must be a persistent handle or the owner, endorsement, platform or null hierarchy (whose
// storage primary is the standard ECC P-256 template of tpm2-openssl and the reference helper). Errors name
// `origin`: input_invalid (malformed, importable or sealed key, policies, unknown parent), unsupported_key,
// usage (password too long). The file's emptyAuth flag is not enforced (tpm2-tools 5.4 writes it inverted):
// a wrong or missing password is reported by sign() as device_auth_failed.
[[nodiscard]] Result<PrivateKey> load_tss2_key(std::string_view pem,
                                               std::string_view origin,
                                               const TpmKeyOptions& options);

}  // namespace rad::pki
