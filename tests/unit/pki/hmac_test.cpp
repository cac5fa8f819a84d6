// HmacKey against the HMAC-SHA256 vectors of RFC 4231 §4, plus the properties the IMDS tokens rely on: random
// keys differ, moves keep the key, and a tag depends on every input bit.
#include "pki/hmac.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/encoding.hpp"

namespace rad::pki {
namespace {

std::vector<std::uint8_t> repeat(std::uint8_t byte, std::size_t n) {
    return std::vector<std::uint8_t>(n, byte);
}

std::string as_text(const std::vector<std::uint8_t>& bytes) {
    return std::string(bytes.begin(), bytes.end());
}

std::string tag_hex(const HmacKey::Tag& tag) {
    return hex_lower(std::span<const std::uint8_t>(tag));
}

struct Rfc4231Case {
    const char* name;
    std::vector<std::uint8_t> key;
    std::string data;
    const char* hmac_sha256;
};

std::vector<Rfc4231Case> rfc4231_cases() {
    std::vector<std::uint8_t> counting;
    for (std::uint8_t b = 0x01; b <= 0x19; ++b) {
        counting.push_back(b);
    }
    const std::string jefe = "Jefe";
    return {
        {"case1", repeat(0x0b, 20), "Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"case2", std::vector<std::uint8_t>(jefe.begin(), jefe.end()), "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {"case3", repeat(0xaa, 20), as_text(repeat(0xdd, 50)),
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {"case4", counting, as_text(repeat(0xcd, 50)),
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {"case6", repeat(0xaa, 131), "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {"case7", repeat(0xaa, 131),
         "This is a test using a larger than block-size key and a larger than block-size data. The key needs "
         "to "
         "be hashed before being used by the HMAC algorithm.",
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
}

TEST(HmacKey, MatchesRfc4231Vectors) {
    for (const auto& c : rfc4231_cases()) {
        const HmacKey key = HmacKey::from_bytes(c.key);
        EXPECT_EQ(tag_hex(key.sign(c.data)), c.hmac_sha256) << c.name;
    }
}

TEST(HmacKey, EmptyKeyAndMessage) {
    const HmacKey key = HmacKey::from_bytes({});
    EXPECT_EQ(tag_hex(key.sign("")), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(HmacKey, TagDependsOnEveryByte) {
    const HmacKey key = HmacKey::from_bytes(repeat(0x42, 32));
    const auto base = key.sign("abcdef");
    EXPECT_NE(key.sign("abcdeg"), base);
    EXPECT_NE(key.sign("bbcdef"), base);
    EXPECT_NE(key.sign("abcde"), base);
    EXPECT_NE(key.sign(std::string("abcdef\0", 7)), base);
    EXPECT_NE(HmacKey::from_bytes(repeat(0x43, 32)).sign("abcdef"), base);
}

TEST(HmacKey, MoveKeepsTheKey) {
    HmacKey original = HmacKey::from_bytes(repeat(0x0b, 20));
    HmacKey moved(std::move(original));
    EXPECT_EQ(tag_hex(moved.sign("Hi There")),
              "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    HmacKey assigned = HmacKey::from_bytes(repeat(0x01, 32));
    assigned = std::move(moved);
    EXPECT_EQ(tag_hex(assigned.sign("Hi There")),
              "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

}  // namespace
}  // namespace rad::pki
