#include "pki/hmac.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>

#include "pki/ossl.hpp"

namespace rad::pki {

Result<HmacKey> HmacKey::random() {
    std::vector<std::uint8_t> key(random_size);
    if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) {
        OPENSSL_cleanse(key.data(), key.size());
        return make_error(Errc::crypto_failure,
                          "cannot draw a random HMAC key: " + ossl::take_error_reason());
    }
    return HmacKey(std::move(key));
}

HmacKey HmacKey::from_bytes(std::span<const std::uint8_t> key) {
    return HmacKey(std::vector<std::uint8_t>(key.begin(), key.end()));
}

// A moved-from vector is empty (its buffer changes owner), so only the destination's old bytes need wiping.
HmacKey::HmacKey(HmacKey&& other) noexcept : key_(std::move(other.key_)) {
    other.key_.clear();
}

HmacKey& HmacKey::operator=(HmacKey&& other) noexcept {
    if (this != &other) {
        wipe();
        key_ = std::move(other.key_);
        other.key_.clear();
    }
    return *this;
}

HmacKey::~HmacKey() {
    wipe();
}

void HmacKey::wipe() noexcept {
    if (!key_.empty()) {
        OPENSSL_cleanse(key_.data(), key_.size());
    }
    key_.clear();
}

HmacKey::Tag HmacKey::sign(std::string_view message) const {
    Tag tag{};
    unsigned int length = 0;
    // HMAC() with a null key pointer would mean "reuse the previous key" in old APIs; give it a valid pointer
    // even for an empty key.
    static const unsigned char empty_key = 0;
    const unsigned char* key = key_.empty() ? &empty_key : key_.data();
    const unsigned char* result = HMAC(EVP_sha256(), key, static_cast<int>(key_.size()), ossl::bytes(message),
                                       message.size(), tag.data(), &length);
    if (result == nullptr || length != tag.size()) {
        // Only allocation failure gets here. Returning any fixed tag would let a forger predict it, and the
        // signature has no error channel, so stop the process (systemd restarts it with a fresh key).
        std::fputs("rolesanywhere-agent: HMAC-SHA256 failed; aborting\n", stderr);
        std::abort();
    }
    return tag;
}

}  // namespace rad::pki
