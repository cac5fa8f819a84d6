// ECDSA r and s to DER: a published signature that must still verify, the DER integer rules (leading zeros
// stripped, a zero byte before a set high bit), and the lengths refused.
#include "pki/ecdsa.hpp"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <memory>
#include <string>
#include <vector>

#include "common/encoding.hpp"

namespace rad::pki {
namespace {

std::vector<std::uint8_t> unhex(std::string_view hex) {
    std::vector<std::uint8_t> bytes;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        bytes.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
    }
    return bytes;
}

std::string der_hex(std::string_view r, std::string_view s) {
    const auto der = ecdsa_der(unhex(r), unhex(s), "test");
    return der ? hex_lower(std::span<const std::uint8_t>(*der)) : "refused: " + der.error().message;
}

// RFC 6979 §A.2.5: P-256, SHA-256, message "sample".
constexpr std::string_view kRfc6979R = "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716";
constexpr std::string_view kRfc6979S = "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8";
constexpr std::string_view kRfc6979Public =
    "04"
    "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"
    "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";

// verifies is true when OpenSSL accepts `der` as a signature of `message` by the RFC 6979 P-256 key.
bool verifies(const std::vector<std::uint8_t>& der, std::string_view message) {
    const auto point = unhex(kRfc6979Public);
    std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> builder(OSSL_PARAM_BLD_new(),
                                                                            OSSL_PARAM_BLD_free);
    char group[] = "prime256v1";
    if (!builder ||
        OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                         point.size()) != 1) {
        return false;
    }
    std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(builder.get()),
                                                                   OSSL_PARAM_free);
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
        EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr), EVP_PKEY_CTX_free);
    EVP_PKEY* raw_key = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &raw_key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
        return false;
    }
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(raw_key, EVP_PKEY_free);
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    return md && EVP_DigestVerifyInit(md.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
           EVP_DigestVerify(md.get(), der.data(), der.size(),
                            reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
}

TEST(EcdsaDer, PublishedSignatureStillVerifies) {
    const std::string expected = "3046022100" + std::string(kRfc6979R) + "022100" + std::string(kRfc6979S);
    EXPECT_EQ(der_hex(kRfc6979R, kRfc6979S), expected);

    // As a PKCS#11 token returns it: r‖s, 32 bytes each.
    const auto raw = unhex(std::string(kRfc6979R) + std::string(kRfc6979S));
    const auto der = ecdsa_der_from_raw(raw, "test");
    ASSERT_TRUE(der) << der.error().message;
    EXPECT_EQ(hex_lower(std::span<const std::uint8_t>(*der)), expected);
    EXPECT_TRUE(verifies(*der, "sample"));
    EXPECT_FALSE(verifies(*der, "samplf"));
}

TEST(EcdsaDer, IntegerEncodings) {
    struct Row {
        std::string_view r, s, der;
    };
    const Row rows[] = {
        {"01", "02", "3006020101020102"},
        {"7f", "80", "300702017f02020080"},          // a set high bit gets a zero byte: INTEGERs are signed
        {"0000007f", "0080", "300702017f02020080"},  // leading zeros are not part of the DER
        {"00", "0000", "3006020100020100"},          // zero is one zero byte
        {"ff01", "000102", "3009020300ff0102020102"},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(der_hex(row.r, row.s), row.der) << row.r << " " << row.s;
    }
}

TEST(EcdsaDer, LongestCurveAndOddLengths) {
    // P-521: 66 bytes each, an even r‖s of 132 bytes; each half starting with zeros.
    const std::string r521 = "0001" + std::string(128, 'a');
    const std::string s521 = "0000" + std::string(128, 'b');
    const auto raw = unhex(r521 + s521);
    ASSERT_EQ(raw.size(), 132u);
    const auto der = ecdsa_der_from_raw(raw, "test");
    ASSERT_TRUE(der) << der.error().message;
    // r loses its leading zero (65 bytes, 01 aa…); s loses two and gains one for its high bit (00 bb…): a
    // SEQUENCE of 134 bytes, in DER's long form (81 86).
    const std::string r_der = "024101" + std::string(128, 'a');
    const std::string s_der = "024100" + std::string(128, 'b');
    EXPECT_EQ(hex_lower(std::span<const std::uint8_t>(*der)), "308186" + r_der + s_der);

    // A TPM's r and s need not be of one length, nor of an even one.
    EXPECT_EQ(der_hex("010203", "04"), "30080203010203020104");
}

TEST(EcdsaDer, WrongLengthsAreRefused) {
    for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{63}, std::size_t{65},
                                   std::size_t{133}, std::size_t{134}, std::size_t{512}}) {
        const std::vector<std::uint8_t> raw(size, 0x5a);
        const auto der = ecdsa_der_from_raw(raw, "pkcs11:token=t;object=k");
        ASSERT_FALSE(der) << size;
        EXPECT_EQ(der.error().code, Errc::crypto_failure);
        const std::string expected =
            "pkcs11:token=t;object=k: the ECDSA signature is " + std::to_string(size) + " bytes;";
        EXPECT_TRUE(der.error().message.starts_with(expected)) << der.error().message;
    }
    const std::vector<std::uint8_t> none;
    const std::vector<std::uint8_t> one(1, 0x01);
    const std::vector<std::uint8_t> too_long(kMaxEcdsaIntegerSize + 1, 0x01);
    for (const auto& [r, s] :
         {std::pair{none, one}, std::pair{one, none}, std::pair{too_long, one}, std::pair{one, too_long}}) {
        const auto der = ecdsa_der(r, s, "tpm key");
        ASSERT_FALSE(der);
        EXPECT_EQ(der.error().code, Errc::crypto_failure);
        EXPECT_TRUE(der.error().message.starts_with("tpm key: the ECDSA signature's r"))
            << der.error().message;
    }
}

}  // namespace
}  // namespace rad::pki
