#include "pki/certificate.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <chrono>

#include "common/encoding.hpp"
#include "common/time_format.hpp"
#include "test_pki.hpp"

namespace rad::pki {
namespace {

using namespace std::chrono_literals;
using test::pki;

Certificate load(const std::string& name) {
    auto certificate = load_certificate(pki(name));
    if (!certificate) {
        throw std::runtime_error(certificate.error().message);
    }
    return *certificate;
}

// hex_to_decimal converts an uppercase hex string to decimal (schoolbook, base 10^9 limbs).
std::string hex_to_decimal(const std::string& hex) {
    std::vector<std::uint32_t> limbs{0};  // little endian, base 1e9
    for (char c : hex) {
        std::uint64_t carry = static_cast<std::uint64_t>(std::stoi(std::string(1, c), nullptr, 16));
        for (auto& limb : limbs) {
            const std::uint64_t v = std::uint64_t{limb} * 16 + carry;
            limb = static_cast<std::uint32_t>(v % 1000000000);
            carry = v / 1000000000;
        }
        if (carry != 0) {
            limbs.push_back(static_cast<std::uint32_t>(carry));
        }
    }
    std::string out = std::to_string(limbs.back());
    for (auto it = limbs.rbegin() + 1; it != limbs.rend(); ++it) {
        const std::string part = std::to_string(*it);
        out += std::string(9 - part.size(), '0') + part;
    }
    return out;
}

TEST(Certificate, SerialDecimalMatchesGeneratedSerials) {
    const auto serials = test::serials();
    ASSERT_GE(serials.size(), 13u);
    bool saw_big = false;
    for (const auto& [name, decimal] : serials) {
        SCOPED_TRACE(name);
        const Certificate certificate = load(name + ".pem");
        EXPECT_EQ(certificate.serial_decimal(), decimal);
        saw_big = saw_big || decimal.size() > 20;  // above 2^64 = 18446744073709551616
    }
    EXPECT_TRUE(saw_big) << "the fixtures must include a serial above 2^64";
}

// Found by fuzzing: d2i_X509 accepts any INTEGER as the version, so a certificate claiming v6 was loaded.
TEST(Certificate, UnknownVersionsAreRefused) {
    std::string der = load_certificate(pki("p256.pem")).value().der();
    const std::string v3("\xA0\x03\x02\x01\x02", 5);  // [0] EXPLICIT INTEGER 2
    const auto at = der.find(v3);
    ASSERT_NE(at, std::string::npos);
    ASSERT_TRUE(Certificate::from_der(der, "v3.der"));
    der[at + 4] = '\x05';
    auto refused = Certificate::from_der(der, "v6.der");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, Errc::input_invalid);
    EXPECT_EQ(refused.error().message, "v6.der: unknown X.509 version 5 (v1 to v3 exist)");
}

TEST(Certificate, SerialHexIsTheSameNumberWithoutLeadingZeros) {
    for (const auto& [name, decimal] : test::serials()) {
        SCOPED_TRACE(name);
        const std::string hex = load(name + ".pem").serial_hex();
        ASSERT_FALSE(hex.empty());
        EXPECT_NE(hex[0], '0');
        EXPECT_EQ(hex.find_first_not_of("0123456789ABCDEF"), std::string::npos) << hex;
        EXPECT_EQ(hex_to_decimal(hex), decimal);
    }
}

TEST(Certificate, DerBase64RoundTripsAndMatchesTheDerFile) {
    const Certificate pem = load("p256.pem");
    const Certificate der = load("p256.der");
    EXPECT_EQ(pem.der(), test::read_file(pki("p256.der")));
    EXPECT_EQ(der.der(), pem.der());
    const auto decoded = base64_decode(pem.der_base64());
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(std::string(decoded->begin(), decoded->end()), pem.der());
    EXPECT_EQ(pem.der_base64().find('\n'), std::string::npos);
}

TEST(Certificate, NamesAreRfc2253) {
    const Certificate leaf = load("p256.pem");
    EXPECT_EQ(leaf.subject(), "CN=p256.test,O=rolesanywhere-agent tests");
    EXPECT_EQ(leaf.issuer(), "CN=Test Root CA,O=rolesanywhere-agent tests");
    EXPECT_EQ(load("p256-via-intermediate.pem").issuer(),
              "CN=Test Intermediate CA,O=rolesanywhere-agent tests");
}

TEST(Certificate, Sha1FingerprintIsOfTheDer) {
    const Certificate leaf = load("p384.pem");
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    ASSERT_EQ(EVP_Digest(leaf.der().data(), leaf.der().size(), digest, &length, EVP_sha1(), nullptr), 1);
    EXPECT_EQ(leaf.sha1_fingerprint_hex(), hex_lower(std::span<const std::uint8_t>(digest, length)));
    EXPECT_NE(leaf.sha1_fingerprint_hex(), load("p256.pem").sha1_fingerprint_hex());
}

TEST(Certificate, ValidityDates) {
    const Certificate leaf = load("p256.pem");
    EXPECT_EQ(leaf.not_after() - leaf.not_before(), std::chrono::hours(24 * 30 + 1));
    const auto now = std::chrono::system_clock::now();
    EXPECT_LT(leaf.not_before(), now);
    EXPECT_GT(leaf.not_before(), now - 2h);
    EXPECT_LT(load("expired.pem").not_after(), now);
    EXPECT_GT(load("not-yet-valid.pem").not_before(), now);
}

TEST(Certificate, Properties) {
    const Certificate leaf = load("p256.pem");
    EXPECT_EQ(leaf.version(), 3);
    EXPECT_FALSE(leaf.is_ca());
    EXPECT_TRUE(leaf.has_digital_signature());
    EXPECT_EQ(load("v1.pem").version(), 1);
    EXPECT_TRUE(load("ca-as-leaf.pem").is_ca());
    EXPECT_TRUE(load("root-ca.pem").is_ca());
    EXPECT_FALSE(load("no-digital-signature.pem").has_digital_signature());
    // A v1 certificate has no keyUsage at all, which does not restrict it.
    EXPECT_TRUE(load("v1.pem").has_digital_signature());
}

TEST(Certificate, KeyType) {
    EXPECT_EQ(load("rsa2048.pem").key_type().value(), KeyType::rsa);
    EXPECT_EQ(load("p256.pem").key_type().value(), KeyType::ec);
    EXPECT_EQ(load("p521.pem").key_type().value(), KeyType::ec);
    const auto ed = load("ed25519.pem").key_type();
    ASSERT_FALSE(ed);
    EXPECT_EQ(ed.error().code, Errc::unsupported_key);
}

TEST(Certificate, IssuedBy) {
    const Certificate root = load("root-ca.pem");
    const Certificate intermediate = load("intermediate-ca.pem");
    EXPECT_TRUE(load("p256.pem").issued_by(root));
    EXPECT_TRUE(intermediate.issued_by(root));
    EXPECT_TRUE(root.issued_by(root));
    EXPECT_FALSE(load("p256.pem").issued_by(intermediate));
    EXPECT_TRUE(load("p256-via-intermediate.pem").issued_by(intermediate));
    EXPECT_FALSE(load("p256-via-intermediate.pem").issued_by(root));
}

TEST(Certificate, FromDerRejectsGarbageAndTrailingBytes) {
    const Certificate leaf = load("p256.pem");
    auto trailing = Certificate::from_der(leaf.der() + "x", "memory");
    ASSERT_FALSE(trailing);
    EXPECT_EQ(trailing.error().code, Errc::input_invalid);
    EXPECT_NE(trailing.error().message.find("memory"), std::string::npos);
    auto cut = Certificate::from_der(leaf.der().substr(0, 100), "memory");
    ASSERT_FALSE(cut);
    EXPECT_EQ(cut.error().code, Errc::input_invalid);
    EXPECT_FALSE(Certificate::from_der("", "memory"));
}

TEST(LoadCertificate, TakesTheFirstCertificateOfAPemFile) {
    EXPECT_EQ(load("intermediates.pem").subject(), load("intermediate-ca.pem").subject());
    EXPECT_EQ(load("p256-combined.pem").der(), load("p256.pem").der());
}

TEST(LoadCertificate, Errors) {
    auto missing = load_certificate(pki("does-not-exist.pem"));
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, Errc::input_missing);
    EXPECT_NE(missing.error().message.find("does-not-exist.pem"), std::string::npos);

    for (const char* name : {"garbage.pem", "truncated.pem", "p256.key"}) {
        SCOPED_TRACE(name);
        test::ScratchDir dir;
        auto r = load_certificate(dir.copy(name, test::kOwnerOnly));
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, Errc::input_invalid);
        EXPECT_NE(r.error().message.find(name), std::string::npos) << r.error().message;
    }
    test::ScratchDir dir;
    auto garbage = load_certificate(dir.copy("garbage.pem", test::kOwnerOnly));
    EXPECT_NE(garbage.error().message.find("not a PEM or DER certificate"), std::string::npos);
}

TEST(LoadCertificateBundle, FileOrder) {
    auto bundle = load_certificate_bundle(pki("intermediates.pem"));
    ASSERT_TRUE(bundle) << bundle.error().message;
    ASSERT_EQ(bundle->size(), 2u);
    EXPECT_EQ((*bundle)[0].der(), load("intermediate-ca.pem").der());
    EXPECT_EQ((*bundle)[1].der(), load("root-ca.pem").der());
    auto wrong = load_certificate_bundle(pki("intermediates-wrong-order.pem"));
    ASSERT_TRUE(wrong);
    EXPECT_EQ((*wrong)[0].der(), load("root-ca.pem").der());
}

TEST(LoadCertificateBundle, Errors) {
    for (const char* name : {"garbage.pem", "truncated.pem", "p256-combined.pem", "p256.der"}) {
        SCOPED_TRACE(name);
        auto r = load_certificate_bundle(pki(name));
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, Errc::input_invalid);
        EXPECT_NE(r.error().message.find(name), std::string::npos) << r.error().message;
    }
}

TEST(LoadCertificateBundle, TextBetweenBlocksIsAllowed) {
    test::ScratchDir dir;
    const auto path = dir.write("bundle.pem",
                                "Intermediate CA\n" + test::read_file(pki("intermediate-ca.pem")) +
                                    "\nRoot CA\n" + test::read_file(pki("root-ca.pem")) + "trailer\n",
                                test::kWorldReadable);
    auto bundle = load_certificate_bundle(path);
    ASSERT_TRUE(bundle) << bundle.error().message;
    EXPECT_EQ(bundle->size(), 2u);
}

TEST(CheckLeaf, AcceptsAGoodLeaf) {
    const auto now = std::chrono::system_clock::now();
    EXPECT_TRUE(check_leaf(load("p256.pem"), "p256.pem", now));
    EXPECT_TRUE(check_leaf(load("rsa2048.pem"), "rsa2048.pem", now));
}

TEST(CheckLeaf, Refusals) {
    const auto now = std::chrono::system_clock::now();
    // Each by the name of its class, as logs, `status` and the socket spell it.
    const std::pair<const char*, const char*> cases[] = {
        {"ca-as-leaf.pem", "certificate_invalid"},
        {"no-digital-signature.pem", "certificate_invalid"},
        {"v1.pem", "certificate_invalid"},
        {"expired.pem", "certificate_expired"},
        {"not-yet-valid.pem", "certificate_not_yet_valid"},
    };
    for (const auto& [name, code] : cases) {
        SCOPED_TRACE(name);
        auto r = check_leaf(load(name), std::string("/some/") + name, now);
        ASSERT_FALSE(r);
        EXPECT_STREQ(errc_name(r.error().code), code);
        EXPECT_EQ(exit_code(r.error().code), 65);
        EXPECT_NE(r.error().message.find(std::string("/some/") + name), std::string::npos)
            << r.error().message;
        EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
    }
}

TEST(CheckLeaf, ValidityMessagesCarryIsoDates) {
    const auto now = std::chrono::system_clock::now();
    const Certificate expired = load("expired.pem");
    auto r = check_leaf(expired, "expired.pem", now);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find(format_iso8601(expired.not_after())), std::string::npos)
        << r.error().message;
    const Certificate early = load("not-yet-valid.pem");
    auto e = check_leaf(early, "not-yet-valid.pem", now);
    ASSERT_FALSE(e);
    EXPECT_NE(e.error().message.find(format_iso8601(early.not_before())), std::string::npos)
        << e.error().message;
    // The boundaries themselves are inside the validity period.
    EXPECT_TRUE(check_leaf(expired, "expired.pem", expired.not_after()));
    EXPECT_FALSE(check_leaf(expired, "expired.pem", expired.not_after() + 1s));
    EXPECT_TRUE(check_leaf(early, "x", early.not_before()));
    EXPECT_FALSE(check_leaf(early, "x", early.not_before() - 1s));
}

TEST(CheckChainOrder, IssuerOrder) {
    const Certificate leaf = load("p256-via-intermediate.pem");
    const Certificate intermediate = load("intermediate-ca.pem");
    const Certificate root = load("root-ca.pem");
    EXPECT_TRUE(check_chain_order(leaf, {}, "chain.pem"));
    EXPECT_TRUE(check_chain_order(leaf, {intermediate}, "chain.pem"));
    EXPECT_TRUE(check_chain_order(leaf, {intermediate, root}, "chain.pem"));
    for (const std::vector<Certificate>& bad :
         {std::vector<Certificate>{root, intermediate}, std::vector<Certificate>{root},
          std::vector<Certificate>{intermediate, load("p256.pem")}}) {
        auto r = check_chain_order(leaf, bad, "chain.pem");
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, Errc::certificate_invalid);
        EXPECT_NE(r.error().message.find("chain.pem"), std::string::npos);
    }
    EXPECT_FALSE(check_chain_order(load("p256.pem"), {intermediate}, "chain.pem"));
}

}  // namespace
}  // namespace rad::pki
