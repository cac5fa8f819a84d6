// ML-DSA-44/65/87 keys and certificates (tests/data/mldsa, made by its make-fixtures with the openssl 3.5
// command line). Where OpenSSL has ML-DSA (3.5 or later) they load and sign to the bytes openssl made; before
// 3.5 every one of them is refused with the one-line ml_dsa_unavailable message. Which of the two sets is
// compiled follows the OpenSSL the tests build against, which is the one they run with.

#include <openssl/crypto.h>
#include <openssl/opensslv.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/encoding.hpp"
#include "pki/identity.hpp"
#include "pki/private_key.hpp"
#include "test_pki.hpp"

namespace rad::pki {
namespace {

std::filesystem::path mldsa(const std::string& name) {
    const char* dir = std::getenv("RAD_TEST_DATA");
    if (dir == nullptr) {
        throw std::runtime_error("RAD_TEST_DATA is not set (run the tests through ctest)");
    }
    return std::filesystem::path(dir) / "mldsa" / name;
}

const Secret& passphrase() {
    static const Secret secret{std::string_view("mldsa-test-passphrase")};
    return secret;
}

// from_file parses a checked-in key as PrivateKey::load would, without the permission rules (the files are
// world-readable in a checkout).
Result<PrivateKey> from_file(const std::string& name, const Secret* pass = nullptr) {
    return PrivateKey::from_pem(test::read_file(mldsa(name)), pass, mldsa(name).string());
}

IdentitySource source(const std::string& cert, const std::string& key = "") {
    IdentitySource s;
    s.certificate = mldsa(cert);
    if (!key.empty()) {
        s.private_key = mldsa(key);
    }
    s.key_file_policy.allow_loose_permissions = true;
    return s;
}

struct Variant {
    const char* name;  // "mldsa65"
    KeyType type;
    const char* description;
};

const Variant kVariants[] = {
    {"mldsa44", KeyType::ml_dsa_44, "ML-DSA-44"},
    {"mldsa65", KeyType::ml_dsa_65, "ML-DSA-65"},
    {"mldsa87", KeyType::ml_dsa_87, "ML-DSA-87"},
};

TEST(MlDsa, OidsAndNames) {
    EXPECT_EQ(ml_dsa_from_oid("2.16.840.1.101.3.4.3.17"), KeyType::ml_dsa_44);
    EXPECT_EQ(ml_dsa_from_oid("2.16.840.1.101.3.4.3.18"), KeyType::ml_dsa_65);
    EXPECT_EQ(ml_dsa_from_oid("2.16.840.1.101.3.4.3.19"), KeyType::ml_dsa_87);
    for (const char* other : {"", "2.16.840.1.101.3.4.3.16", "2.16.840.1.101.3.4.3.20",
                              "2.16.840.1.101.3.4.3.1", "1.2.840.10045.2.1", "2.16.840.1.101.3.4.3.170"}) {
        EXPECT_EQ(ml_dsa_from_oid(other), std::nullopt) << other;
    }
    EXPECT_EQ(key_type_name(KeyType::rsa), "RSA");
    EXPECT_EQ(key_type_name(KeyType::ec), "EC");
    for (const auto& v : kVariants) {
        EXPECT_EQ(key_type_name(v.type), v.description);
        EXPECT_TRUE(is_ml_dsa(v.type));
    }
    EXPECT_FALSE(is_ml_dsa(KeyType::rsa));
    EXPECT_FALSE(is_ml_dsa(KeyType::ec));
}

TEST(MlDsa, CertificatesAreRecognisedByTheirOid) {
    // Whatever OpenSSL can do with the key, the certificate's algorithm OID names the parameter set.
    for (const auto& v : kVariants) {
        for (const char* issuer : {".self.pem", ".ec.pem", ".rsa.pem"}) {
            const std::string name = std::string(v.name) + issuer;
            SCOPED_TRACE(name);
            const Certificate cert = load_certificate(mldsa(name)).value();
            EXPECT_EQ(cert.ml_dsa_type(), v.type);
        }
    }
    EXPECT_EQ(load_certificate(mldsa("ca-ec.pem")).value().ml_dsa_type(), std::nullopt);
    EXPECT_EQ(load_certificate(mldsa("ca-rsa.pem")).value().ml_dsa_type(), std::nullopt);
}

#if OPENSSL_VERSION_NUMBER >= 0x30500000L

TEST(MlDsa, AvailableOnThisOpenSsl) {
    EXPECT_TRUE(ml_dsa_available());
}

TEST(MlDsa, KeysLoadInEveryLayoutAndMatchTheirCertificates) {
    for (const auto& v : kVariants) {
        std::vector<std::pair<std::string, const Secret*>> files{
            {std::string(v.name) + ".key", nullptr}, {std::string(v.name) + ".enc.key", &passphrase()}};
        if (v.type == KeyType::ml_dsa_65) {
            files.emplace_back("mldsa65.seed-only.key", nullptr);
            files.emplace_back("mldsa65.priv-only.key", nullptr);
        }
        for (const auto& [file, pass] : files) {
            SCOPED_TRACE(file);
            auto key = from_file(file, pass);
            ASSERT_TRUE(key) << key.error().message;
            EXPECT_EQ(key->key_type(), v.type);
            EXPECT_EQ(key->description(), v.description);
            EXPECT_TRUE(check_supported(*key, file));
            for (const char* issuer : {".self.pem", ".ec.pem", ".rsa.pem"}) {
                const Certificate cert = load_certificate(mldsa(std::string(v.name) + issuer)).value();
                EXPECT_TRUE(key->matches(cert)) << issuer;
                EXPECT_EQ(cert.key_type().value(), v.type);
            }
        }
    }
}

TEST(MlDsa, EncryptedKeyWithoutOrWithAWrongPassphrase) {
    auto none = from_file("mldsa65.enc.key");
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().code, Errc::wrong_passphrase);
    const Secret wrong{std::string_view("not-the-passphrase")};
    auto bad = from_file("mldsa65.enc.key", &wrong);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, Errc::wrong_passphrase);
}

TEST(MlDsa, SignaturesAreTheDeterministicBytesOpensslMade) {
    // make-fixtures signed sign-string.msg with `openssl pkeyutl -rawin -pkeyopt deterministic:1`: pure
    // ML-DSA, empty context. The digest argument does not enter an ML-DSA signature.
    const std::string message = test::read_file(mldsa("sign-string.msg"));
    ASSERT_EQ(message, "AWS Roles Anywhere Credential Helper Signing Test1");
    for (const auto& v : kVariants) {
        SCOPED_TRACE(v.name);
        const std::string golden = test::read_file(mldsa(std::string(v.name) + ".sign-string.hex"));
        const PrivateKey key = from_file(std::string(v.name) + ".key").value();
        const Certificate cert = load_certificate(mldsa(std::string(v.name) + ".self.pem")).value();
        for (Digest digest : {Digest::sha256, Digest::sha384, Digest::sha512}) {
            auto signature = key.sign(message, digest);
            ASSERT_TRUE(signature) << signature.error().message;
            EXPECT_EQ(hex_lower(*signature), golden);
            EXPECT_TRUE(verify(cert, message, *signature, digest));
            EXPECT_FALSE(verify(cert, message + ".", *signature, digest));
            auto flipped = *signature;
            flipped[flipped.size() / 2] ^= 0x01;
            EXPECT_FALSE(verify(cert, message, flipped, digest));
        }
        // The encrypted copy is the same key: the same bytes.
        const PrivateKey encrypted = from_file(std::string(v.name) + ".enc.key", &passphrase()).value();
        EXPECT_EQ(hex_lower(encrypted.sign(message, Digest::sha256).value()), golden);
    }
}

TEST(MlDsa, IdentitiesFromPemPairsAndPkcs12) {
    for (const auto& v : kVariants) {
        SCOPED_TRACE(v.name);
        for (const char* issuer : {".self.pem", ".ec.pem", ".rsa.pem"}) {
            auto identity = load_identity(source(std::string(v.name) + issuer, std::string(v.name) + ".key"),
                                          std::chrono::system_clock::now());
            ASSERT_TRUE(identity) << identity.error().message;
            EXPECT_EQ(identity->key.key_type(), v.type);
            const auto signature = identity->key.sign("message", Digest::sha256);
            ASSERT_TRUE(signature) << signature.error().message;
            EXPECT_TRUE(verify(identity->leaf, "message", *signature, Digest::sha256));
        }
        IdentitySource p12 = source(std::string(v.name) + ".p12");
        p12.passphrase.emplace(std::string_view("mldsa-test-passphrase"));
        auto bundle = load_identity(p12, std::chrono::system_clock::now());
        ASSERT_TRUE(bundle) << bundle.error().message;
        EXPECT_EQ(bundle->key.key_type(), v.type);
        EXPECT_EQ(bundle->leaf.subject(),
                  std::string("CN=rad ML-DSA-") + (v.description + 7) + " issued by EC");
        ASSERT_EQ(bundle->chain.size(), 1u);
        EXPECT_EQ(bundle->chain[0].subject(), "CN=rad ML-DSA test EC CA");
    }
}

TEST(MlDsa, AKeyOfAnotherParameterSetDoesNotMatch) {
    auto identity =
        load_identity(source("mldsa65.self.pem", "mldsa44.key"), std::chrono::system_clock::now());
    ASSERT_FALSE(identity);
    EXPECT_EQ(identity.error().code, Errc::key_cert_mismatch) << identity.error().message;
}

#else  // OpenSSL before 3.5: no ML-DSA

// expect_refused checks the one-line refusal: unsupported_key (exit 65), naming the file and OpenSSL 3.5.
template <class T>
void expect_refused(const Result<T>& r, const std::filesystem::path& file, const std::string& what) {
    ASSERT_FALSE(r) << "loaded although OpenSSL has no ML-DSA";
    EXPECT_EQ(r.error().code, Errc::unsupported_key) << r.error().message;
    EXPECT_EQ(r.error().message.rfind(file.string() + ": " + what + " is ML-DSA-", 0), 0u)
        << r.error().message;
    EXPECT_NE(r.error().message.find(", and ML-DSA needs OpenSSL 3.5 or later (this system has OpenSSL 3."),
              std::string::npos)
        << r.error().message;
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
}

TEST(MlDsa, NotAvailableOnThisOpenSsl) {
    EXPECT_FALSE(ml_dsa_available());
}

TEST(MlDsa, KeysAreRefusedByName) {
    for (const char* file :
         {"mldsa44.key", "mldsa65.key", "mldsa87.key", "mldsa65.seed-only.key", "mldsa65.priv-only.key"}) {
        SCOPED_TRACE(file);
        expect_refused(from_file(file), mldsa(file), "the private key");
    }
    // Encrypted: refused once decrypted, not taken for a wrong passphrase.
    for (const char* file : {"mldsa44.enc.key", "mldsa65.enc.key", "mldsa87.enc.key"}) {
        SCOPED_TRACE(file);
        expect_refused(from_file(file, &passphrase()), mldsa(file), "the private key");
    }
}

TEST(MlDsa, CertificatesAreRefusedByName) {
    for (const auto& v : kVariants) {
        SCOPED_TRACE(v.name);
        const Certificate cert = load_certificate(mldsa(std::string(v.name) + ".ec.pem")).value();
        const auto type = cert.key_type();
        ASSERT_FALSE(type);
        EXPECT_EQ(type.error().code, Errc::unsupported_key);
        EXPECT_EQ(type.error().message,
                  std::string("the certificate's key is ") + v.description +
                      ", and ML-DSA needs OpenSSL 3.5 or later (this system has OpenSSL " +
                      OpenSSL_version(OPENSSL_VERSION_STRING) + ")");
    }
}

TEST(MlDsa, Pkcs12BundlesAreRefusedByName) {
    for (const auto& v : kVariants) {
        SCOPED_TRACE(v.name);
        IdentitySource p12 = source(std::string(v.name) + ".p12");
        p12.passphrase.emplace(std::string_view("mldsa-test-passphrase"));
        expect_refused(load_identity(p12, std::chrono::system_clock::now()),
                       mldsa(std::string(v.name) + ".p12"), "the PKCS#12 bundle's key");
    }
}

TEST(MlDsa, IdentitiesAreRefusedBeforeAnySignature) {
    // The pair: the key is read first, so it is the one named.
    auto pair = load_identity(source("mldsa65.ec.pem", "mldsa65.key"), std::chrono::system_clock::now());
    expect_refused(pair, mldsa("mldsa65.key"), "the private key");
    // An ML-DSA certificate with a key this OpenSSL can read: the certificate is named, not a mismatch.
    IdentitySource mixed = source("mldsa87.rsa.pem");
    mixed.private_key = mldsa("ca-ec.key");
    expect_refused(load_identity(mixed, std::chrono::system_clock::now()), mldsa("mldsa87.rsa.pem"),
                   "the certificate's key");
}

#endif

}  // namespace
}  // namespace rad::pki
