#pragma once
// PrivateKey is the signing key of the leaf certificate, parsed once and held. It is backed by an OpenSSL
// EVP_PKEY, or by a KeyBackend for keys that never leave a device (PKCS#11 tokens).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/file_read.hpp"
#include "common/secret.hpp"
#include "pki/certificate.hpp"

typedef struct evp_pkey_st EVP_PKEY;  // NOLINT: OpenSSL's forward declaration

namespace rad::pki {

// Digest selects the hash of a signature. CreateSession always uses sha256; sign-string offers all three.
enum class Digest { sha256, sha384, sha512 };

// KeyBackend is a private key held outside the process (a PKCS#11 token). It knows its public half, which
// the backend has proven to be the key's own (e.g. from the certificate, checked with a test signature).
class KeyBackend {
public:
    virtual ~KeyBackend() = default;
    // public_key is the public half, borrowed: valid while the backend lives.
    virtual EVP_PKEY* public_key() const noexcept = 0;
    // location names where the key lives, for descriptions, e.g. "on PKCS#11 token \"rad\"".
    virtual std::string location() const = 0;
    // sign as PrivateKey::sign promises (PKCS#1 v1.5 or DER ECDSA over digest(message)).
    [[nodiscard]] virtual Result<std::vector<std::uint8_t>> sign(std::string_view message,
                                                                 Digest digest) const = 0;
};

class PrivateKey {
public:
    // load reads a PEM private key: PKCS#1 "RSA PRIVATE KEY", SEC1 "EC PRIVATE KEY", PKCS#8 "PRIVATE KEY"
    // (RSA, EC, or ML-DSA in any of the layouts OpenSSL 3.5 reads: seed, expanded key, or both) or encrypted
    // PKCS#8 "ENCRYPTED PRIVATE KEY" (PBES2 with PBKDF2-HMAC-SHA1/256/384/512 or scrypt,
    // AES-128/192/256-CBC), decrypted with `passphrase` (nullptr: none given). Where OpenSSL has no ML-DSA
    // (before 3.5) an ML-DSA key is unsupported_key with the ml_dsa_unavailable message. The file goes
    // through read_secret_file (permission rules) and its bytes are wiped after parsing. Errors name the
    // path: input_missing, unsafe_permissions, input_invalid (no key found), wrong_passphrase (including "the
    // key is encrypted and no passphrase was given"), unsupported_key (see check_supported()).
    [[nodiscard]] static Result<PrivateKey> load(const std::filesystem::path& path,
                                                 const Secret* passphrase,
                                                 SecretFilePolicy policy);

    // from_pem parses PEM text already in memory (the same formats as load); `origin` names it in errors.
    [[nodiscard]] static Result<PrivateKey> from_pem(std::string_view pem,
                                                     const Secret* passphrase,
                                                     std::string_view origin);

    // adopt takes ownership of an EVP_PKEY parsed elsewhere in pki/ (PKCS#12), checking it is supported.
    [[nodiscard]] static Result<PrivateKey> adopt(EVP_PKEY* key, std::string_view origin);

    // from_backend wraps a device key, checking its public half is supported (check_supported).
    [[nodiscard]] static Result<PrivateKey> from_backend(std::shared_ptr<const KeyBackend> backend,
                                                         std::string_view origin);

    KeyType key_type() const noexcept;
    // description is e.g. "RSA-2048", "EC P-384" or "ML-DSA-65", for messages and read-certificate-data.
    std::string description() const;

    // on_device is true for a key held outside the process (a PKCS#11 token, a TPM): its signatures block on
    // the device.
    bool on_device() const noexcept;

    // matches is true when the certificate's public key is this key's public key.
    bool matches(const Certificate& certificate) const;

    // sign returns a signature over digest(message): RSASSA-PKCS1-v1_5 for RSA, DER-encoded ECDSA
    // (SEQUENCE{r,s}) for EC on every curve. ML-DSA signs `message` itself and ignores `digest`: pure ML-DSA
    // (FIPS 204), deterministic, with an empty context, so a key signs a message to the same bytes every
    // time. Error crypto_failure on an OpenSSL failure.
    [[nodiscard]] Result<std::vector<std::uint8_t>> sign(std::string_view message, Digest digest) const;

    // sign_string_public_key is the public key as sign-string hashes it: the PKCS#1 RSAPublicKey DER for RSA,
    // the uncompressed point (0x04||X||Y) for EC. sign-string hashes no public key for ML-DSA.
    [[nodiscard]] Result<std::string> sign_string_public_key() const;

    // native is the OpenSSL key, borrowed; pki/ only. nullptr for a KeyBackend key (use public_native).
    EVP_PKEY* native() const noexcept;
    // public_native is an OpenSSL key holding at least the public half, borrowed; never nullptr. pki/ only.
    EVP_PKEY* public_native() const noexcept;

    struct Impl;

private:
    explicit PrivateKey(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const Impl> impl_;
};

// check_supported refuses keys Roles Anywhere (or this agent) cannot use: RSA below 2048 bits, EC curves
// other than P-256, P-384 and P-521, and every other algorithm but ML-DSA-44/65/87 (Ed25519, DSA, ...).
// Error unsupported_key.
[[nodiscard]] Result<void> check_supported(const PrivateKey& key, std::string_view origin);

// verify checks `signature` over digest(message) (ML-DSA: over message) with the certificate's public key.
// Tests and the key-matches-certificate check use it; nothing on the request path does.
bool verify(const Certificate& certificate,
            std::string_view message,
            std::span<const std::uint8_t> signature,
            Digest digest);

// sha256 of `data`, 32 bytes.
std::vector<std::uint8_t> sha256(std::string_view data);
// sha256_hex is the lowercase hex of sha256(data).
std::string sha256_hex(std::string_view data);

}  // namespace rad::pki
