#include "pki/identity.hpp"

#include <gtest/gtest.h>

#include "test_pki.hpp"

namespace rad::pki {
namespace {

using test::pki;

IdentitySource source(const std::string& cert, const std::string& key = "", const std::string& chain = "") {
    IdentitySource s;
    s.certificate = pki(cert);
    if (!key.empty()) {
        s.private_key = pki(key);
    }
    if (!chain.empty()) {
        s.intermediates = pki(chain);
    }
    return s;
}

IdentitySource with_passphrase(IdentitySource s, std::string_view pass = "test-passphrase") {
    s.passphrase.emplace(pass);
    return s;
}

Result<Identity> load(const IdentitySource& s) {
    return load_identity(s, std::chrono::system_clock::now());
}

// expect_error checks the class of a failure and that its one-line message names `file`.
void expect_error(const Result<Identity>& r, Errc code, const std::string& file) {
    ASSERT_FALSE(r) << "loaded although " << errc_name(code) << " was expected";
    EXPECT_EQ(r.error().code, code) << r.error().message;
    EXPECT_NE(r.error().message.find(file), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
}

// expect_signs checks that the identity's key signs for its leaf.
void expect_signs(const Identity& identity) {
    const auto signature = identity.key.sign("message", Digest::sha256);
    ASSERT_TRUE(signature) << signature.error().message;
    EXPECT_TRUE(verify(identity.leaf, "message", *signature, Digest::sha256));
}

TEST(LoadIdentity, PemPairs) {
    const auto serials = test::serials();
    for (const auto& [cert, key] :
         std::vector<std::pair<std::string, std::string>>{{"rsa2048.pem", "rsa2048.key"},
                                                          {"rsa2048.pem", "rsa2048-pkcs1.key"},
                                                          {"p256.pem", "p256.key"},
                                                          {"p256.pem", "p256-sec1.key"},
                                                          {"p384.pem", "p384.key"},
                                                          {"p521.pem", "p521.key"},
                                                          {"p256.der", "p256.key"}}) {
        SCOPED_TRACE(cert + " " + key);
        auto identity = load(source(cert, key));
        ASSERT_TRUE(identity) << identity.error().message;
        EXPECT_TRUE(identity.value().chain.empty());
        const std::string stem = cert.substr(0, cert.find('.'));
        EXPECT_EQ(identity.value().leaf.serial_decimal(), serials.at(stem));
        expect_signs(identity.value());
    }
}

TEST(LoadIdentity, EncryptedKeys) {
    for (const char* key :
         {"p256-enc-aes256-sha256.key", "p256-enc-aes128-sha1.key", "p256-enc-aes192-sha384.key",
          "p256-enc-aes256-sha512.key", "p256-enc-scrypt.key"}) {
        SCOPED_TRACE(key);
        auto identity = load(with_passphrase(source("p256.pem", key)));
        ASSERT_TRUE(identity) << identity.error().message;
        expect_signs(identity.value());
        expect_error(load(with_passphrase(source("p256.pem", key), "wrong")), Errc::wrong_passphrase, key);
        expect_error(load(source("p256.pem", key)), Errc::wrong_passphrase, key);
    }
    auto rsa = load(with_passphrase(source("rsa2048.pem", "rsa2048-enc-aes256-sha256.key")));
    ASSERT_TRUE(rsa) << rsa.error().message;
    EXPECT_EQ(rsa.value().key.key_type(), KeyType::rsa);
}

TEST(LoadIdentity, CombinedPem) {
    auto identity = load(source("p256-combined.pem"));
    ASSERT_TRUE(identity) << identity.error().message;
    expect_signs(identity.value());
    // Without --private-key, a certificate-only file has no key.
    expect_error(load(source("p256.pem")), Errc::input_invalid, "p256.pem");
}

TEST(LoadIdentity, CombinedPemIsASecretFile) {
    test::ScratchDir dir;
    IdentitySource s;
    s.certificate = dir.copy("p256-combined.pem", test::kWorldReadable);
    expect_error(load(s), Errc::unsafe_permissions, "p256-combined.pem");
    s.key_file_policy.allow_loose_permissions = true;
    EXPECT_TRUE(load(s));
}

TEST(LoadIdentity, Pkcs12Bundles) {
    const auto serials = test::serials();
    struct Case {
        const char* file;
        bool with_passphrase;
        const char* serial_of;
        KeyType type;
    };
    for (const Case& c : {Case{"p256-modern.p12", true, "p256", KeyType::ec},
                          Case{"p256-modern-empty.p12", false, "p256", KeyType::ec},
                          Case{"rsa2048-legacy.p12", true, "rsa2048", KeyType::rsa},
                          Case{"rsa2048-legacy-empty.p12", false, "rsa2048", KeyType::rsa}}) {
        SCOPED_TRACE(c.file);
        const IdentitySource s = c.with_passphrase ? with_passphrase(source(c.file)) : source(c.file);
        auto identity = load(s);
        ASSERT_TRUE(identity) << identity.error().message;
        EXPECT_EQ(identity.value().leaf.serial_decimal(), serials.at(c.serial_of));
        EXPECT_EQ(identity.value().key.key_type(), c.type);
        EXPECT_TRUE(identity.value().chain.empty());
        expect_signs(identity.value());
        if (c.with_passphrase) {
            expect_error(load(with_passphrase(source(c.file), "wrong")), Errc::wrong_passphrase, c.file);
            expect_error(load(source(c.file)), Errc::wrong_passphrase, c.file);
        }
    }
}

TEST(LoadIdentity, Pkcs12WithChain) {
    auto identity = load(with_passphrase(source("via-intermediate.p12")));
    ASSERT_TRUE(identity) << identity.error().message;
    EXPECT_EQ(identity.value().leaf.der(), load_certificate(pki("p256-via-intermediate.pem")).value().der());
    ASSERT_EQ(identity.value().chain.size(), 1u);
    EXPECT_EQ(identity.value().chain[0].der(), load_certificate(pki("intermediate-ca.pem")).value().der());
    expect_signs(identity.value());
}

TEST(LoadIdentity, Pkcs12RefusesSeparateChainOrKey) {
    auto chain = load(with_passphrase(source("p256-modern.p12", "", "intermediates.pem")));
    ASSERT_FALSE(chain);
    EXPECT_EQ(chain.error().code, Errc::usage);
    EXPECT_NE(chain.error().message.find("--intermediates"), std::string::npos);
    auto key = load(with_passphrase(source("p256-modern.p12", "p256.key")));
    ASSERT_FALSE(key);
    EXPECT_EQ(key.error().code, Errc::usage);
}

TEST(LoadIdentity, IsPkcs12) {
    EXPECT_TRUE(is_pkcs12(test::read_file(pki("p256-modern.p12"))));
    EXPECT_TRUE(is_pkcs12(test::read_file(pki("rsa2048-legacy.p12"))));
    EXPECT_FALSE(is_pkcs12(test::read_file(pki("p256.der"))));
    EXPECT_FALSE(is_pkcs12(test::read_file(pki("p256.pem"))));
    EXPECT_FALSE(is_pkcs12(""));
    const std::string p12 = test::read_file(pki("p256-modern.p12"));
    EXPECT_FALSE(is_pkcs12(p12.substr(0, p12.size() / 2)));
}

TEST(LoadIdentity, Intermediates) {
    auto identity =
        load(source("p256-via-intermediate.pem", "p256-via-intermediate.key", "intermediates.pem"));
    ASSERT_TRUE(identity) << identity.error().message;
    ASSERT_EQ(identity.value().chain.size(), 2u);
    EXPECT_EQ(identity.value().chain[0].subject(), "CN=Test Intermediate CA,O=rolesanywhere-agent tests");
    EXPECT_EQ(identity.value().chain[1].subject(), "CN=Test Root CA,O=rolesanywhere-agent tests");

    expect_error(load(source("p256-via-intermediate.pem", "p256-via-intermediate.key",
                             "intermediates-wrong-order.pem")),
                 Errc::certificate_invalid, "intermediates-wrong-order.pem");
    // A leaf issued by the root does not chain to the intermediate.
    expect_error(load(source("p256.pem", "p256.key", "intermediates.pem")), Errc::certificate_invalid,
                 "intermediates.pem");
    expect_error(load(source("p256.pem", "p256.key", "garbage.pem")), Errc::input_invalid, "garbage.pem");
    expect_error(load(source("p256.pem", "p256.key", "absent.pem")), Errc::input_missing, "absent.pem");
}

TEST(LoadIdentity, Refusals) {
    struct Case {
        const char* cert;
        const char* key;
        Errc code;
        const char* named;
    };
    for (const Case& c : {
             Case{"rsa1024.pem", "rsa1024.key", Errc::unsupported_key, "rsa1024.key"},
             Case{"secp256k1.pem", "secp256k1.key", Errc::unsupported_key, "secp256k1.key"},
             Case{"ed25519.pem", "ed25519.key", Errc::unsupported_key, "ed25519.key"},
             Case{"ca-as-leaf.pem", "ca-as-leaf.key", Errc::certificate_invalid, "ca-as-leaf.pem"},
             Case{"no-digital-signature.pem", "no-digital-signature.key", Errc::certificate_invalid,
                  "no-digital-signature.pem"},
             Case{"v1.pem", "v1.key", Errc::certificate_invalid, "v1.pem"},
             Case{"expired.pem", "expired.key", Errc::certificate_expired, "expired.pem"},
             Case{"not-yet-valid.pem", "not-yet-valid.key", Errc::certificate_not_yet_valid,
                  "not-yet-valid.pem"},
             Case{"p256.pem", "mismatch.key", Errc::key_cert_mismatch, "mismatch.key"},
             Case{"rsa2048.pem", "p256.key", Errc::key_cert_mismatch, "p256.key"},
             Case{"garbage.pem", "p256.key", Errc::input_invalid, "garbage.pem"},
             Case{"truncated.pem", "p256.key", Errc::input_invalid, "truncated.pem"},
             Case{"absent.pem", "p256.key", Errc::input_missing, "absent.pem"},
             Case{"p256.pem", "absent.key", Errc::input_missing, "absent.key"},
         }) {
        SCOPED_TRACE(std::string(c.cert) + " " + c.key);
        expect_error(load(source(c.cert, c.key)), c.code, c.named);
    }
}

TEST(LoadIdentity, KeyFileWithoutAKey) {
    test::ScratchDir dir;
    IdentitySource s = source("p256.pem");
    s.private_key = dir.copy("p256.pem", test::kOwnerOnly);
    expect_error(load(s), Errc::input_invalid, s.private_key.string());
}

TEST(LoadIdentity, CertificateErrorsComeFirst) {
    // A broken certificate is reported even when the key is also wrong.
    expect_error(load(source("garbage.pem", "absent.key")), Errc::input_invalid, "garbage.pem");
    // The key is checked before the leaf rules.
    expect_error(load(source("expired.pem", "rsa1024.key")), Errc::unsupported_key, "rsa1024.key");
}

TEST(LoadIdentity, ValidityCheckCanBeSkipped) {
    for (const char* name : {"expired", "not-yet-valid"}) {
        IdentitySource s = source(std::string(name) + ".pem", std::string(name) + ".key");
        s.check_validity_period = false;
        auto identity = load(s);
        ASSERT_TRUE(identity) << identity.error().message;
    }
    // The other leaf rules still apply.
    IdentitySource ca = source("ca-as-leaf.pem", "ca-as-leaf.key");
    ca.check_validity_period = false;
    expect_error(load(ca), Errc::certificate_invalid, "ca-as-leaf.pem");
}

TEST(LoadIdentity, ValidityIsCheckedAtTheGivenTime) {
    const Certificate leaf = load_certificate(pki("p256.pem")).value();
    const IdentitySource s = source("p256.pem", "p256.key");
    auto later = load_identity(s, leaf.not_after() + std::chrono::hours(1));
    ASSERT_FALSE(later);
    EXPECT_EQ(later.error().code, Errc::certificate_expired);
    auto earlier = load_identity(s, leaf.not_before() - std::chrono::hours(1));
    ASSERT_FALSE(earlier);
    EXPECT_EQ(earlier.error().code, Errc::certificate_not_yet_valid);
    EXPECT_TRUE(load_identity(s, leaf.not_before() + std::chrono::hours(1)));
}

TEST(LoadIdentity, KeyFilePermissions) {
    test::ScratchDir dir;
    IdentitySource s = source("p256.pem");
    s.private_key = dir.copy("p256.key", test::kWorldReadable);
    expect_error(load(s), Errc::unsafe_permissions, s.private_key.string());
    s.key_file_policy.allow_loose_permissions = true;
    auto identity = load(s);
    ASSERT_TRUE(identity) << identity.error().message;
    expect_signs(identity.value());

    IdentitySource p12;
    p12.certificate = dir.copy("p256-modern-empty.p12", test::kWorldReadable);
    expect_error(load(p12), Errc::unsafe_permissions, "p256-modern-empty.p12");
}

}  // namespace
}  // namespace rad::pki
