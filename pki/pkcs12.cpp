#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>

#include <algorithm>
#include <mutex>
#include <optional>

#include "pki/identity.hpp"
#include "pki/ossl.hpp"

namespace rad::pki {

bool is_pkcs12(std::string_view bytes) {
    // A PFX is a DER SEQUENCE; PEM text and DER certificates fail the full decode below.
    if (bytes.size() < 4 || bytes.size() > kMaxInputFileBytes ||
        static_cast<unsigned char>(bytes[0]) != 0x30) {
        return false;
    }
    const unsigned char* p = ossl::bytes(bytes);
    ossl::Pkcs12Ptr p12(d2i_PKCS12(nullptr, &p, static_cast<long>(bytes.size())));
    ossl::clear_errors();
    return p12 != nullptr && p == ossl::bytes(bytes) + bytes.size();
}

namespace ossl {
namespace {

// load_legacy_provider makes RC2-40 and other pre-2009 PKCS#12 algorithms available, once per process.
// It is loaded only when a bundle needs it; a system without the module simply cannot read such bundles.
bool load_legacy_provider() {
    static std::once_flag once;
    static bool loaded = false;
    std::call_once(once, [] {
        // Loading any provider explicitly turns off the implicit default one, so it is loaded as well.
        OSSL_PROVIDER* default_provider = OSSL_PROVIDER_load(nullptr, "default");
        OSSL_PROVIDER* legacy = OSSL_PROVIDER_load(nullptr, "legacy");
        loaded = default_provider != nullptr && legacy != nullptr;
        clear_errors();
    });
    return loaded;
}

// Password is the password a bundle opened with: none (NULL), the empty string, or the given passphrase.
struct Password {
    const char* data;
    int length;
};

std::optional<Password> find_password(PKCS12* p12, const Secret* passphrase) {
    if (passphrase != nullptr) {
        const Password given{passphrase->reveal().data(), static_cast<int>(passphrase->size())};
        if (PKCS12_mac_present(p12) == 0 || PKCS12_verify_mac(p12, given.data, given.length) == 1) {
            return given;
        }
        return std::nullopt;
    }
    // Tools disagree on what "no password" means for the PKCS#12 KDF: an empty BMPString (two zero bytes)
    // or no bytes at all. Both are tried, as PKCS12_parse does.
    if (PKCS12_mac_present(p12) == 0) {
        return Password{nullptr, 0};
    }
    if (PKCS12_verify_mac(p12, "", 0) == 1) {
        return Password{"", 0};
    }
    if (PKCS12_verify_mac(p12, nullptr, 0) == 1) {
        return Password{nullptr, 0};
    }
    return std::nullopt;
}

struct Parsed {
    EvpPkeyPtr key;
    X509Ptr cert;
    X509StackPtr others;
};

bool parse(PKCS12* p12, const Password& password, Parsed& out) {
    EVP_PKEY* key = nullptr;
    X509* cert = nullptr;
    STACK_OF(X509)* others = nullptr;
    const int ok = PKCS12_parse(p12, password.data, &key, &cert, &others);
    out.key.reset(key);
    out.cert.reset(cert);
    out.others.reset(others);
    return ok == 1;
}

// ml_dsa_in_bundle looks through the bags that `password` opens for an ML-DSA key or certificate, by
// algorithm OID: where OpenSSL has no ML-DSA (before 3.5) PKCS12_parse fails on such a key without saying
// why.
std::optional<KeyType> ml_dsa_in_bundle(PKCS12* p12, const Password& password) {
    std::optional<KeyType> found;
    STACK_OF(PKCS7)* safes = PKCS12_unpack_authsafes(p12);
    for (int i = 0; safes != nullptr && i < sk_PKCS7_num(safes) && !found; ++i) {
        PKCS7* safe = sk_PKCS7_value(safes, i);
        STACK_OF(PKCS12_SAFEBAG)* bags = nullptr;
        switch (OBJ_obj2nid(safe->type)) {
            case NID_pkcs7_data:
                bags = PKCS12_unpack_p7data(safe);
                break;
            case NID_pkcs7_encrypted:
                bags = PKCS12_unpack_p7encdata(safe, password.data, password.length);
                break;
            default:
                break;
        }
        for (int j = 0; bags != nullptr && j < sk_PKCS12_SAFEBAG_num(bags) && !found; ++j) {
            const PKCS12_SAFEBAG* bag = sk_PKCS12_SAFEBAG_value(bags, j);
            const ASN1_OBJECT* algorithm = nullptr;
            switch (PKCS12_SAFEBAG_get_nid(bag)) {
                case NID_keyBag:
                    PKCS8_pkey_get0(&algorithm, nullptr, nullptr, nullptr, PKCS12_SAFEBAG_get0_p8inf(bag));
                    found = ml_dsa_from_oid(oid_text(algorithm));
                    break;
                case NID_pkcs8ShroudedKeyBag: {
                    Pkcs8InfoPtr info(PKCS12_decrypt_skey(bag, password.data, password.length));
                    if (info && PKCS8_pkey_get0(&algorithm, nullptr, nullptr, nullptr, info.get()) == 1) {
                        found = ml_dsa_from_oid(oid_text(algorithm));
                    }
                    break;
                }
                case NID_certBag: {
                    X509Ptr x509(PKCS12_SAFEBAG_get1_cert(bag));
                    const X509_PUBKEY* spki = x509 ? X509_get_X509_PUBKEY(x509.get()) : nullptr;
                    if (spki != nullptr && X509_PUBKEY_get0_param(const_cast<ASN1_OBJECT**>(&algorithm),
                                                                  nullptr, nullptr, nullptr, spki) == 1) {
                        found = ml_dsa_from_oid(oid_text(algorithm));
                    }
                    break;
                }
                default:
                    break;
            }
        }
        sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    }
    sk_PKCS7_pop_free(safes, PKCS7_free);
    clear_errors();
    return found;
}

}  // namespace

Result<Pkcs12Contents> load_pkcs12(std::string_view der, const Secret* passphrase, std::string_view origin) {
    const std::string where(origin);
    const unsigned char* p = bytes(der);
    Pkcs12Ptr p12(d2i_PKCS12(nullptr, &p, static_cast<long>(der.size())));
    if (!p12) {
        return make_error(Errc::input_invalid,
                          where + ": not a PKCS#12 bundle (" + take_error_reason() + ")");
    }
    const auto password = find_password(p12.get(), passphrase);
    clear_errors();
    if (!password) {
        if (passphrase == nullptr) {
            return make_error(Errc::wrong_passphrase,
                              where +
                                  ": the PKCS#12 bundle is password-protected and no passphrase was given "
                                  "(--pkcs8-password-file or --pkcs8-password-env)");
        }
        return make_error(Errc::wrong_passphrase, where + ": wrong passphrase for the PKCS#12 bundle");
    }
    Parsed parsed;
    if (!parse(p12.get(), *password, parsed)) {
        clear_errors();
        if (!ml_dsa_available()) {
            if (const auto ml_dsa = ml_dsa_in_bundle(p12.get(), *password)) {
                return ml_dsa_unavailable(origin, "the PKCS#12 bundle's key", *ml_dsa);
            }
        }
        // The MAC matched, so the password is right: the contents use an algorithm the default provider
        // lacks (RC2-40 from old Windows or Java exports).
        if (!load_legacy_provider() || !parse(p12.get(), *password, parsed)) {
            return make_error(Errc::input_invalid,
                              where + ": cannot decrypt the PKCS#12 contents (" + take_error_reason() +
                                  "); an RC2 or DES bundle needs OpenSSL's legacy provider");
        }
    }
    if (!parsed.key) {
        return make_error(Errc::input_invalid, where + ": the PKCS#12 bundle holds no private key");
    }

    // PKCS12_parse picks the certificate by localKeyID, which not every tool writes: choose by public key.
    std::vector<Certificate> certificates;
    auto add = [&](X509* x509) -> Result<void> {
        auto certificate = certificate_from_x509(x509, origin);
        if (!certificate) {
            return certificate.error();
        }
        certificates.push_back(std::move(*certificate));
        return {};
    };
    if (parsed.cert) {
        if (auto r = add(parsed.cert.get()); !r) {
            return r.error();
        }
    }
    for (int i = 0; parsed.others && i < sk_X509_num(parsed.others.get()); ++i) {
        if (auto r = add(sk_X509_value(parsed.others.get(), i)); !r) {
            return r.error();
        }
    }
    auto key = PrivateKey::adopt(parsed.key.release(), origin);
    if (!key) {
        return key.error();
    }
    std::optional<std::size_t> leaf_index;
    for (std::size_t i = 0; i < certificates.size() && !leaf_index; ++i) {
        if (key->matches(certificates[i])) {
            leaf_index = i;
        }
    }
    if (!leaf_index) {
        return make_error(Errc::key_cert_mismatch,
                          where + ": the PKCS#12 bundle holds no certificate for its private key");
    }
    Certificate leaf = certificates[*leaf_index];
    certificates.erase(certificates.begin() + static_cast<std::ptrdiff_t>(*leaf_index));

    // Bags come in any order: walk up from the leaf, taking each certificate's issuer. Certificates that
    // are not on the leaf's path (other roots, unrelated CAs) cannot help the service and are left out.
    std::vector<Certificate> chain;
    const Certificate* child = &leaf;
    for (;;) {
        auto issuer = std::find_if(certificates.begin(), certificates.end(),
                                   [&](const Certificate& c) { return child->issued_by(c); });
        if (issuer == certificates.end()) {
            break;
        }
        chain.push_back(*issuer);
        certificates.erase(issuer);
        child = &chain.back();
    }
    return Pkcs12Contents{take(key), std::move(leaf), std::move(chain)};
}

}  // namespace ossl
}  // namespace rad::pki
