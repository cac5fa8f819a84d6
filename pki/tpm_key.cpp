#include "pki/tpm_key.hpp"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <string.h>
#include <sys/stat.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "pki/ecdsa.hpp"
#include "pki/ossl.hpp"
#include "pki/tss2_library.hpp"

namespace rad::pki {
namespace {

constexpr std::string_view kHandlePrefix = "handle:";
constexpr std::string_view kTss2Label = "TSS2 PRIVATE KEY";
constexpr std::string_view kPasswordFlags = "--tpm-key-password-file or --tpm-key-password";

// The TCG's key-file OIDs (2.23.133.10.1.x), content octets only; they differ in the last one.
constexpr std::array<unsigned char, 5> kTcgKeyOidPrefix{0x67, 0x81, 0x05, 0x0A, 0x01};
constexpr unsigned char kLoadableKey = 0x03;
constexpr unsigned char kImportableKey = 0x04;
constexpr unsigned char kSealedData = 0x05;

// --- tpm2-tss plumbing
// --------------------------------------------------------------------------------------

// quiet_tss_logging keeps tpm2-tss from printing its own WARNING/ERROR lines on stderr: every failure is
// reported once, as this agent's one-line error. A TSS2_LOG set by the user (to debug) is respected. The
// first TPM key is loaded while the process is still single-threaded (prepare_session at startup), so the
// setenv cannot race a getenv on another thread.
void quiet_tss_logging() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (std::getenv("TSS2_LOG") == nullptr) {
            setenv("TSS2_LOG", "all+NONE", 0);
        }
    });
}

std::string hex32(std::uint32_t value) {
    std::array<char, 16> text{};
    std::snprintf(text.data(), text.size(), "0x%08x", value);
    return text.data();
}

std::string rc_text(TSS2_RC rc) {
    const char* decoded = tss2().Tss2_RC_Decode(rc);
    return std::string(decoded != nullptr ? decoded : "unknown error") + ", " + hex32(rc);
}

// tpm_code is the TPM's own response code with the handle, session or parameter number stripped, or 0 when
// the failure comes from a software layer (TCTI, SAPI, ESAPI) instead of the TPM.
TPM2_RC tpm_code(TSS2_RC rc) {
    const TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;
    if (layer != TSS2_TPM_RC_LAYER && layer != TSS2_RESMGR_TPM_RC_LAYER) {
        return 0;
    }
    const TPM2_RC code = rc & 0xFFFU;
    return (code & TPM2_RC_FMT1) != 0 ? (TPM2_RC_FMT1 | (code & 0x3FU)) : code;
}

bool is_auth_failure(TSS2_RC rc) {
    const TPM2_RC code = tpm_code(rc);
    return code == TPM2_RC_AUTH_FAIL || code == TPM2_RC_BAD_AUTH;
}

// is_connection_failure: the TPM could not be talked to at all (no device, swtpm or resource manager down,
// connection reset). Trying again later can help.
bool is_connection_failure(TSS2_RC rc) {
    const TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;
    if (layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER) {
        return false;
    }
    if (layer == TSS2_TCTI_RC_LAYER) {
        return true;
    }
    switch (rc & ~TSS2_RC_LAYER_MASK) {
        case TSS2_BASE_RC_IO_ERROR:
        case TSS2_BASE_RC_NO_CONNECTION:
        case TSS2_BASE_RC_TRY_AGAIN:
        case TSS2_BASE_RC_MALFORMED_RESPONSE:
        case TSS2_BASE_RC_INSUFFICIENT_RESPONSE:
            return true;
        default:
            return false;
    }
}

// with_tpm_retries runs one TPM command again when the TPM asks for it (TPM_RC_RETRY, _YIELDED, _TESTING:
// busy or self-testing). Nothing else is retried: in particular never an authorization failure, which
// counts towards the dictionary-attack lockout.
template <class Command>
TSS2_RC with_tpm_retries(Command&& command) {
    for (int attempt = 1;; ++attempt) {
        const TSS2_RC rc = command();
        const TPM2_RC code = tpm_code(rc);
        if (attempt == 5 || (code != TPM2_RC_RETRY && code != TPM2_RC_YIELDED && code != TPM2_RC_TESTING)) {
            return rc;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10 << attempt));
    }
}

template <class T>
struct EsysFree {
    void operator()(T* p) const noexcept { tss2().Esys_Free(p); }
};
template <class T>
using EsysPtr = std::unique_ptr<T, EsysFree<T>>;

// TpmConnection is one ESAPI context over one TCTI, closed (and the TCTI unloaded) on destruction.
class TpmConnection {
public:
    TpmConnection(const TpmConnection&) = delete;
    TpmConnection& operator=(const TpmConnection&) = delete;
    ~TpmConnection() {
        if (esys_ != nullptr) {
            tss2().Esys_Finalize(&esys_);
        }
        if (tcti_ != nullptr) {
            tss2().Tss2_TctiLdr_Finalize(&tcti_);
        }
    }

    static Result<std::unique_ptr<TpmConnection>> open(const std::string& tcti, std::string_view origin) {
        if (auto loaded = load_tss2(); !loaded) {
            return make_error(loaded.error().code, std::string(origin) + ": " + loaded.error().message);
        }
        quiet_tss_logging();
        std::unique_ptr<TpmConnection> connection(new TpmConnection);
        TSS2_RC rc = tss2().Tss2_TctiLdr_Initialize(tcti.c_str(), &connection->tcti_);
        if (rc == TSS2_RC_SUCCESS) {
            rc = tss2().Esys_Initialize(&connection->esys_, connection->tcti_, nullptr);
        }
        if (rc != TSS2_RC_SUCCESS) {
            return make_error(Errc::device_unavailable, std::string(origin) +
                                                            ": cannot reach the TPM through \"" + tcti +
                                                            "\" (" + rc_text(rc) + ")");
        }
        return connection;
    }

    ESYS_CONTEXT* esys() const noexcept { return esys_; }

private:
    TpmConnection() = default;
    TSS2_TCTI_CONTEXT* tcti_ = nullptr;
    ESYS_CONTEXT* esys_ = nullptr;
};

// TpmObject is an ESYS_TR this code opened: a transient object it loaded or created is flushed from the
// TPM when the TpmObject goes away, a reference to a persistent object only closed. That is what keeps
// transient handles from leaking, whatever path a signature takes out of sign().
class TpmObject {
public:
    explicit TpmObject(ESYS_CONTEXT* esys) noexcept : esys_(esys) {}
    TpmObject(const TpmObject&) = delete;
    TpmObject& operator=(const TpmObject&) = delete;
    ~TpmObject() { release(); }

    // release flushes or closes now; failures are ignored (a TPM that restarted has forgotten the object).
    void release() noexcept {
        if (handle_ == ESYS_TR_NONE) {
            return;
        }
        if (transient_) {
            (void)tss2().Esys_FlushContext(esys_, handle_);
        } else {
            (void)tss2().Esys_TR_Close(esys_, &handle_);
        }
        handle_ = ESYS_TR_NONE;
    }

    // slot returns where an Esys_* call writes the new handle; `transient` says how to let it go.
    ESYS_TR* slot(bool transient) noexcept {
        release();
        transient_ = transient;
        return &handle_;
    }
    ESYS_TR get() const noexcept { return handle_; }

private:
    ESYS_CONTEXT* esys_;
    ESYS_TR handle_ = ESYS_TR_NONE;
    bool transient_ = false;
};

// AuthValue copies a password into a TPM2B_AUTH and wipes it when done.
class AuthValue {
public:
    explicit AuthValue(const std::optional<Secret>& password) noexcept {
        if (password && !password->empty()) {
            value_.size = static_cast<UINT16>(password->size());
            std::memcpy(value_.buffer, password->reveal().data(), password->size());
        }
    }
    AuthValue(const AuthValue&) = delete;
    AuthValue& operator=(const AuthValue&) = delete;
    ~AuthValue() { explicit_bzero(&value_, sizeof(value_)); }
    const TPM2B_AUTH* get() const noexcept { return &value_; }

private:
    TPM2B_AUTH value_{};
};

bool is_persistent(TPM2_HANDLE handle) {
    return (handle >> TPM2_HR_SHIFT) == TPM2_HT_PERSISTENT;
}

// hierarchy_of maps a hierarchy parent handle of a key file to its ESYS_TR; ESYS_TR_NONE for anything else.
ESYS_TR hierarchy_of(TPM2_HANDLE handle) {
    switch (handle) {
        case TPM2_RH_OWNER:
            return ESYS_TR_RH_OWNER;
        case TPM2_RH_ENDORSEMENT:
            return ESYS_TR_RH_ENDORSEMENT;
        case TPM2_RH_PLATFORM:
            return ESYS_TR_RH_PLATFORM;
        case TPM2_RH_NULL:
            return ESYS_TR_RH_NULL;
        default:
            return ESYS_TR_NONE;
    }
}

// storage_primary_template is the parent of a key file whose parent is a hierarchy: the ECC P-256 storage
// key with AES-128-CFB of tpm2-openssl, tpm2-tss-engine and the reference helper. The TPM derives a primary
// key from the hierarchy seed and the template alone, so this must match what created the key bit for bit.
TPM2B_PUBLIC storage_primary_template() {
    TPM2B_PUBLIC result{};
    TPMT_PUBLIC& area = result.publicArea;
    area.type = TPM2_ALG_ECC;
    area.nameAlg = TPM2_ALG_SHA256;
    area.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                            TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED |
                            TPMA_OBJECT_DECRYPT;
    TPMS_ECC_PARMS& ecc = area.parameters.eccDetail;
    ecc.symmetric.algorithm = TPM2_ALG_AES;
    ecc.symmetric.keyBits.aes = 128;
    ecc.symmetric.mode.aes = TPM2_ALG_CFB;
    ecc.scheme.scheme = TPM2_ALG_NULL;
    ecc.curveID = TPM2_ECC_NIST_P256;
    ecc.kdf.scheme = TPM2_ALG_NULL;
    return result;
}

TPMI_ALG_HASH tpm_hash(Digest digest) {
    switch (digest) {
        case Digest::sha256:
            return TPM2_ALG_SHA256;
        case Digest::sha384:
            return TPM2_ALG_SHA384;
        case Digest::sha512:
            return TPM2_ALG_SHA512;
    }
    return TPM2_ALG_SHA256;
}

// --- the public half
// ----------------------------------------------------------------------------------------

using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, ossl::Deleter<OSSL_PARAM_BLD_free>>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, ossl::Deleter<OSSL_PARAM_free>>;
using ossl::EvpPkeyCtxPtr;

Result<ossl::EvpPkeyPtr> public_from_params(const char* type,
                                            OSSL_PARAM_BLD* builder,
                                            std::string_view origin) {
    ParamPtr params(OSSL_PARAM_BLD_to_param(builder));
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    EVP_PKEY* raw = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
        return make_error(Errc::input_invalid, std::string(origin) +
                                                   ": the TPM key's public area is not a valid " + type +
                                                   " key (" + ossl::take_error_reason() + ")");
    }
    return ossl::EvpPkeyPtr(raw);
}

Result<ossl::EvpPkeyPtr> rsa_public(const TPMT_PUBLIC& area, std::string_view origin) {
    const TPM2B_PUBLIC_KEY_RSA& modulus = area.unique.rsa;
    const UINT32 exponent =
        area.parameters.rsaDetail.exponent == 0 ? 65537 : area.parameters.rsaDetail.exponent;
    ossl::BignumPtr n(BN_bin2bn(modulus.buffer, modulus.size, nullptr));
    ossl::BignumPtr e(BN_new());
    ParamBldPtr builder(OSSL_PARAM_BLD_new());
    if (!n || !e || !builder || BN_set_word(e.get(), exponent) != 1 ||
        OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
        OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
        return make_error(Errc::crypto_failure, std::string(origin) + ": cannot build the RSA public key: " +
                                                    ossl::take_error_reason());
    }
    return public_from_params("RSA", builder.get(), origin);
}

struct Curve {
    const char* group;  // OpenSSL's name
    std::size_t field_bytes;
};

std::optional<Curve> curve_of(TPMI_ECC_CURVE id) {
    switch (id) {
        case TPM2_ECC_NIST_P256:
            return Curve{"prime256v1", 32};
        case TPM2_ECC_NIST_P384:
            return Curve{"secp384r1", 48};
        case TPM2_ECC_NIST_P521:
            return Curve{"secp521r1", 66};
        default:
            return std::nullopt;
    }
}

Result<ossl::EvpPkeyPtr> ec_public(const TPMT_PUBLIC& area, std::string_view origin) {
    const auto curve = curve_of(area.parameters.eccDetail.curveID);
    if (!curve) {
        return make_error(Errc::unsupported_key, std::string(origin) + ": TPM ECC curve " +
                                                     hex32(area.parameters.eccDetail.curveID) +
                                                     " is not supported; use NIST P-256, P-384 or P-521");
    }
    const TPMS_ECC_POINT& point = area.unique.ecc;
    if (point.x.size > curve->field_bytes || point.y.size > curve->field_bytes) {
        return make_error(Errc::input_invalid, std::string(origin) + ": the TPM key's EC point is too long");
    }
    // Uncompressed SEC1 point: 0x04 || X || Y, each coordinate left-padded to the field size.
    std::vector<unsigned char> encoded(1 + 2 * curve->field_bytes, 0);
    encoded[0] = 0x04;
    std::memcpy(encoded.data() + 1 + curve->field_bytes - point.x.size, point.x.buffer, point.x.size);
    std::memcpy(encoded.data() + 1 + 2 * curve->field_bytes - point.y.size, point.y.buffer, point.y.size);
    ParamBldPtr builder(OSSL_PARAM_BLD_new());
    if (!builder ||
        OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, curve->group, 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, encoded.data(),
                                         encoded.size()) != 1) {
        return make_error(Errc::crypto_failure, std::string(origin) + ": cannot build the EC public key: " +
                                                    ossl::take_error_reason());
    }
    return public_from_params("EC", builder.get(), origin);
}

// check_signing_key refuses TPM objects that cannot produce a SigV4-X509 signature: they must be
// unrestricted RSA or ECC signing keys whose scheme, if the key fixes one, is RSASSA or ECDSA with SHA-256.
Result<void> check_signing_key(const TPMT_PUBLIC& area, std::string_view origin) {
    const std::string where(origin);
    if (area.type != TPM2_ALG_RSA && area.type != TPM2_ALG_ECC) {
        return make_error(Errc::unsupported_key, where + ": the TPM object is not an RSA or ECC key (type " +
                                                     hex32(area.type) + ")");
    }
    if ((area.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT) == 0) {
        return make_error(Errc::unsupported_key,
                          where +
                              ": the TPM key cannot sign (its attributes lack \"sign\"); create it with "
                              "tpm2_create -a '...|sign' or openssl genpkey -provider tpm2");
    }
    if ((area.objectAttributes & TPMA_OBJECT_RESTRICTED) != 0) {
        return make_error(
            Errc::unsupported_key,
            where +
                ": the TPM key is restricted (an attestation key), so it signs only digests the "
                "TPM computed itself; use an unrestricted signing key");
    }
    const bool rsa = area.type == TPM2_ALG_RSA;
    const TPMI_ALG_ASYM_SCHEME scheme =
        rsa ? area.parameters.rsaDetail.scheme.scheme : area.parameters.eccDetail.scheme.scheme;
    const TPMI_ALG_HASH scheme_hash = rsa ? area.parameters.rsaDetail.scheme.details.anySig.hashAlg
                                          : area.parameters.eccDetail.scheme.details.anySig.hashAlg;
    if (scheme == TPM2_ALG_NULL) {
        return {};
    }
    if (scheme != (rsa ? TPM2_ALG_RSASSA : TPM2_ALG_ECDSA) || scheme_hash != TPM2_ALG_SHA256) {
        return make_error(Errc::unsupported_key, where + ": the TPM key is bound to signing scheme " +
                                                     hex32(scheme) + " with hash " + hex32(scheme_hash) +
                                                     "; SigV4-X509 needs " + (rsa ? "RSASSA" : "ECDSA") +
                                                     " with SHA-256 (or a key without a fixed scheme)");
    }
    return {};
}

Result<ossl::EvpPkeyPtr> public_key_of(const TPMT_PUBLIC& area, std::string_view origin) {
    if (auto r = check_signing_key(area, origin); !r) {
        return r.error();
    }
    return area.type == TPM2_ALG_RSA ? rsa_public(area, origin) : ec_public(area, origin);
}

// PasswordHint is what a key file's emptyAuth field says about the key's password.
enum class PasswordHint { unknown, none, needed };

// KeyLocation says which TPM object signs: a persistent key, or a blob loaded under its parent.
struct KeyLocation {
    bool persistent = false;
    TPM2_HANDLE handle = 0;  // the persistent key, or the blob's parent (persistent key or hierarchy)
    TPM2B_PUBLIC public_area{};
    TPM2B_PRIVATE private_area{};  // blob only (encrypted by the parent; not secret in itself)
    PasswordHint password_hint = PasswordHint::unknown;
};

class TpmBackend final : public KeyBackend {
public:
    TpmBackend(
        std::string origin, std::string tcti, KeyLocation key, TpmKeyOptions secrets, ossl::EvpPkeyPtr pub)
        : origin_(std::move(origin)),
          tcti_(std::move(tcti)),
          key_(key),
          secrets_(std::move(secrets)),
          public_key_(std::move(pub)) {}

    EVP_PKEY* public_key() const noexcept override { return public_key_.get(); }

    std::string location() const override { return "in the TPM (" + origin_ + ", " + tcti_ + ")"; }

    Result<std::vector<std::uint8_t>> sign(std::string_view message, Digest digest) const override {
        // The digest is computed here, in software: the TPM only signs it. An unrestricted key needs no
        // TPM-made hash ticket, and one round trip fewer matters on a slow TPM.
        std::array<unsigned char, EVP_MAX_MD_SIZE> hash{};
        unsigned int hash_size = 0;
        if (EVP_Digest(message.data(), message.size(), hash.data(), &hash_size, ossl::md(digest), nullptr) !=
            1) {
            return make_error(Errc::crypto_failure,
                              "cannot hash the string to sign: " + ossl::take_error_reason());
        }
        TPM2B_DIGEST to_sign{};
        to_sign.size = static_cast<UINT16>(hash_size);
        std::memcpy(to_sign.buffer, hash.data(), hash_size);

        auto connection = TpmConnection::open(tcti_, origin_);
        if (!connection) {
            return connection.error();
        }
        ESYS_CONTEXT* esys = (*connection)->esys();
        TpmObject key(esys);
        if (key_.persistent) {
            const TSS2_RC rc = with_tpm_retries([&] {
                return tss2().Esys_TR_FromTPMPublic(esys, key_.handle, ESYS_TR_NONE, ESYS_TR_NONE,
                                                    ESYS_TR_NONE, key.slot(false));
            });
            if (rc != TSS2_RC_SUCCESS) {
                return failure(rc, "open the persistent key");
            }
        } else if (auto r = load_blob(esys, key); !r) {
            return r.error();
        }
        const AuthValue auth(secrets_.key_password);
        if (const TSS2_RC rc = tss2().Esys_TR_SetAuth(esys, key.get(), auth.get()); rc != TSS2_RC_SUCCESS) {
            return failure(rc, "set the key password");
        }

        const TPMT_PUBLIC& area = key_.public_area.publicArea;
        TPMT_SIG_SCHEME scheme{};
        scheme.scheme = area.type == TPM2_ALG_RSA ? TPM2_ALG_RSASSA : TPM2_ALG_ECDSA;
        scheme.details.any.hashAlg = tpm_hash(digest);
        // A null ticket: the digest was not made by the TPM, which only unrestricted keys accept.
        TPMT_TK_HASHCHECK validation{};
        validation.tag = TPM2_ST_HASHCHECK;
        validation.hierarchy = TPM2_RH_NULL;
        TPMT_SIGNATURE* raw_signature = nullptr;
        const TSS2_RC rc = with_tpm_retries([&] {
            return tss2().Esys_Sign(esys, key.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &to_sign,
                                    &scheme, &validation, &raw_signature);
        });
        EsysPtr<TPMT_SIGNATURE> signature(raw_signature);
        key.release();  // flushed before anything else happens: nothing stays loaded in the TPM
        if (rc != TSS2_RC_SUCCESS) {
            if (is_auth_failure(rc)) {
                return make_error(Errc::device_auth_failed, origin_ + ": the TPM refused the key password (" +
                                                                rc_text(rc) + "); " + password_advice() +
                                                                " (each refusal counts towards the TPM's "
                                                                "dictionary-attack lockout)");
            }
            return failure(rc, "sign");
        }
        if (signature->sigAlg == TPM2_ALG_RSASSA) {
            const TPM2B_PUBLIC_KEY_RSA& sig = signature->signature.rsassa.sig;
            return std::vector<std::uint8_t>(sig.buffer, sig.buffer + sig.size);
        }
        if (signature->sigAlg == TPM2_ALG_ECDSA) {
            const TPMS_SIGNATURE_ECC& ecdsa = signature->signature.ecdsa;
            return ecdsa_der({ecdsa.signatureR.buffer, ecdsa.signatureR.size},
                             {ecdsa.signatureS.buffer, ecdsa.signatureS.size}, origin_);
        }
        return make_error(Errc::crypto_failure, origin_ + ": the TPM answered with signature algorithm " +
                                                    hex32(signature->sigAlg));
    }

private:
    // load_blob loads the key file's blob under its parent into `key`. A hierarchy parent means creating
    // the storage primary first; it is flushed as soon as the key is loaded.
    Result<void> load_blob(ESYS_CONTEXT* esys, TpmObject& key) const {
        TpmObject parent(esys);
        const AuthValue parent_auth(secrets_.parent_password);
        if (is_persistent(key_.handle)) {
            TSS2_RC rc = with_tpm_retries([&] {
                return tss2().Esys_TR_FromTPMPublic(esys, key_.handle, ESYS_TR_NONE, ESYS_TR_NONE,
                                                    ESYS_TR_NONE, parent.slot(false));
            });
            if (rc == TSS2_RC_SUCCESS) {
                rc = tss2().Esys_TR_SetAuth(esys, parent.get(), parent_auth.get());
            }
            if (rc != TSS2_RC_SUCCESS) {
                return failure(rc, "open the parent key " + hex32(key_.handle));
            }
        } else {
            const ESYS_TR hierarchy = hierarchy_of(key_.handle);
            if (const TSS2_RC rc = tss2().Esys_TR_SetAuth(esys, hierarchy, parent_auth.get());
                rc != TSS2_RC_SUCCESS) {
                return failure(rc, "set the hierarchy password");
            }
            const TPM2B_SENSITIVE_CREATE sensitive{};
            const TPM2B_PUBLIC primary_template = storage_primary_template();
            const TPM2B_DATA outside_info{};
            const TPML_PCR_SELECTION creation_pcr{};
            const TSS2_RC rc = with_tpm_retries([&] {
                return tss2().Esys_CreatePrimary(esys, hierarchy, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                                 ESYS_TR_NONE, &sensitive, &primary_template, &outside_info,
                                                 &creation_pcr, parent.slot(true), nullptr, nullptr, nullptr,
                                                 nullptr);
            });
            if (rc != TSS2_RC_SUCCESS) {
                return failure(rc, "create the storage primary key under hierarchy " + hex32(key_.handle),
                               /*parent=*/true);
            }
        }
        const TSS2_RC rc = with_tpm_retries([&] {
            return tss2().Esys_Load(esys, parent.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                    &key_.private_area, &key_.public_area, key.slot(true));
        });
        if (rc != TSS2_RC_SUCCESS) {
            if (tpm_code(rc) == TPM2_RC_INTEGRITY) {
                return make_error(Errc::key_cert_mismatch,
                                  origin_ + ": the TPM cannot load the key under parent " +
                                      hex32(key_.handle) +
                                      " (integrity check failed): the key was made by another TPM or under "
                                      "another parent");
            }
            return failure(rc, "load the key under parent " + hex32(key_.handle), /*parent=*/true);
        }
        return {};
    }

    std::string password_advice() const {
        const bool given = secrets_.key_password.has_value();
        if (!given && key_.password_hint == PasswordHint::needed) {
            return "the key file says the key has a password, and none was given (" +
                   std::string(kPasswordFlags) + ")";
        }
        if (given && key_.password_hint == PasswordHint::none) {
            return "the key file says the key has no password (emptyAuth), but one was given";
        }
        return "check " + std::string(kPasswordFlags);
    }

    // failure classifies a failed TPM command; `parent` says whose password a refusal concerns.
    Error failure(TSS2_RC rc, const std::string& what, bool parent = false) const {
        if (is_connection_failure(rc)) {
            return make_error(Errc::device_unavailable, origin_ + ": lost the TPM at \"" + tcti_ +
                                                            "\" while trying to " + what + " (" +
                                                            rc_text(rc) + ")");
        }
        if (is_auth_failure(rc)) {
            return make_error(Errc::device_auth_failed,
                              origin_ + ": the TPM refused the " + (parent ? "parent" : "key") +
                                  " password (" + rc_text(rc) + "); check " +
                                  (parent ? "--tpm-parent-password-file" : std::string(kPasswordFlags)));
        }
        if (tpm_code(rc) == TPM2_RC_LOCKOUT) {
            return make_error(Errc::device_auth_failed,
                              origin_ +
                                  ": the TPM is in dictionary-attack lockout after too many wrong passwords; "
                                  "wait for it to recover or reset it (tpm2_dictionarylockout -c)");
        }
        if (key_.persistent && tpm_code(rc) == TPM2_RC_HANDLE) {
            return make_error(Errc::input_missing, origin_ + ": no key is persisted at this handle any more");
        }
        return make_error(Errc::crypto_failure,
                          origin_ + ": the TPM failed to " + what + " (" + rc_text(rc) + ")");
    }

    std::string origin_;
    std::string tcti_;
    KeyLocation key_;
    TpmKeyOptions secrets_;
    ossl::EvpPkeyPtr public_key_;
};

Result<void> check_password_size(const std::optional<Secret>& password, const char* what) {
    if (password && password->size() > sizeof(TPMU_HA)) {
        return make_error(Errc::usage, std::string(what) + " is longer than the TPM allows (" +
                                           std::to_string(sizeof(TPMU_HA)) + " bytes)");
    }
    return {};
}

Result<PrivateKey> make_key(std::string origin, const TpmKeyOptions& options, KeyLocation location) {
    auto pub = public_key_of(location.public_area.publicArea, origin);
    if (!pub) {
        return pub.error();
    }
    TpmKeyOptions secrets = options.clone();
    if (secrets.key_password && secrets.key_password->empty()) {
        secrets.key_password.reset();
    }
    auto backend = std::make_shared<const TpmBackend>(origin, resolve_tcti(options.tcti), location,
                                                      std::move(secrets), ossl::take(pub));
    return PrivateKey::from_backend(backend, origin);
}

// --- the key file
// -------------------------------------------------------------------------------------------

// DerItem is one TLV of a DER encoding.
struct DerItem {
    int tag = 0;
    int cls = 0;
    bool constructed = false;
    std::string_view content;
};

// next_der reads one TLV from the front of `in` and consumes it.
std::optional<DerItem> next_der(std::string_view& in) {
    if (in.empty()) {
        return std::nullopt;
    }
    const unsigned char* start = ossl::bytes(in);
    const unsigned char* p = start;
    long length = 0;
    int tag = 0;
    int cls = 0;
    const int flags = ASN1_get_object(&p, &length, &tag, &cls, static_cast<long>(in.size()));
    // 0x80: malformed or longer than the input; 0x21: indefinite length, which DER forbids.
    if ((flags & 0x80) != 0 || flags == 0x21) {
        ossl::clear_errors();
        return std::nullopt;
    }
    const auto header = static_cast<std::size_t>(p - start);
    DerItem item{tag, cls, (flags & V_ASN1_CONSTRUCTED) != 0,
                 in.substr(header, static_cast<std::size_t>(length))};
    in.remove_prefix(header + static_cast<std::size_t>(length));
    return item;
}

struct KeyFile {
    bool empty_auth = false;
    KeyLocation location;
};

Result<KeyFile> parse_key_file(std::string_view der, std::string_view origin) {
    const std::string where(origin);
    auto malformed = [&](const std::string& what) {
        return make_error(Errc::input_invalid, where + ": malformed TSS2 PRIVATE KEY (" + what + ")");
    };
    auto outer = next_der(der);
    if (!outer || outer->tag != V_ASN1_SEQUENCE || !outer->constructed || !der.empty()) {
        return malformed("not a DER SEQUENCE");
    }
    std::string_view body = outer->content;
    auto type = next_der(body);
    if (!type || type->tag != V_ASN1_OBJECT || type->content.size() != kTcgKeyOidPrefix.size() + 1 ||
        type->content.substr(0, kTcgKeyOidPrefix.size()) !=
            std::string_view(reinterpret_cast<const char*>(kTcgKeyOidPrefix.data()),
                             kTcgKeyOidPrefix.size())) {
        return malformed("the type is not a TCG key OID 2.23.133.10.1.x");
    }
    const auto kind = static_cast<unsigned char>(type->content.back());
    if (kind == kImportableKey) {
        return make_error(Errc::input_invalid, where +
                                                   ": importable TPM keys (OID 2.23.133.10.1.4) are not "
                                                   "supported; import the key into the TPM first");
    }
    if (kind == kSealedData) {
        return make_error(Errc::input_invalid, where + ": the file holds TPM sealed data, not a key");
    }
    if (kind != kLoadableKey) {
        return malformed("unknown TCG key OID");
    }
    KeyFile file;
    auto item = next_der(body);
    // Optional fields are context-tagged: [0] emptyAuth, [1] policy, [2] secret, [3] authPolicy, ...
    while (item && item->cls == V_ASN1_CONTEXT_SPECIFIC) {
        if (item->tag != 0) {
            return make_error(Errc::input_invalid,
                              where + ": TPM keys with policies or an import secret (field [" +
                                  std::to_string(item->tag) + "]) are not supported");
        }
        std::string_view inner = item->content;
        auto flag = next_der(inner);
        if (!flag || flag->tag != V_ASN1_BOOLEAN || flag->content.size() != 1 || !inner.empty()) {
            return malformed("emptyAuth is not a BOOLEAN");
        }
        // Any non-zero octet is true: some tools write 0x01 instead of DER's 0xFF.
        file.empty_auth = flag->content[0] != 0;
        item = next_der(body);
    }
    if (!item || item->tag != V_ASN1_INTEGER || item->cls != V_ASN1_UNIVERSAL || item->content.empty() ||
        item->content.size() > 5 || (static_cast<unsigned char>(item->content[0]) & 0x80) != 0) {
        return malformed("parent is not a 32-bit INTEGER");
    }
    std::uint64_t parent = 0;
    for (const char c : item->content) {
        parent = (parent << 8) | static_cast<unsigned char>(c);
    }
    if (parent > 0xFFFFFFFFULL) {
        return malformed("parent is not a 32-bit INTEGER");
    }
    // Some writers put 0 for "the owner hierarchy".
    file.location.handle = parent == 0 ? TPM2_RH_OWNER : static_cast<TPM2_HANDLE>(parent);
    if (!is_persistent(file.location.handle) && hierarchy_of(file.location.handle) == ESYS_TR_NONE) {
        return make_error(Errc::input_invalid,
                          where + ": the key's parent " + hex32(file.location.handle) +
                              " is neither a persistent key (0x81xxxxxx) nor a hierarchy; a transient parent "
                              "cannot be found again");
    }
    auto pub = next_der(body);
    auto priv = next_der(body);
    if (!pub || pub->tag != V_ASN1_OCTET_STRING || !priv || priv->tag != V_ASN1_OCTET_STRING ||
        !body.empty()) {
        return malformed("pubkey and privkey must be the last two OCTET STRINGs");
    }
    if (auto loaded = load_tss2(); !loaded) {
        return make_error(loaded.error().code, where + ": " + loaded.error().message);
    }
    std::size_t offset = 0;
    if (tss2().Tss2_MU_TPM2B_PUBLIC_Unmarshal(ossl::bytes(pub->content), pub->content.size(), &offset,
                                              &file.location.public_area) != TSS2_RC_SUCCESS ||
        offset != pub->content.size()) {
        return malformed("pubkey is not a TPM2B_PUBLIC");
    }
    offset = 0;
    if (tss2().Tss2_MU_TPM2B_PRIVATE_Unmarshal(ossl::bytes(priv->content), priv->content.size(), &offset,
                                               &file.location.private_area) != TSS2_RC_SUCCESS ||
        offset != priv->content.size()) {
        return malformed("privkey is not a TPM2B_PRIVATE");
    }
    return file;
}

Result<TPM2_HANDLE> parse_handle(std::string_view reference) {
    const std::string text(reference);
    std::string_view digits = reference.substr(kHandlePrefix.size());
    if (digits.starts_with("0x") || digits.starts_with("0X")) {
        digits.remove_prefix(2);
    }
    std::uint64_t value = 0;
    bool valid = !digits.empty() && digits.size() <= 8;
    for (const char c : digits) {
        int nibble = -1;
        if (c >= '0' && c <= '9') {
            nibble = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            nibble = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            nibble = c - 'A' + 10;
        }
        valid = valid && nibble >= 0;
        value = (value << 4) | static_cast<std::uint64_t>(nibble < 0 ? 0 : nibble);
    }
    if (!valid) {
        return make_error(Errc::usage,
                          "--private-key " + text + ": expected handle:0x81xxxxxx (hexadecimal)");
    }
    const auto handle = static_cast<TPM2_HANDLE>(value);
    if (!is_persistent(handle)) {
        return make_error(
            Errc::usage,
            "--private-key " + text + ": only persistent key handles (0x81000000 to 0x81ffffff) can be used");
    }
    return handle;
}

}  // namespace

TpmKeyOptions TpmKeyOptions::clone() const {
    TpmKeyOptions copy;
    copy.tcti = tcti;
    if (key_password) {
        copy.key_password = key_password->clone();
    }
    if (parent_password) {
        copy.parent_password = parent_password->clone();
    }
    return copy;
}

bool is_tpm_handle_reference(std::string_view reference) noexcept {
    return reference.starts_with(kHandlePrefix);
}

bool is_tss2_private_key(std::string_view contents) noexcept {
    return contents.find("-----BEGIN TSS2 PRIVATE KEY-----") != std::string_view::npos;
}

std::string resolve_tcti(std::string_view configured) {
    if (!configured.empty()) {
        return std::string(configured);
    }
    // The reference helper's $TPM_DEVICE names a device node (or swtpm's socket, which tpm2-tss 3.2 cannot
    // reach by path); a character device is honoured, anything else falls back to the resource manager.
    if (const char* device = std::getenv("TPM_DEVICE"); device != nullptr && *device != '\0') {
        struct stat st {};
        if (::stat(device, &st) == 0 && S_ISCHR(st.st_mode)) {
            return std::string("device:") + device;
        }
    }
    return std::string(kDefaultTcti);
}

Result<PrivateKey> load_tpm_handle_key(std::string_view reference, const TpmKeyOptions& options) {
    auto handle = parse_handle(reference);
    if (!handle) {
        return handle.error();
    }
    if (auto r = check_password_size(options.key_password, "the TPM key password"); !r) {
        return r.error();
    }
    const std::string origin(reference);
    const std::string tcti = resolve_tcti(options.tcti);
    auto connection = TpmConnection::open(tcti, origin);
    if (!connection) {
        return connection.error();
    }
    ESYS_CONTEXT* esys = (*connection)->esys();
    TpmObject key(esys);
    TSS2_RC rc = with_tpm_retries([&] {
        return tss2().Esys_TR_FromTPMPublic(esys, *handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                            key.slot(false));
    });
    TPM2B_PUBLIC* raw_public = nullptr;
    if (rc == TSS2_RC_SUCCESS) {
        rc = with_tpm_retries([&] {
            return tss2().Esys_ReadPublic(esys, key.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                          &raw_public, nullptr, nullptr);
        });
    }
    EsysPtr<TPM2B_PUBLIC> public_area(raw_public);
    if (rc != TSS2_RC_SUCCESS) {
        if (is_connection_failure(rc)) {
            return make_error(Errc::device_unavailable, origin + ": cannot read the key from the TPM at \"" +
                                                            tcti + "\" (" + rc_text(rc) + ")");
        }
        if (tpm_code(rc) == TPM2_RC_HANDLE) {
            return make_error(Errc::input_missing,
                              origin + ": no key is persisted at this handle in the TPM at \"" + tcti +
                                  "\" (tpm2_getcap handles-persistent lists them)");
        }
        return make_error(Errc::crypto_failure,
                          origin + ": cannot read the key's public area (" + rc_text(rc) + ")");
    }
    KeyLocation location;
    location.persistent = true;
    location.handle = *handle;
    location.public_area = *public_area;
    return make_key(origin, options, location);
}

Result<PrivateKey> load_tss2_key(std::string_view pem,
                                 std::string_view origin,
                                 const TpmKeyOptions& options) {
    const std::string where(origin);
    auto blocks = ossl::read_pem_blocks(pem, origin);
    if (!blocks) {
        return blocks.error();
    }
    const ossl::PemBlock* block = nullptr;
    for (const ossl::PemBlock& candidate : *blocks) {
        if (candidate.name() == kTss2Label) {
            block = &candidate;
            break;
        }
    }
    if (block == nullptr) {
        return make_error(Errc::input_invalid, where + ": no TSS2 PRIVATE KEY block");
    }
    auto file = parse_key_file(block->der(), origin);
    if (!file) {
        return file.error();
    }
    // emptyAuth is only a hint: tpm2_encodeobject of tpm2-tools 5.4 (Debian 12) writes it inverted, so the
    // TPM is the judge of the password. The hint only sharpens the message when the TPM refuses.
    file->location.password_hint = file->empty_auth ? PasswordHint::none : PasswordHint::needed;
    if (auto r = check_password_size(options.key_password, "the TPM key password"); !r) {
        return r.error();
    }
    if (auto r = check_password_size(options.parent_password, "the TPM parent password"); !r) {
        return r.error();
    }
    return make_key(where, options, file->location);
}

}  // namespace rad::pki
