#pragma once
// Keys and certificates on PKCS#11 tokens (smart cards, HSMs, SoftHSM), named by RFC 7512 URIs. The module
// is loaded at run time (dlopen) and shared by every key that uses it. A token key never leaves the token:
// the PrivateKey returned here signs through C_Sign, and re-opens its session (and logs in again) once per
// signature when the token says the session, the login or the token itself went away. A PIN the token
// refused is never offered again by the same key: a new key must be loaded (new configuration).

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/file_read.hpp"
#include "common/secret.hpp"
#include "pki/certificate.hpp"
#include "pki/pkcs11_uri.hpp"
#include "pki/private_key.hpp"

namespace rad::pki {

// kDefaultPkcs11Module is p11-kit's proxy module, which loads the modules the system has registered.
inline constexpr std::string_view kDefaultPkcs11Module = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so";

// Pkcs11Options are the settings that are not part of a URI.
struct Pkcs11Options {
    // module: path of the PKCS#11 module; empty means kDefaultPkcs11Module. A URI's module-path wins.
    std::string module;
    // pin: the user PIN from the configuration (pin_file), used when the URI has no pin-value/pin-source.
    std::optional<Secret> pin;
    // reuse_pin: log in to CKA_ALWAYS_AUTHENTICATE keys (CKU_CONTEXT_SPECIFIC) with the user PIN.
    bool reuse_pin = false;
    // pin_file_policy applies to a URI's pin-source file.
    SecretFilePolicy pin_file_policy;
};

// TokenCertificate is a certificate found on a token, with the URI that names exactly that object.
struct TokenCertificate {
    Certificate certificate;
    std::string id;  // CKA_ID, raw bytes (may be empty)
    Pkcs11Uri uri;   // token identification + id + object + type=cert (no PIN)
    // module keeps the PKCS#11 module initialised while this value lives, so that loading the key next does
    // not finalise and initialise it again.
    std::shared_ptr<const void> module;
};

// load_pkcs11_certificate finds the one certificate `uri` names. The search is made without logging in
// first; when nothing is visible and a PIN is available, once more after C_Login. Errors name the URI (never
// the PIN): input_missing (module, token or certificate not found), usage (several tokens or several
// certificates match: the message says which attribute to add), config_invalid (PIN refused or locked).
[[nodiscard]] Result<TokenCertificate> load_pkcs11_certificate(const Pkcs11Uri& uri,
                                                               const Pkcs11Options& options);

// load_pkcs11_key finds the private key `uri` names (its object/id; when it names neither, the key with
// `id_hint`, the CKA_ID of a certificate found on the token, else any key) among those that belong to
// `certificate` (checked by a signature made on the token and verified with the certificate). Errors as
// load_pkcs11_certificate, plus key_cert_mismatch, unsupported_key and usage for several matching keys.
[[nodiscard]] Result<PrivateKey> load_pkcs11_key(const Pkcs11Uri& uri,
                                                 const Pkcs11Options& options,
                                                 const Certificate& certificate,
                                                 const std::optional<std::string>& id_hint);

// list_pkcs11_certificates returns every certificate on every token `uri` matches (read-certificate-data),
// logging in only when nothing is visible without it and exactly one token matches.
[[nodiscard]] Result<std::vector<TokenCertificate>> list_pkcs11_certificates(const Pkcs11Uri& uri,
                                                                             const Pkcs11Options& options);

}  // namespace rad::pki
