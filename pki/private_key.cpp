#include "pki/private_key.hpp"

#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <array>
#include <cstdlib>
#include <mutex>
#include <optional>

#include "common/encoding.hpp"
#include "pki/ossl.hpp"

namespace rad::pki {

struct PrivateKey::Impl {
    ossl::EvpPkeyPtr pkey;  // null when `backend` holds the key
    std::shared_ptr<const KeyBackend> backend;
    // type is meaningful only for supported keys; from_pem and adopt never hand out any other kind.
    KeyType type = KeyType::rsa;
    // Signing contexts kept across calls, one per digest: OpenSSL 3 looks the algorithm up again in every
    // EVP_DigestSignInit, about a fifth of the cost of a P-256 signature. Used under sign_mutex; a caller
    // that finds it taken prepares a context of its own rather than wait.
    mutable std::mutex sign_mutex;
    mutable std::array<ossl::EvpPkeyCtxPtr, 3> sign_contexts;
};

namespace {

constexpr std::string_view kPassphraseFlags = "--pkcs8-password-file or --pkcs8-password-env";

// ec_curve is OpenSSL's name of an EC key's curve ("prime256v1"), empty when it has none.
std::string ec_curve(const EVP_PKEY* pkey) {
    std::array<char, 80> name{};
    std::size_t length = 0;
    if (EVP_PKEY_get_group_name(pkey, name.data(), name.size(), &length) != 1) {
        ossl::clear_errors();
        return {};
    }
    return std::string(name.data(), length);
}

// nist_name maps the three curves Roles Anywhere accepts to their NIST names; empty for any other curve.
std::string_view nist_name(std::string_view curve) {
    if (curve == "prime256v1" || curve == "P-256") {
        return "P-256";
    }
    if (curve == "secp384r1" || curve == "P-384") {
        return "P-384";
    }
    if (curve == "secp521r1" || curve == "P-521") {
        return "P-521";
    }
    return {};
}

// ml_dsa_type_of is the ML-DSA parameter set of an OpenSSL key (3.5 or later), nullopt for any other key.
std::optional<KeyType> ml_dsa_type_of(const EVP_PKEY* pkey) {
    if (EVP_PKEY_is_a(pkey, "ML-DSA-44") == 1) {
        return KeyType::ml_dsa_44;
    }
    if (EVP_PKEY_is_a(pkey, "ML-DSA-65") == 1) {
        return KeyType::ml_dsa_65;
    }
    if (EVP_PKEY_is_a(pkey, "ML-DSA-87") == 1) {
        return KeyType::ml_dsa_87;
    }
    return std::nullopt;
}

// key_type_of is the KeyType of a key; meaningful only for supported keys (check_supported says which).
KeyType key_type_of(const EVP_PKEY* pkey) {
    if (const auto ml_dsa = ml_dsa_type_of(pkey)) {
        return *ml_dsa;
    }
    return EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA ? KeyType::rsa : KeyType::ec;
}

std::string describe(const EVP_PKEY* pkey) {
    switch (EVP_PKEY_get_base_id(pkey)) {
        case EVP_PKEY_RSA:
            return "RSA-" + std::to_string(EVP_PKEY_get_bits(pkey));
        case EVP_PKEY_EC: {
            const std::string curve = ec_curve(pkey);
            const std::string_view nist = nist_name(curve);
            return "EC " + (nist.empty() ? curve : std::string(nist));
        }
        case EVP_PKEY_ED25519:
            return "Ed25519";
        case EVP_PKEY_ED448:
            return "Ed448";
        default: {
            const char* name = EVP_PKEY_get0_type_name(pkey);
            return name != nullptr ? name : "an unknown key type";
        }
    }
}

// passphrase_view is the passphrase as OpenSSL's (pointer, int length) pair wants it.
struct PassphraseView {
    const char* data;
    int length;
};

PassphraseView passphrase_view(const Secret& passphrase) {
    return PassphraseView{passphrase.reveal().data(), static_cast<int>(passphrase.reveal().size())};
}

bool is_unsupported_encryption(unsigned long err) {
    if (ERR_GET_LIB(err) != ERR_LIB_EVP) {
        return false;
    }
    switch (ERR_GET_REASON(err)) {
        case EVP_R_UNKNOWN_CIPHER:
        case EVP_R_UNKNOWN_PBE_ALGORITHM:
        case EVP_R_UNSUPPORTED_ALGORITHM:
        case EVP_R_UNSUPPORTED_CIPHER:
        case EVP_R_UNSUPPORTED_KEYLENGTH:
        case EVP_R_UNSUPPORTED_KEY_DERIVATION_FUNCTION:
        case EVP_R_UNSUPPORTED_PRF:
        case EVP_R_UNSUPPORTED_SALT_TYPE:
            return true;
        default:
            return false;
    }
}

// decode_typed_pkcs8 decodes `info` with the decoders of its own key type only. OpenSSL 3.0's
// EVP_PKCS82PKEY_ex asks every decoder of every key type (about four times the work of one type, a
// millisecond of a cold credential-process); its answer for the same bytes is the same. Null when this does
// not decode, and the caller asks EVP_PKCS82PKEY_ex, which reports why.
ossl::EvpPkeyPtr decode_typed_pkcs8(const PKCS8_PRIV_KEY_INFO* info, const ASN1_OBJECT* algorithm) {
    std::array<char, 80> type{};
    if (algorithm == nullptr || OBJ_obj2txt(type.data(), static_cast<int>(type.size()), algorithm, 0) <= 0) {
        ossl::clear_errors();
        return nullptr;
    }
    unsigned char* der = nullptr;
    const int length = i2d_PKCS8_PRIV_KEY_INFO(info, &der);
    if (length <= 0 || der == nullptr) {
        ossl::clear_errors();
        return nullptr;
    }
    EVP_PKEY* pkey = nullptr;
    OSSL_DECODER_CTX* decoder = OSSL_DECODER_CTX_new_for_pkey(&pkey, "DER", "PrivateKeyInfo", type.data(),
                                                              EVP_PKEY_KEYPAIR, nullptr, nullptr);
    const unsigned char* p = der;
    std::size_t left = static_cast<std::size_t>(length);
    if (decoder == nullptr || OSSL_DECODER_from_data(decoder, &p, &left) != 1 || left != 0) {
        EVP_PKEY_free(pkey);
        pkey = nullptr;
    }
    OSSL_DECODER_CTX_free(decoder);
    OPENSSL_clear_free(der, static_cast<std::size_t>(length));
    ossl::clear_errors();
    return ossl::EvpPkeyPtr(pkey);
}

Result<ossl::EvpPkeyPtr> from_pkcs8_info(const PKCS8_PRIV_KEY_INFO* info, std::string_view origin) {
    // An ML-DSA key is told by its algorithm OID, which any OpenSSL can read, so that one without ML-DSA
    // (before 3.5) refuses it by name instead of as an undecodable key.
    const ASN1_OBJECT* algorithm = nullptr;
    if (PKCS8_pkey_get0(&algorithm, nullptr, nullptr, nullptr, info) == 1) {
        if (const auto ml_dsa = ml_dsa_from_oid(ossl::oid_text(algorithm)); ml_dsa && !ml_dsa_available()) {
            return ml_dsa_unavailable(origin, "the private key", *ml_dsa);
        }
    }
    ossl::EvpPkeyPtr pkey = decode_typed_pkcs8(info, algorithm);
    if (!pkey) {
        pkey.reset(EVP_PKCS82PKEY_ex(info, nullptr, nullptr));
    }
    if (!pkey) {
        return make_error(Errc::input_invalid, std::string(origin) +
                                                   ": the PKCS#8 private key cannot be decoded (" +
                                                   ossl::take_error_reason() + ")");
    }
    return pkey;
}

Result<ossl::EvpPkeyPtr> decode_pkcs8(std::string_view der, std::string_view origin) {
    const unsigned char* p = ossl::bytes(der);
    ossl::Pkcs8InfoPtr info(d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(der.size())));
    if (!info) {
        return make_error(Errc::input_invalid, std::string(origin) + ": malformed PRIVATE KEY block (" +
                                                   ossl::take_error_reason() + ")");
    }
    return from_pkcs8_info(info.get(), origin);
}

Result<ossl::EvpPkeyPtr> decode_encrypted_pkcs8(std::string_view der,
                                                const Secret* passphrase,
                                                std::string_view origin) {
    const std::string where(origin);
    const unsigned char* p = ossl::bytes(der);
    ossl::X509SigPtr sig(d2i_X509_SIG(nullptr, &p, static_cast<long>(der.size())));
    if (!sig) {
        return make_error(Errc::input_invalid, where + ": malformed ENCRYPTED PRIVATE KEY block (" +
                                                   ossl::take_error_reason() + ")");
    }
    const X509_ALGOR* algorithm = nullptr;
    const ASN1_OCTET_STRING* ciphertext = nullptr;
    X509_SIG_get0(sig.get(), &algorithm, &ciphertext);
    const ASN1_OBJECT* oid = nullptr;
    X509_ALGOR_get0(&oid, nullptr, nullptr, algorithm);
    // PBES1 (DES, RC2, 3DES with MD5 or SHA-1) is refused like the reference helper does: it is weak and
    // only legacy tools write it.
    if (OBJ_obj2nid(oid) != NID_pbes2) {
        return make_error(Errc::input_invalid,
                          where +
                              ": the key is encrypted with a legacy scheme (PBES1); re-encrypt it with "
                              "openssl pkcs8 -topk8 -v2 aes-256-cbc");
    }
    if (passphrase == nullptr) {
        return make_error(Errc::wrong_passphrase,
                          where + ": the private key is encrypted and no passphrase was given (" +
                              std::string(kPassphraseFlags) + ")");
    }
    const PassphraseView pass = passphrase_view(*passphrase);
    ossl::Pkcs8InfoPtr info(PKCS8_decrypt_ex(sig.get(), pass.data, pass.length, nullptr, nullptr));
    if (!info) {
        // A wrong passphrase shows up as a bad CBC padding or as garbage that is not DER; only an algorithm
        // OpenSSL does not know is something else.
        const unsigned long err = ERR_peek_last_error();
        if (is_unsupported_encryption(err)) {
            return make_error(Errc::input_invalid,
                              where + ": unsupported key encryption (" + ossl::take_error_reason() + ")");
        }
        ossl::clear_errors();
        return make_error(Errc::wrong_passphrase, where + ": wrong passphrase for the encrypted private key");
    }
    auto pkey = from_pkcs8_info(info.get(), origin);
    if (!pkey && pkey.error().code == Errc::unsupported_key) {
        return pkey.error();
    }
    if (!pkey) {
        // Decrypted bytes that happen to end in valid padding but are not a key: still a wrong passphrase.
        return make_error(Errc::wrong_passphrase, where + ": wrong passphrase for the encrypted private key");
    }
    return pkey;
}

Result<ossl::EvpPkeyPtr> decode_traditional(std::string_view der,
                                            int type,
                                            std::string_view label,
                                            std::string_view origin) {
    const unsigned char* p = ossl::bytes(der);
    ossl::EvpPkeyPtr pkey(d2i_PrivateKey(type, nullptr, &p, static_cast<long>(der.size())));
    if (!pkey) {
        return make_error(Errc::input_invalid, std::string(origin) + ": malformed " + std::string(label) +
                                                   " block (" + ossl::take_error_reason() + ")");
    }
    return pkey;
}

Result<ossl::EvpPkeyPtr> decode_pem_key(std::string_view pem,
                                        const Secret* passphrase,
                                        std::string_view origin) {
    const std::string where(origin);
    auto blocks = ossl::read_pem_blocks(pem, origin);
    if (!blocks) {
        return blocks.error();
    }
    // The first key block wins; CERTIFICATE blocks (combined files) and EC PARAMETERS are passed over.
    for (const ossl::PemBlock& block : *blocks) {
        const std::string_view name = block.name();
        if (name != "PRIVATE KEY" && name != "ENCRYPTED PRIVATE KEY" && name != "RSA PRIVATE KEY" &&
            name != "EC PRIVATE KEY") {
            continue;
        }
        if (block.header().find("ENCRYPTED") != std::string_view::npos) {
            return make_error(Errc::input_invalid,
                              where +
                                  ": legacy OpenSSL-encrypted PEM (Proc-Type: 4,ENCRYPTED) is not supported; "
                                  "convert it with openssl pkcs8 -topk8 -v2 aes-256-cbc");
        }
        if (name == "PRIVATE KEY") {
            return decode_pkcs8(block.der(), origin);
        }
        if (name == "ENCRYPTED PRIVATE KEY") {
            return decode_encrypted_pkcs8(block.der(), passphrase, origin);
        }
        if (name == "RSA PRIVATE KEY") {
            return decode_traditional(block.der(), EVP_PKEY_RSA, name, origin);
        }
        return decode_traditional(block.der(), EVP_PKEY_EC, name, origin);
    }
    return make_error(Errc::input_invalid,
                      where +
                          ": no private key found (expected a PEM PRIVATE KEY, ENCRYPTED "
                          "PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)");
}

}  // namespace

Result<PrivateKey> PrivateKey::load(const std::filesystem::path& path,
                                    const Secret* passphrase,
                                    SecretFilePolicy policy) {
    auto contents = read_secret_file(path, policy);
    if (!contents) {
        return contents.error();
    }
    // `contents` is a Secret: the file bytes are wiped when it goes out of scope, after parsing.
    return from_pem(contents->reveal(), passphrase, path.string());
}

Result<PrivateKey> PrivateKey::from_pem(std::string_view pem,
                                        const Secret* passphrase,
                                        std::string_view origin) {
    auto pkey = decode_pem_key(pem, passphrase, origin);
    if (!pkey) {
        return pkey.error();
    }
    return adopt(pkey->release(), origin);
}

Result<PrivateKey> PrivateKey::adopt(EVP_PKEY* key, std::string_view origin) {
    ossl::EvpPkeyPtr owned(key);
    if (!owned) {
        return make_error(Errc::input_invalid, std::string(origin) + ": no private key");
    }
    auto impl = std::make_shared<Impl>();
    impl->type = key_type_of(owned.get());
    impl->pkey = std::move(owned);
    PrivateKey result(std::move(impl));
    if (auto r = check_supported(result, origin); !r) {
        return r.error();
    }
    return result;
}

Result<PrivateKey> PrivateKey::from_backend(std::shared_ptr<const KeyBackend> backend,
                                            std::string_view origin) {
    if (!backend || backend->public_key() == nullptr) {
        return make_error(Errc::internal, std::string(origin) + ": a device key without a public key");
    }
    auto impl = std::make_shared<Impl>();
    impl->type = key_type_of(backend->public_key());
    impl->backend = std::move(backend);
    PrivateKey result(std::move(impl));
    if (auto r = check_supported(result, origin); !r) {
        return r.error();
    }
    return result;
}

KeyType PrivateKey::key_type() const noexcept {
    return impl_->type;
}

std::string PrivateKey::description() const {
    if (impl_->backend) {
        return describe(impl_->backend->public_key()) + " " + impl_->backend->location();
    }
    return describe(impl_->pkey.get());
}

bool PrivateKey::matches(const Certificate& certificate) const {
    const EVP_PKEY* public_key = X509_get0_pubkey(certificate.native());
    const bool same = public_key != nullptr && EVP_PKEY_eq(public_key, public_native()) == 1;
    ossl::clear_errors();
    return same;
}

namespace {

// prepare_signing makes a context that signs `digest` hashes with `pkey`: PKCS#1 v1.5 (the DigestInfo of
// `digest`) for RSA, plain ECDSA for EC keys. The same context signs any number of times.
Result<ossl::EvpPkeyCtxPtr> prepare_signing(EVP_PKEY* pkey, KeyType type, Digest digest) {
    ossl::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
    if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1) {
        return make_error(Errc::crypto_failure, "cannot start a signature: " + ossl::take_error_reason());
    }
    if (type == KeyType::rsa && EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) <= 0) {
        return make_error(Errc::crypto_failure,
                          "cannot select RSA PKCS#1 v1.5 padding: " + ossl::take_error_reason());
    }
    if (EVP_PKEY_CTX_set_signature_md(ctx.get(), ossl::md(digest)) <= 0) {
        return make_error(Errc::crypto_failure,
                          "cannot select the signature digest: " + ossl::take_error_reason());
    }
    return ctx;
}

// sign_ml_dsa signs `message` itself with pure ML-DSA (FIPS 204 ML-DSA.Sign): the deterministic variant, with
// an empty context string. The key hashes the message internally, so there is no digest to choose.
Result<std::vector<std::uint8_t>> sign_ml_dsa(EVP_PKEY* pkey, std::string_view message) {
#if OPENSSL_VERSION_NUMBER >= 0x30500000L
    ossl::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
    ossl::EvpSignaturePtr algorithm(EVP_SIGNATURE_fetch(nullptr, EVP_PKEY_get0_type_name(pkey), nullptr));
    int deterministic = 1;
    const std::array<OSSL_PARAM, 2> params{
        OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_DETERMINISTIC, &deterministic),
        OSSL_PARAM_construct_end()};
    if (!ctx || !algorithm || EVP_PKEY_sign_message_init(ctx.get(), algorithm.get(), params.data()) != 1) {
        return make_error(Errc::crypto_failure,
                          "cannot start an ML-DSA signature: " + ossl::take_error_reason());
    }
    std::size_t length = 0;
    if (EVP_PKEY_sign(ctx.get(), nullptr, &length, ossl::bytes(message), message.size()) != 1) {
        return make_error(Errc::crypto_failure, "ML-DSA signing failed: " + ossl::take_error_reason());
    }
    std::vector<std::uint8_t> signature(length);
    if (EVP_PKEY_sign(ctx.get(), signature.data(), &length, ossl::bytes(message), message.size()) != 1) {
        return make_error(Errc::crypto_failure, "ML-DSA signing failed: " + ossl::take_error_reason());
    }
    signature.resize(length);
    return signature;
#else
    // Unreachable: without ML-DSA in OpenSSL no ML-DSA key loads (ml_dsa_unavailable).
    (void)pkey;
    (void)message;
    return make_error(Errc::unsupported_key, "ML-DSA needs OpenSSL 3.5 or later");
#endif
}

}  // namespace

Result<std::vector<std::uint8_t>> PrivateKey::sign(std::string_view message, Digest digest) const {
    if (impl_->backend) {
        return impl_->backend->sign(message, digest);
    }
    if (is_ml_dsa(impl_->type)) {
        return sign_ml_dsa(impl_->pkey.get(), message);
    }
    std::array<unsigned char, EVP_MAX_MD_SIZE> hash{};
    unsigned int hash_length = 0;
    if (EVP_Digest(message.data(), message.size(), hash.data(), &hash_length, ossl::md(digest), nullptr) !=
        1) {
        return make_error(Errc::crypto_failure,
                          "cannot hash the message to sign: " + ossl::take_error_reason());
    }
    std::unique_lock lock(impl_->sign_mutex, std::try_to_lock);
    ossl::EvpPkeyCtxPtr own;
    EVP_PKEY_CTX* ctx = nullptr;
    if (lock.owns_lock()) {
        auto& kept = impl_->sign_contexts.at(static_cast<std::size_t>(digest));
        if (!kept) {
            auto prepared = prepare_signing(impl_->pkey.get(), impl_->type, digest);
            if (!prepared) {
                return prepared.error();
            }
            kept = std::move(*prepared);
        }
        ctx = kept.get();
    } else {
        auto prepared = prepare_signing(impl_->pkey.get(), impl_->type, digest);
        if (!prepared) {
            return prepared.error();
        }
        own = std::move(*prepared);
        ctx = own.get();
    }
    std::size_t length = static_cast<std::size_t>(EVP_PKEY_get_size(impl_->pkey.get()));
    std::vector<std::uint8_t> signature(length);
    if (EVP_PKEY_sign(ctx, signature.data(), &length, hash.data(), hash_length) != 1) {
        return make_error(Errc::crypto_failure, "signing failed: " + ossl::take_error_reason());
    }
    // ECDSA signatures are DER and usually shorter than the maximum size.
    signature.resize(length);
    return signature;
}

Result<std::string> PrivateKey::sign_string_public_key() const {
    if (is_ml_dsa(impl_->type)) {
        return make_error(Errc::internal, "sign-string hashes no public key for an ML-DSA key");
    }
    EVP_PKEY* pkey = public_native();
    if (impl_->type == KeyType::rsa) {
        unsigned char* out = nullptr;
        const int length = i2d_PublicKey(pkey, &out);
        ossl::OpensslBytes owner(out);
        if (length <= 0) {
            return make_error(Errc::crypto_failure,
                              "cannot encode the RSA public key: " + ossl::take_error_reason());
        }
        return std::string(reinterpret_cast<const char*>(out), static_cast<std::size_t>(length));
    }
    // Built from the coordinates rather than the key's own point encoding, which may be the compressed form.
    BIGNUM* x_raw = nullptr;
    BIGNUM* y_raw = nullptr;
    const int x_ok = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x_raw);
    ossl::BignumPtr x(x_raw);
    const int y_ok = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y_raw);
    ossl::BignumPtr y(y_raw);
    if (x_ok != 1 || y_ok != 1) {
        return make_error(Errc::crypto_failure,
                          "cannot read the EC public point: " + ossl::take_error_reason());
    }
    const int field_bytes = (EVP_PKEY_get_bits(pkey) + 7) / 8;
    std::string point(1 + 2 * static_cast<std::size_t>(field_bytes), '\0');
    point[0] = '\x04';
    auto* out = reinterpret_cast<unsigned char*>(point.data());
    if (BN_bn2binpad(x.get(), out + 1, field_bytes) != field_bytes ||
        BN_bn2binpad(y.get(), out + 1 + field_bytes, field_bytes) != field_bytes) {
        return make_error(Errc::crypto_failure,
                          "cannot encode the EC public point: " + ossl::take_error_reason());
    }
    return point;
}

bool PrivateKey::on_device() const noexcept {
    return impl_->backend != nullptr;
}

EVP_PKEY* PrivateKey::native() const noexcept {
    return impl_->pkey.get();
}

EVP_PKEY* PrivateKey::public_native() const noexcept {
    return impl_->backend ? impl_->backend->public_key() : impl_->pkey.get();
}

Result<void> check_supported(const PrivateKey& key, std::string_view origin) {
    // Only public properties are checked, so a device key's public half answers for it.
    const EVP_PKEY* pkey = key.public_native();
    const std::string where(origin);
    if (ml_dsa_type_of(pkey)) {
        return {};  // every ML-DSA parameter set (44, 65, 87) is accepted
    }
    switch (EVP_PKEY_get_base_id(pkey)) {
        case EVP_PKEY_RSA: {
            const int bits = EVP_PKEY_get_bits(pkey);
            if (bits < 2048) {
                return make_error(Errc::unsupported_key, where + ": RSA key of " + std::to_string(bits) +
                                                             " bits; at least 2048 bits are required");
            }
            return {};
        }
        case EVP_PKEY_EC: {
            const std::string curve = ec_curve(pkey);
            if (nist_name(curve).empty()) {
                return make_error(Errc::unsupported_key, where + ": EC key on curve " +
                                                             (curve.empty() ? "(unnamed)" : curve) +
                                                             "; only P-256, P-384 and P-521 are supported");
            }
            return {};
        }
        default:
            return make_error(
                Errc::unsupported_key,
                where + ": " + describe(pkey) +
                    " keys are not supported; use RSA (2048 bits or more), EC P-256/P-384/P-521 or ML-DSA");
    }
}

bool verify(const Certificate& certificate,
            std::string_view message,
            std::span<const std::uint8_t> signature,
            Digest digest) {
    EVP_PKEY* public_key = X509_get0_pubkey(certificate.native());
    ossl::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
    // ML-DSA verifies the message itself (pure ML-DSA, empty context): no digest.
    const EVP_MD* md = public_key != nullptr && ml_dsa_type_of(public_key) ? nullptr : ossl::md(digest);
    bool ok =
        public_key != nullptr && ctx && EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, public_key) == 1;
    if (ok && EVP_PKEY_get_base_id(public_key) == EVP_PKEY_RSA) {
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
    }
    ok = ok && EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), ossl::bytes(message),
                                message.size()) == 1;
    ossl::clear_errors();
    return ok;
}

std::vector<std::uint8_t> sha256(std::string_view data) {
    std::vector<std::uint8_t> digest(32);
    unsigned int length = 0;
    // SHA-256 through the default provider cannot fail short of memory exhaustion; abort rather than
    // return a digest of zeros that would sign the wrong thing.
    if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
        length != 32) {
        std::abort();
    }
    return digest;
}

std::string sha256_hex(std::string_view data) {
    return hex_lower(sha256(data));
}

}  // namespace rad::pki
