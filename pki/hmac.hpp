#pragma once
// HmacKey is a secret key for HMAC-SHA256, used by the agent to MAC its stateless IMDS session tokens. A key
// lives only in memory (a fresh one per start, so a restart voids every token) and its bytes are wiped when
// the key is destroyed or assigned over. sign() may be called from several threads. OpenSSL stays behind
// this header.

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace rad::pki {

class HmacKey {
public:
    static constexpr std::size_t random_size = 32;
    using Tag = std::array<std::uint8_t, 32>;

    // random draws a 32-byte key from OpenSSL's CSPRNG. Error crypto_failure when the RNG fails.
    [[nodiscard]] static Result<HmacKey> random();
    // from_bytes builds a key from known bytes (any length, as HMAC allows). For tests with published
    // vectors; production keys come from random().
    static HmacKey from_bytes(std::span<const std::uint8_t> key);

    HmacKey(HmacKey&& other) noexcept;
    HmacKey& operator=(HmacKey&& other) noexcept;
    HmacKey(const HmacKey&) = delete;
    HmacKey& operator=(const HmacKey&) = delete;
    ~HmacKey();

    // sign returns HMAC-SHA256(key, message). It cannot fail in a way a caller could handle: should OpenSSL
    // refuse, the process aborts rather than hand out a tag that might verify for a forger.
    Tag sign(std::string_view message) const;

private:
    struct Prepared;  // the MAC context with the key set, and its lock
    explicit HmacKey(std::unique_ptr<Prepared> prepared) noexcept;
    std::unique_ptr<Prepared> prepared_;
};

}  // namespace rad::pki
