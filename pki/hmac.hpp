#pragma once
// HmacKey is a secret key for HMAC-SHA256, used by the agent to MAC its stateless IMDS session tokens. The
// agent draws the key's bytes (random_size of them) at start, or takes those its previous process handed over
// under systemd; the prepared key's bytes are wiped when it is destroyed or assigned over. sign() may be
// called from several threads. OpenSSL stays behind this header.

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace rad::pki {

class HmacKey {
public:
    // random_size is the length of the keys the agent draws: SHA-256's output size.
    static constexpr std::size_t random_size = 32;
    using Tag = std::array<std::uint8_t, 32>;

    // from_bytes builds a key from its bytes (any length, as HMAC allows).
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
