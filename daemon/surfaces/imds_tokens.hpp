#pragma once
// IMDSv2 session tokens, minted and checked without state on the agent's side.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace rad::surfaces {

// kMaxTokenTtlSeconds is the longest lifetime IMDS grants a token (six hours).
inline constexpr int kMaxTokenTtlSeconds = 21600;

// Mac computes HMAC-SHA256 of a message with the agent's per-start random key (pki::HmacKey in production).
using Mac = std::function<std::array<std::uint8_t, 32>(std::string_view message)>;

// ImdsTokens mints and checks IMDSv2 session tokens statelessly: a token carries its own expiry
// (milliseconds on the monotonic clock) and a MAC over it, so a flood of PUTs costs no memory and a restart
// voids every token. Tokens are URL-safe base64 without padding, never contain CR/LF, and are compared in
// constant time.
class ImdsTokens {
public:
    explicit ImdsTokens(Mac mac) : mac_(std::move(mac)) {}
    // mint returns a token valid for `ttl` seconds (clamped to 1..21600) from `now`.
    std::string mint(std::chrono::steady_clock::time_point now, std::chrono::seconds ttl) const;
    // remaining is the token's remaining lifetime at `now` (rounded up to whole seconds), or nullopt when it
    // is malformed, forged or expired.
    std::optional<std::chrono::seconds> remaining(std::string_view token,
                                                  std::chrono::steady_clock::time_point now) const;

private:
    Mac mac_;
};

}  // namespace rad::surfaces
