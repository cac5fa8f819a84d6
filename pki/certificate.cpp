#include "pki/certificate.hpp"

#include <openssl/asn1.h>
#include <openssl/x509v3.h>

#include <ctime>

#include "common/encoding.hpp"
#include "common/file_read.hpp"
#include "common/time_format.hpp"
#include "pki/ossl.hpp"

namespace rad::pki {

struct Certificate::Impl {
    ossl::X509Ptr x509;
    std::string der;
};

namespace {

SystemTime to_system_time(const ASN1_TIME* t) {
    // ASN1_TIME_to_tm only fails on a malformed time, which d2i_X509 has already refused; the epoch is a
    // harmless answer that no validity check passes.
    std::tm tm{};
    if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
        ossl::clear_errors();
        return SystemTime{};
    }
    using namespace std::chrono;
    const year_month_day ymd{year{tm.tm_year + 1900}, month{static_cast<unsigned>(tm.tm_mon + 1)},
                             day{static_cast<unsigned>(tm.tm_mday)}};
    const auto when = sys_days{ymd} + hours{tm.tm_hour} + minutes{tm.tm_min} + seconds{tm.tm_sec};
    return time_point_cast<system_clock::duration>(when);
}

std::string name_rfc2253(const X509_NAME* name) {
    // RFC 2253 order and escaping, but UTF-8 kept as is rather than \XX-escaped (as Go's pkix.Name prints).
    auto bio = ossl::BioPtr(BIO_new(BIO_s_mem()));
    if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
        ossl::clear_errors();
        return {};
    }
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio.get(), &data);
    return length > 0 ? std::string(data, static_cast<std::size_t>(length)) : std::string();
}

ossl::BignumPtr serial_bignum(const X509* x509) {
    ossl::BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(x509), nullptr));
    if (!bn) {
        ossl::clear_errors();
    }
    return bn;
}

}  // namespace

std::string_view key_type_name(KeyType type) noexcept {
    switch (type) {
        case KeyType::rsa:
            return "RSA";
        case KeyType::ec:
            return "EC";
        case KeyType::ml_dsa_44:
            return "ML-DSA-44";
        case KeyType::ml_dsa_65:
            return "ML-DSA-65";
        case KeyType::ml_dsa_87:
            return "ML-DSA-87";
    }
    return "unknown";
}

std::optional<KeyType> ml_dsa_from_oid(std::string_view dotted_oid) noexcept {
    // FIPS 204 parameter sets, registered under NIST's sigAlgs arc (id-ml-dsa-44/65/87, RFC 9881).
    if (dotted_oid == "2.16.840.1.101.3.4.3.17") {
        return KeyType::ml_dsa_44;
    }
    if (dotted_oid == "2.16.840.1.101.3.4.3.18") {
        return KeyType::ml_dsa_65;
    }
    if (dotted_oid == "2.16.840.1.101.3.4.3.19") {
        return KeyType::ml_dsa_87;
    }
    return std::nullopt;
}

bool ml_dsa_available() noexcept {
    // The library's version, not the headers': the binary runs on whatever libcrypto the system has.
    return OpenSSL_version_num() >= 0x30500000L;
}

Error ml_dsa_unavailable(std::string_view origin, std::string_view what, KeyType type) {
    std::string message = origin.empty() ? std::string(what) : std::string(origin) + ": " + std::string(what);
    message += " is ";
    message += key_type_name(type);
    message += ", and ML-DSA needs OpenSSL 3.5 or later (this system has OpenSSL ";
    message += OpenSSL_version(OPENSSL_VERSION_STRING);
    message += ")";
    return Error{Errc::unsupported_key, std::move(message)};
}

Result<Certificate> Certificate::from_der(std::string_view der, std::string_view origin) {
    const unsigned char* p = ossl::bytes(der);
    if (der.empty() || der.size() > kMaxInputFileBytes) {
        return make_error(Errc::input_invalid, std::string(origin) + ": not a DER certificate (bad length)");
    }
    ossl::X509Ptr x509(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    if (!x509) {
        return make_error(Errc::input_invalid, std::string(origin) + ": not a valid X.509 certificate (" +
                                                   ossl::take_error_reason() + ")");
    }
    if (p != ossl::bytes(der) + der.size()) {
        return make_error(Errc::input_invalid,
                          std::string(origin) + ": trailing bytes after the DER certificate");
    }
    // d2i_X509 takes any INTEGER as the version; X.509 knows v1 to v3 (0..2 on the wire). Found by fuzzing.
    const long version = X509_get_version(x509.get());
    if (version < 0 || version > 2) {
        return make_error(Errc::input_invalid, std::string(origin) + ": unknown X.509 version " +
                                                   std::to_string(version) + " (v1 to v3 exist)");
    }
    auto impl = std::make_shared<Impl>();
    impl->x509 = std::move(x509);
    impl->der.assign(der);
    return Certificate(std::move(impl));
}

const std::string& Certificate::der() const noexcept {
    return impl_->der;
}

std::string Certificate::der_base64() const {
    return base64_encode(std::span(ossl::bytes(impl_->der), impl_->der.size()));
}

std::string Certificate::serial_decimal() const {
    const auto bn = serial_bignum(impl_->x509.get());
    ossl::OpensslString text(bn ? BN_bn2dec(bn.get()) : nullptr);
    return text ? std::string(text.get()) : std::string();
}

std::string Certificate::serial_hex() const {
    const auto bn = serial_bignum(impl_->x509.get());
    ossl::OpensslString text(bn ? BN_bn2hex(bn.get()) : nullptr);
    if (!text) {
        return {};
    }
    // BN_bn2hex writes whole bytes ("0F"); the helper prints the number (big.Int %X: "F").
    std::string hex(text.get());
    const bool negative = !hex.empty() && hex[0] == '-';
    const std::size_t digits = negative ? 1 : 0;
    const std::size_t first = hex.find_first_not_of('0', digits);
    if (first == std::string::npos) {
        return "0";
    }
    return (negative ? "-" : "") + hex.substr(first);
}

std::string Certificate::subject() const {
    return name_rfc2253(X509_get_subject_name(impl_->x509.get()));
}

std::string Certificate::issuer() const {
    return name_rfc2253(X509_get_issuer_name(impl_->x509.get()));
}

std::string Certificate::sha1_fingerprint_hex() const {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(impl_->der.data(), impl_->der.size(), digest, &length, EVP_sha1(), nullptr) != 1) {
        ossl::clear_errors();
        return {};
    }
    return hex_lower(std::span<const std::uint8_t>(digest, length));
}

SystemTime Certificate::not_before() const {
    return to_system_time(X509_get0_notBefore(impl_->x509.get()));
}

SystemTime Certificate::not_after() const {
    return to_system_time(X509_get0_notAfter(impl_->x509.get()));
}

int Certificate::version() const {
    return static_cast<int>(X509_get_version(impl_->x509.get())) + 1;
}

bool Certificate::is_ca() const {
    // X509_get_extension_flags caches the decoded extensions; EXFLAG_CA is set exactly for CA:TRUE (unlike
    // X509_check_ca, which also counts v1 self-signed certificates and keyCertSign).
    return (X509_get_extension_flags(impl_->x509.get()) & EXFLAG_CA) != 0;
}

bool Certificate::has_digital_signature() const {
    // X509_get_key_usage answers UINT32_MAX when the extension is absent.
    return (X509_get_key_usage(impl_->x509.get()) & KU_DIGITAL_SIGNATURE) != 0;
}

std::optional<KeyType> Certificate::ml_dsa_type() const {
    const ASN1_OBJECT* algorithm = nullptr;
    const X509_PUBKEY* spki = X509_get_X509_PUBKEY(impl_->x509.get());
    if (spki == nullptr ||
        X509_PUBKEY_get0_param(const_cast<ASN1_OBJECT**>(&algorithm), nullptr, nullptr, nullptr, spki) != 1) {
        ossl::clear_errors();
        return std::nullopt;
    }
    return ml_dsa_from_oid(ossl::oid_text(algorithm));
}

Result<KeyType> Certificate::key_type() const {
    // Told by the OID first: OpenSSL before 3.5 cannot decode an ML-DSA key, yet it must be refused by name.
    if (const auto ml_dsa = ml_dsa_type()) {
        if (!ml_dsa_available()) {
            return ml_dsa_unavailable("", "the certificate's key", *ml_dsa);
        }
        return *ml_dsa;
    }
    const EVP_PKEY* key = X509_get0_pubkey(impl_->x509.get());
    if (key == nullptr) {
        ossl::clear_errors();
        return make_error(Errc::input_invalid, "the certificate's public key cannot be decoded");
    }
    switch (EVP_PKEY_get_base_id(key)) {
        case EVP_PKEY_RSA:
            return KeyType::rsa;
        case EVP_PKEY_EC:
            return KeyType::ec;
        default: {
            const char* name = EVP_PKEY_get0_type_name(key);
            return make_error(Errc::unsupported_key, std::string("the certificate's public key is ") +
                                                         (name != nullptr ? name : "of an unknown type") +
                                                         "; Roles Anywhere accepts RSA, EC and ML-DSA keys");
        }
    }
}

bool Certificate::issued_by(const Certificate& issuer) const {
    X509* self = impl_->x509.get();
    X509* parent = issuer.impl_->x509.get();
    if (X509_NAME_cmp(X509_get_issuer_name(self), X509_get_subject_name(parent)) != 0) {
        return false;
    }
    EVP_PKEY* parent_key = X509_get0_pubkey(parent);
    const bool ok = parent_key != nullptr && X509_verify(self, parent_key) == 1;
    ossl::clear_errors();
    return ok;
}

X509* Certificate::native() const noexcept {
    return impl_->x509.get();
}

namespace ossl {

Result<Certificate> certificate_from_x509(X509* x509, std::string_view origin) {
    unsigned char* out = nullptr;
    const int length = i2d_X509(x509, &out);
    OpensslBytes owner(out);
    if (length <= 0) {
        return make_error(Errc::input_invalid, std::string(origin) + ": cannot encode a certificate (" +
                                                   take_error_reason() + ")");
    }
    return Certificate::from_der(
        std::string_view(reinterpret_cast<const char*>(out), static_cast<std::size_t>(length)), origin);
}

Result<Certificate> certificate_from_bytes(std::string_view contents, std::string_view origin) {
    if (!looks_like_pem(contents)) {
        auto der = Certificate::from_der(contents, origin);
        if (!der) {
            return make_error(Errc::input_invalid, std::string(origin) + ": not a PEM or DER certificate");
        }
        return der;
    }
    auto blocks = read_pem_blocks(contents, origin);
    if (!blocks) {
        return blocks.error();
    }
    for (const PemBlock& block : *blocks) {
        if (block.name() == "CERTIFICATE") {
            return Certificate::from_der(block.der(), origin);
        }
    }
    return make_error(Errc::input_invalid, std::string(origin) + ": no CERTIFICATE block in the PEM file");
}

Result<void> check_leaf_rules(const Certificate& leaf,
                              std::string_view origin,
                              std::optional<SystemTime> now) {
    const std::string where(origin);
    if (const auto ml_dsa = leaf.ml_dsa_type(); ml_dsa && !ml_dsa_available()) {
        return ml_dsa_unavailable(origin, "the certificate's key", *ml_dsa);
    }
    if (leaf.version() != 3) {
        return make_error(Errc::certificate_invalid, where + ": the certificate is X.509 v" +
                                                         std::to_string(leaf.version()) +
                                                         "; Roles Anywhere requires v3");
    }
    if ((X509_get_extension_flags(leaf.native()) & EXFLAG_INVALID) != 0) {
        return make_error(Errc::certificate_invalid, where + ": the certificate has malformed extensions");
    }
    if (leaf.is_ca()) {
        return make_error(Errc::certificate_invalid,
                          where +
                              ": the certificate is a CA certificate (basicConstraints CA:TRUE); "
                              "Roles Anywhere needs an end-entity certificate");
    }
    if (!leaf.has_digital_signature()) {
        return make_error(Errc::certificate_invalid,
                          where + ": the certificate's keyUsage does not include digitalSignature");
    }
    if (now) {
        if (*now < leaf.not_before()) {
            return make_error(Errc::certificate_not_yet_valid,
                              where + ": the certificate is not valid before " +
                                  format_iso8601(leaf.not_before()) + " (now " + format_iso8601(*now) + ")");
        }
        if (*now > leaf.not_after()) {
            return make_error(Errc::certificate_expired, where + ": the certificate expired at " +
                                                             format_iso8601(leaf.not_after()) + " (now " +
                                                             format_iso8601(*now) + ")");
        }
    }
    return {};
}

}  // namespace ossl

Result<Certificate> load_certificate(const std::filesystem::path& path) {
    auto contents = read_public_file(path);
    if (!contents) {
        return contents.error();
    }
    return ossl::certificate_from_bytes(*contents, path.string());
}

Result<std::vector<Certificate>> load_certificate_bundle(const std::filesystem::path& path) {
    auto contents = read_public_file(path);
    if (!contents) {
        return contents.error();
    }
    const std::string origin = path.string();
    auto blocks = ossl::read_pem_blocks(*contents, origin);
    if (!blocks) {
        return blocks.error();
    }
    std::vector<Certificate> certificates;
    for (const ossl::PemBlock& block : *blocks) {
        if (block.name() != "CERTIFICATE") {
            return make_error(Errc::input_invalid, origin + ": block " +
                                                       std::to_string(certificates.size() + 1) + " is a " +
                                                       std::string(block.name()) +
                                                       ", only CERTIFICATE blocks are allowed in a bundle");
        }
        auto certificate = Certificate::from_der(block.der(), origin);
        if (!certificate) {
            return certificate.error();
        }
        certificates.push_back(std::move(*certificate));
    }
    if (certificates.empty()) {
        return make_error(Errc::input_invalid, origin + ": no PEM CERTIFICATE block found");
    }
    return certificates;
}

Result<void> check_leaf(const Certificate& leaf, std::string_view origin, SystemTime now) {
    return ossl::check_leaf_rules(leaf, origin, now);
}

Result<void> check_chain_order(const Certificate& leaf,
                               const std::vector<Certificate>& chain,
                               std::string_view origin) {
    const Certificate* child = &leaf;
    for (std::size_t i = 0; i < chain.size(); ++i) {
        if (!child->issued_by(chain[i])) {
            const std::string what = i == 0 ? "the leaf certificate" : "certificate " + std::to_string(i);
            return make_error(Errc::certificate_invalid,
                              std::string(origin) + ": certificate " + std::to_string(i + 1) + " (" +
                                  chain[i].subject() + ") did not issue " + what + " (issuer " +
                                  child->issuer() +
                                  "); intermediates must be in issuer order, the leaf's issuer first");
        }
        child = &chain[i];
    }
    return {};
}

}  // namespace rad::pki
