#include "pki/private_key.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common/encoding.hpp"
#include "test_pki.hpp"

namespace rad::pki {
namespace {

using test::pki;

const Secret& passphrase() {
    static const Secret secret{std::string_view("test-passphrase")};
    return secret;
}

PrivateKey load_key(const std::string& name, const Secret* pass = nullptr) {
    auto key = PrivateKey::load(pki(name), pass, {});
    if (!key) {
        throw std::runtime_error(key.error().message);
    }
    return *key;
}

Certificate load_cert(const std::string& name) {
    return load_certificate(pki(name)).value();
}

struct KeyCase {
    const char* key;
    const char* cert;
    KeyType type;
    const char* description;
};

const KeyCase kKeys[] = {
    {"rsa2048.key", "rsa2048.pem", KeyType::rsa, "RSA-2048"},
    {"rsa2048-pkcs1.key", "rsa2048.pem", KeyType::rsa, "RSA-2048"},
    {"p256.key", "p256.pem", KeyType::ec, "EC P-256"},
    {"p256-sec1.key", "p256.pem", KeyType::ec, "EC P-256"},
    {"p384.key", "p384.pem", KeyType::ec, "EC P-384"},
    {"p521.key", "p521.pem", KeyType::ec, "EC P-521"},
    {"p256-via-intermediate.key", "p256-via-intermediate.pem", KeyType::ec, "EC P-256"},
};

TEST(PrivateKey, EveryKeyTypeSignsAndVerifies) {
    const std::string message = "AWS4-X509-ECDSA-SHA256\n20240101T000000Z\nscope\nhash";
    for (const auto& c : kKeys) {
        SCOPED_TRACE(c.key);
        const PrivateKey key = load_key(c.key);
        const Certificate cert = load_cert(c.cert);
        EXPECT_EQ(key.key_type(), c.type);
        EXPECT_EQ(key.description(), c.description);
        EXPECT_TRUE(key.matches(cert));
        for (Digest digest : {Digest::sha256, Digest::sha384, Digest::sha512}) {
            auto result = key.sign(message, digest);
            ASSERT_TRUE(result) << result.error().message;
            const std::vector<std::uint8_t> signature = result.value();
            ASSERT_FALSE(signature.empty());
            EXPECT_TRUE(verify(cert, message, signature, digest));
            EXPECT_FALSE(verify(cert, message + ".", signature, digest));
            auto flipped = signature;
            flipped[flipped.size() / 2] ^= 0x01;
            EXPECT_FALSE(verify(cert, message, flipped, digest));
            EXPECT_FALSE(
                verify(cert, message, signature, digest == Digest::sha256 ? Digest::sha512 : Digest::sha256));
        }
    }
}

TEST(PrivateKey, RepeatedAndConcurrentSignaturesAllVerify) {
    // The key keeps one signing context per digest across calls and lets a concurrent caller prepare its
    // own: every signature, from either path and in any digest order, must verify.
    for (const char* name : {"rsa2048", "p256"}) {
        SCOPED_TRACE(name);
        const PrivateKey key = load_key(std::string(name) + ".key");
        const Certificate cert = load_cert(std::string(name) + ".pem");
        std::atomic<int> good{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&, t] {
                for (int i = 0; i < 25; ++i) {
                    const Digest digest = (i + t) % 3 == 0   ? Digest::sha256
                                          : (i + t) % 3 == 1 ? Digest::sha384
                                                             : Digest::sha512;
                    const std::string message = "message " + std::to_string(t) + "/" + std::to_string(i);
                    auto signature = key.sign(message, digest);
                    if (signature && verify(cert, message, *signature, digest)) {
                        ++good;
                    }
                }
            });
        }
        for (auto& thread : threads) {
            thread.join();
        }
        EXPECT_EQ(good.load(), 100);
    }
}

TEST(PrivateKey, SignatureEncodings) {
    // RSA PKCS#1 v1.5: exactly the modulus size. ECDSA: a DER SEQUENCE of two INTEGERs.
    const auto rsa = load_key("rsa2048.key").sign("x", Digest::sha256).value();
    EXPECT_EQ(rsa.size(), 256u);
    // RSA PKCS#1 v1.5 is deterministic, ECDSA is not.
    EXPECT_EQ(rsa, load_key("rsa2048-pkcs1.key").sign("x", Digest::sha256).value());
    const auto ec = load_key("p384.key").sign("x", Digest::sha384).value();
    ASSERT_GE(ec.size(), 8u);
    EXPECT_EQ(ec[0], 0x30);
    EXPECT_EQ(std::size_t{ec[1]} + 2, ec.size());
    EXPECT_EQ(ec[2], 0x02);
}

TEST(PrivateKey, KeysFromDifferentCertificatesDoNotMatch) {
    EXPECT_FALSE(load_key("mismatch.key").matches(load_cert("p256.pem")));
    EXPECT_FALSE(load_key("p256.key").matches(load_cert("p384.pem")));
    EXPECT_FALSE(load_key("rsa2048.key").matches(load_cert("p256.pem")));
    auto signature = load_key("mismatch.key").sign("m", Digest::sha256).value();
    EXPECT_FALSE(verify(load_cert("p256.pem"), "m", signature, Digest::sha256));
}

TEST(PrivateKey, EncryptedPkcs8Variants) {
    const std::pair<const char*, const char*> cases[] = {
        {"p256-enc-aes256-sha256.key", "p256.pem"}, {"p256-enc-aes128-sha1.key", "p256.pem"},
        {"p256-enc-aes192-sha384.key", "p256.pem"}, {"p256-enc-aes256-sha512.key", "p256.pem"},
        {"p256-enc-scrypt.key", "p256.pem"},        {"rsa2048-enc-aes256-sha256.key", "rsa2048.pem"},
    };
    const Secret wrong{std::string_view("test-passphrasf")};
    for (const auto& [name, cert] : cases) {
        SCOPED_TRACE(name);
        auto key = PrivateKey::load(pki(name), &passphrase(), {});
        ASSERT_TRUE(key) << key.error().message;
        EXPECT_TRUE(key->matches(load_cert(cert)));

        auto bad = PrivateKey::load(pki(name), &wrong, {});
        ASSERT_FALSE(bad);
        EXPECT_EQ(bad.error().code, Errc::wrong_passphrase);
        EXPECT_NE(bad.error().message.find(name), std::string::npos);
        EXPECT_EQ(bad.error().message.find("test-passphras"), std::string::npos);

        auto none = PrivateKey::load(pki(name), nullptr, {});
        ASSERT_FALSE(none);
        EXPECT_EQ(none.error().code, Errc::wrong_passphrase);
        EXPECT_NE(none.error().message.find("no passphrase was given"), std::string::npos);
        EXPECT_NE(none.error().message.find("--pkcs8-password-file"), std::string::npos);
    }
}

TEST(PrivateKey, WrongPassphraseLeavesNoOpenSslErrorBehind) {
    const Secret wrong{std::string_view("nope")};
    ASSERT_FALSE(PrivateKey::load(pki("p256-enc-aes256-sha256.key"), &wrong, {}));
    // A later, unrelated operation must succeed and report cleanly.
    EXPECT_TRUE(PrivateKey::load(pki("p256.key"), nullptr, {}));
    auto missing = PrivateKey::load(pki("p256-enc-scrypt.key"), nullptr, {});
    EXPECT_EQ(missing.error().code, Errc::wrong_passphrase);
}

TEST(PrivateKey, Pbes1IsRefused) {
    auto key = PrivateKey::load(pki("p256-enc-pbes1.key"), &passphrase(), {});
    ASSERT_FALSE(key);
    EXPECT_EQ(key.error().code, Errc::input_invalid);
    EXPECT_NE(key.error().message.find("PBES1"), std::string::npos);
}

TEST(PrivateKey, LegacyEncryptedPemIsRefused) {
    const std::string pem =
        "-----BEGIN EC PRIVATE KEY-----\n"
        "Proc-Type: 4,ENCRYPTED\n"
        "DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n"
        "\n"
        "AAECAwQFBgcICQoLDA0ODw==\n"
        "-----END EC PRIVATE KEY-----\n";
    auto key = PrivateKey::from_pem(pem, &passphrase(), "legacy.key");
    ASSERT_FALSE(key);
    EXPECT_EQ(key.error().code, Errc::input_invalid);
    EXPECT_NE(key.error().message.find("legacy.key"), std::string::npos);
    EXPECT_NE(key.error().message.find("Proc-Type"), std::string::npos);
}

TEST(PrivateKey, FromPemSkipsCertificateBlocks) {
    auto key = PrivateKey::from_pem(test::read_file(pki("p256-combined.pem")), nullptr, "combined");
    ASSERT_TRUE(key) << key.error().message;
    EXPECT_TRUE(key->matches(load_cert("p256.pem")));
}

TEST(PrivateKey, NotAKey) {
    for (const char* name : {"garbage.pem", "p256.pem", "truncated.pem", "p256.der"}) {
        SCOPED_TRACE(name);
        auto key = PrivateKey::from_pem(test::read_file(pki(name)), nullptr, name);
        ASSERT_FALSE(key);
        EXPECT_EQ(key.error().code, Errc::input_invalid);
        EXPECT_NE(key.error().message.find(name), std::string::npos);
    }
    // A PRIVATE KEY block whose content is not a key.
    auto bogus = PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n",
                                      &passphrase(), "bogus.key");
    ASSERT_FALSE(bogus);
    EXPECT_EQ(bogus.error().code, Errc::input_invalid);
    // An ENCRYPTED PRIVATE KEY block that is not an EncryptedPrivateKeyInfo is malformed, not a bad
    // passphrase.
    auto bogus_encrypted = PrivateKey::from_pem(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAECAwQF\n-----END ENCRYPTED PRIVATE KEY-----\n",
        &passphrase(), "bogus.key");
    ASSERT_FALSE(bogus_encrypted);
    EXPECT_EQ(bogus_encrypted.error().code, Errc::input_invalid);
}

TEST(PrivateKey, UnsupportedKeysAreRefused) {
    for (const char* name : {"rsa1024.key", "secp256k1.key", "ed25519.key"}) {
        SCOPED_TRACE(name);
        auto key = PrivateKey::load(pki(name), nullptr, {});
        ASSERT_FALSE(key);
        EXPECT_EQ(key.error().code, Errc::unsupported_key);
        EXPECT_NE(key.error().message.find(name), std::string::npos) << key.error().message;
    }
    EXPECT_NE(PrivateKey::load(pki("rsa1024.key"), nullptr, {}).error().message.find("1024"),
              std::string::npos);
    EXPECT_NE(PrivateKey::load(pki("secp256k1.key"), nullptr, {}).error().message.find("secp256k1"),
              std::string::npos);
    EXPECT_NE(PrivateKey::load(pki("ed25519.key"), nullptr, {}).error().message.find("Ed25519"),
              std::string::npos);
}

TEST(PrivateKey, CheckSupportedAcceptsLoadedKeys) {
    for (const auto& c : kKeys) {
        EXPECT_TRUE(check_supported(load_key(c.key), c.key));
    }
}

TEST(PrivateKey, FilePermissions) {
    test::ScratchDir dir;
    const auto loose = dir.copy("p256.key", test::kWorldReadable);
    auto refused = PrivateKey::load(loose, nullptr, {});
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, Errc::unsafe_permissions);
    EXPECT_NE(refused.error().message.find(loose.string()), std::string::npos);
    auto allowed = PrivateKey::load(loose, nullptr, SecretFilePolicy{true});
    ASSERT_TRUE(allowed) << allowed.error().message;
    EXPECT_TRUE(allowed->matches(load_cert("p256.pem")));

    auto missing = PrivateKey::load(dir.path() / "absent.key", nullptr, {});
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, Errc::input_missing);
}

TEST(PrivateKey, SignStringPublicKeyFormats) {
    // Both encodings appear verbatim inside the certificate's SubjectPublicKeyInfo BIT STRING.
    struct Case {
        const char* key;
        const char* cert;
        std::size_t size;
    };
    for (const Case& c : {Case{"p256.key", "p256.pem", 65}, Case{"p384.key", "p384.pem", 97},
                          Case{"p521.key", "p521.pem", 133}}) {
        SCOPED_TRACE(c.key);
        const std::string point = load_key(c.key).sign_string_public_key().value();
        ASSERT_EQ(point.size(), c.size);
        EXPECT_EQ(point[0], '\x04');
        EXPECT_NE(load_cert(c.cert).der().find(point), std::string::npos);
    }
    const std::string rsa = load_key("rsa2048.key").sign_string_public_key().value();
    // RSAPublicKey ::= SEQUENCE { modulus INTEGER (257 bytes with the sign byte), publicExponent 65537 }.
    EXPECT_EQ(hex_lower(rsa.substr(0, 4)), "3082010a");
    EXPECT_EQ(hex_lower(rsa.substr(rsa.size() - 5)), "0203010001");
    EXPECT_NE(load_cert("rsa2048.pem").der().find(rsa), std::string::npos);
    EXPECT_EQ(rsa, load_key("rsa2048-pkcs1.key").sign_string_public_key().value());
}

TEST(Sha256, KnownVectors) {
    EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256("abc").size(), 32u);
    EXPECT_EQ(hex_lower(sha256("abc")), sha256_hex("abc"));
}

}  // namespace
}  // namespace rad::pki
