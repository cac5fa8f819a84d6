#pragma once
// X.509 certificates as the agent uses them: the leaf that identifies the host, and the intermediates sent in
// X-Amz-X509-Chain. Certificate is an immutable, cheaply copyable value (copies share the OpenSSL object).

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

typedef struct x509_st X509;  // NOLINT: OpenSSL's forward declaration; the header stays OpenSSL-free

namespace rad::pki {

using SystemTime = std::chrono::system_clock::time_point;

// KeyType is the public-key algorithm of a certificate or private key that Roles Anywhere accepts: RSA, EC,
// and the three ML-DSA (FIPS 204) parameter sets.
enum class KeyType { rsa, ec, ml_dsa_44, ml_dsa_65, ml_dsa_87 };

// is_ml_dsa is true for ML-DSA-44, ML-DSA-65 and ML-DSA-87.
constexpr bool is_ml_dsa(KeyType type) noexcept {
    return type == KeyType::ml_dsa_44 || type == KeyType::ml_dsa_65 || type == KeyType::ml_dsa_87;
}

// key_type_name is "RSA", "EC", "ML-DSA-44", "ML-DSA-65" or "ML-DSA-87" (read-certificate-data's keyType).
std::string_view key_type_name(KeyType type) noexcept;

// ml_dsa_from_oid maps the dotted OIDs id-ml-dsa-44/65/87 (2.16.840.1.101.3.4.3.17/18/19) to their KeyType;
// nullopt for any other OID.
std::optional<KeyType> ml_dsa_from_oid(std::string_view dotted_oid) noexcept;

// ml_dsa_available is true when the OpenSSL this process runs on (3.5 or later) can load and sign with ML-DSA
// keys. Without it an ML-DSA key or certificate is refused as unsupported_key (ml_dsa_unavailable).
bool ml_dsa_available() noexcept;

// ml_dsa_unavailable is the one-line refusal of an ML-DSA key or certificate, e.g. "<origin>: the private key
// is ML-DSA-65, and ML-DSA needs OpenSSL 3.5 or later (this system has OpenSSL 3.0.17)"; `what` is
// "the private key" or "the certificate's key".
Error ml_dsa_unavailable(std::string_view origin, std::string_view what, KeyType type);

// Certificate wraps one parsed X.509 certificate.
class Certificate {
public:
    // from_der parses DER bytes. Error input_invalid names `origin` (a file path or "PKCS#12 bundle").
    [[nodiscard]] static Result<Certificate> from_der(std::string_view der, std::string_view origin);

    // der is the certificate's DER encoding; der_base64 is it in padded standard base64 (X-Amz-X509).
    const std::string& der() const noexcept;
    std::string der_base64() const;
    // serial_decimal is the serial number in decimal, the "Credential=" part of Authorization.
    std::string serial_decimal() const;
    // serial_hex is the serial number in uppercase hex without leading zeros (as the helper lists it).
    std::string serial_hex() const;
    // subject and issuer in RFC 2253 form, e.g. "CN=host,O=Example".
    std::string subject() const;
    std::string issuer() const;
    // sha1_fingerprint_hex is the lowercase hex SHA-1 of der().
    std::string sha1_fingerprint_hex() const;
    SystemTime not_before() const;
    SystemTime not_after() const;
    // version is the X.509 version number (1, 2 or 3).
    int version() const;
    // is_ca is true when basicConstraints says CA:TRUE.
    bool is_ca() const;
    // has_digital_signature is true when keyUsage is absent (no restriction) or includes digitalSignature.
    bool has_digital_signature() const;
    // key_type is the public key algorithm; Result because the key may be of an unsupported kind, or ML-DSA
    // where OpenSSL has no ML-DSA (ml_dsa_unavailable). ML-DSA is told by its OID, so it is recognised either
    // way.
    [[nodiscard]] Result<KeyType> key_type() const;
    // ml_dsa_type is the ML-DSA parameter set of the public key, by its OID; nullopt for any other key.
    std::optional<KeyType> ml_dsa_type() const;
    // issued_by is true when `issuer`'s subject equals our issuer name and its key verifies our signature.
    bool issued_by(const Certificate& issuer) const;
    // native is the OpenSSL object, borrowed: valid while this Certificate (or a copy) lives. pki/ only.
    X509* native() const noexcept;

    struct Impl;

private:
    explicit Certificate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const Impl> impl_;
};

// load_certificate reads the leaf: the first CERTIFICATE block of a PEM file, or a DER file. Errors name
// the path: input_missing, input_invalid ("not a PEM or DER certificate").
[[nodiscard]] Result<Certificate> load_certificate(const std::filesystem::path& path);

// load_certificate_bundle reads every CERTIFICATE block of a PEM file, in file order. Text between blocks is
// allowed; a block of another type, a file with no certificate, or a malformed block is input_invalid.
[[nodiscard]] Result<std::vector<Certificate>> load_certificate_bundle(const std::filesystem::path& path);

// check_leaf applies Roles Anywhere's rules to the leaf before any request is signed: X.509 v3, not a CA,
// keyUsage (if present) includes digitalSignature, and `now` within [notBefore, notAfter]. Errors are
// certificate_invalid, certificate_not_yet_valid or certificate_expired with a message naming `origin` and,
// for validity, the dates.
[[nodiscard]] Result<void> check_leaf(const Certificate& leaf, std::string_view origin, SystemTime now);

// check_chain_order verifies that chain[0] issued the leaf and chain[i+1] issued chain[i] (a self-signed
// root at the end is allowed). An out-of-order or unrelated chain is certificate_invalid naming `origin`.
[[nodiscard]] Result<void> check_chain_order(const Certificate& leaf,
                                             const std::vector<Certificate>& chain,
                                             std::string_view origin);

}  // namespace rad::pki
