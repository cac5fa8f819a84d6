#pragma once
// Private to pki/: ownership wrappers for OpenSSL objects, the OpenSSL error queue, PEM block reading and
// the helpers the pki/*.cpp files share. Nothing outside pki/ includes this header.

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/secret.hpp"
#include "pki/certificate.hpp"
#include "pki/private_key.hpp"

namespace rad::pki::ossl {

// Deleter calls the OpenSSL free function `Free` on a non-null pointer.
template <auto Free>
struct Deleter {
    template <class T>
    void operator()(T* p) const noexcept {
        Free(p);
    }
};

using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using BignumPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using EvpSignaturePtr = std::unique_ptr<EVP_SIGNATURE, Deleter<EVP_SIGNATURE_free>>;
using Pkcs12Ptr = std::unique_ptr<PKCS12, Deleter<PKCS12_free>>;
using Pkcs8InfoPtr = std::unique_ptr<PKCS8_PRIV_KEY_INFO, Deleter<PKCS8_PRIV_KEY_INFO_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using X509SigPtr = std::unique_ptr<X509_SIG, Deleter<X509_SIG_free>>;

// OpensslString owns a NUL-terminated string allocated by OpenSSL (BN_bn2dec, ...).
struct OpensslStringFree {
    void operator()(char* p) const noexcept { OPENSSL_free(p); }
};
using OpensslString = std::unique_ptr<char, OpensslStringFree>;

// OpensslBytes owns a buffer allocated by OpenSSL (i2d_* with a null output pointer).
struct OpensslBytesFree {
    void operator()(unsigned char* p) const noexcept { OPENSSL_free(p); }
};
using OpensslBytes = std::unique_ptr<unsigned char, OpensslBytesFree>;

// X509StackPtr owns a STACK_OF(X509) and the certificates in it.
struct X509StackFree {
    void operator()(STACK_OF(X509) * s) const noexcept { sk_X509_pop_free(s, X509_free); }
};
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackFree>;

// take_error_reason empties the OpenSSL error queue and returns the reason of its most recent entry
// ("unknown OpenSSL error" when the queue was empty), for the tail of an error message.
std::string take_error_reason();

// clear_errors empties the OpenSSL error queue so that a handled failure does not surface in a later call.
void clear_errors() noexcept;

// bytes views a string as the unsigned bytes OpenSSL's d2i_* functions take.
inline const unsigned char* bytes(std::string_view s) noexcept {
    return reinterpret_cast<const unsigned char*>(s.data());
}

// oid_text is the dotted form of `oid` ("2.16.840.1.101.3.4.3.18"), empty when it cannot be printed.
std::string oid_text(const ASN1_OBJECT* oid);

// memory_bio is a read-only BIO over `data`; `data` must outlive it.
[[nodiscard]] Result<BioPtr> memory_bio(std::string_view data);

// PemBlock is one decoded PEM block. Its DER bytes may be key material: they live in OpenSSL's secure heap
// when one is configured and are cleansed on destruction either way.
class PemBlock {
public:
    PemBlock(char* name, char* header, unsigned char* data, long length) noexcept
        : name_(name), header_(header), data_(data), length_(length) {}
    PemBlock(PemBlock&& other) noexcept;
    PemBlock& operator=(PemBlock&&) = delete;
    PemBlock(const PemBlock&) = delete;
    PemBlock& operator=(const PemBlock&) = delete;
    ~PemBlock();

    std::string_view name() const noexcept { return name_ ? std::string_view(name_) : std::string_view(); }
    // header is the RFC 1421 header text ("Proc-Type: 4,ENCRYPTED ..."), empty for modern blocks.
    std::string_view header() const noexcept {
        return header_ ? std::string_view(header_) : std::string_view();
    }
    std::string_view der() const noexcept {
        return std::string_view(reinterpret_cast<const char*>(data_), static_cast<std::size_t>(length_));
    }

private:
    char* name_;
    char* header_;
    unsigned char* data_;
    long length_;
};

// looks_like_pem is true when `text` contains a PEM BEGIN line.
bool looks_like_pem(std::string_view text) noexcept;

// read_pem_blocks decodes every PEM block of `text` in order; text around blocks is ignored. A malformed
// block (bad base64, missing END line) is input_invalid naming `origin`.
[[nodiscard]] Result<std::vector<PemBlock>> read_pem_blocks(std::string_view text, std::string_view origin);

// certificate_from_bytes parses the leaf out of file contents: the first CERTIFICATE block of PEM text, or
// DER. Errors are input_invalid naming `origin`.
[[nodiscard]] Result<Certificate> certificate_from_bytes(std::string_view contents, std::string_view origin);

// certificate_from_x509 wraps an X509 owned elsewhere (it is re-encoded, not shared).
[[nodiscard]] Result<Certificate> certificate_from_x509(X509* x509, std::string_view origin);

// check_leaf_rules is check_leaf with the validity period check optional (skipped when `now` is nullopt).
[[nodiscard]] Result<void> check_leaf_rules(const Certificate& leaf,
                                            std::string_view origin,
                                            std::optional<SystemTime> now);

// Pkcs12Contents is what a PKCS#12 bundle yields: the key, the certificate of that key and the other
// certificates ordered from the leaf's issuer upwards.
struct Pkcs12Contents {
    PrivateKey key;
    Certificate leaf;
    std::vector<Certificate> chain;
};

// load_pkcs12 decodes a DER PKCS#12 bundle with `passphrase` (nullptr: try the empty password both ways).
// Errors: input_invalid, wrong_passphrase, key_cert_mismatch, unsupported_key; all name `origin`.
[[nodiscard]] Result<Pkcs12Contents> load_pkcs12(std::string_view der,
                                                 const Secret* passphrase,
                                                 std::string_view origin);

// take moves the value out of a Result the caller has already checked. It exists because GCC 12's
// -Wnull-dereference cannot see that check through operator* and flags every such move.
template <class T>
T take(Result<T>& result) {
    return std::move(result).value();
}

// md is the OpenSSL digest for `digest`.
const EVP_MD* md(Digest digest) noexcept;

}  // namespace rad::pki::ossl
