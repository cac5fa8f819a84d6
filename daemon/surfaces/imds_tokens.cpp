#include "daemon/surfaces/imds_tokens.hpp"

#include <string.h>

#include <algorithm>
#include <span>

#include "common/encoding.hpp"
#include "daemon/surfaces/served_credentials.hpp"

namespace rad::surfaces {
namespace {

using std::chrono::seconds;
using std::chrono::steady_clock;

// A token is base64url(expiry || MAC(domain || expiry)) without padding: 8 bytes of big-endian expiry in
// milliseconds of the steady clock, then 32 bytes of HMAC-SHA256. 40 bytes encode to exactly 54 characters.
constexpr std::size_t expiry_size = 8;
constexpr std::size_t mac_size = 32;
constexpr std::size_t token_bytes = expiry_size + mac_size;
constexpr std::size_t token_chars = 54;
// The domain tag keeps a MAC made with this key for anything else from ever passing as a token.
constexpr std::string_view token_domain = "rolesanywhere-agent imds token v1\n";

std::string mac_input(std::span<const std::uint8_t, expiry_size> expiry) {
    std::string input(token_domain);
    input.append(reinterpret_cast<const char*>(expiry.data()), expiry.size());
    return input;
}

// base64url without padding, from the standard alphabet (RFC 4648 §5).
std::string base64url_encode(std::span<const std::uint8_t> bytes) {
    std::string text = base64_encode(bytes);
    while (!text.empty() && text.back() == '=') {
        text.pop_back();
    }
    std::replace(text.begin(), text.end(), '+', '-');
    std::replace(text.begin(), text.end(), '/', '_');
    return text;
}

// decode_token decodes the 54 characters in place, without working copies of the token on the heap.
std::optional<std::array<std::uint8_t, token_bytes>> decode_token(std::string_view token) {
    if (token.size() != token_chars) {
        return std::nullopt;
    }
    std::array<std::uint8_t, token_bytes> raw{};
    std::uint32_t bits = 0;
    int pending = 0;
    std::size_t out = 0;
    for (const char c : token) {
        const int value = base64_digit(c, /*url=*/true);
        if (value < 0) {
            explicit_bzero(raw.data(), raw.size());
            return std::nullopt;
        }
        bits = (bits << 6) | static_cast<std::uint32_t>(value);
        pending += 6;
        if (pending >= 8) {
            pending -= 8;
            raw[out++] = static_cast<std::uint8_t>(bits >> pending);
            bits &= (1u << pending) - 1;
        }
    }
    // 54 characters carry 324 bits: 40 bytes and 4 unused bits in the last character. Only the canonical
    // spelling (those bits zero) is a token, so one token has exactly one textual form.
    if (out != token_bytes || bits != 0) {
        explicit_bzero(raw.data(), raw.size());
        return std::nullopt;
    }
    return raw;
}

}  // namespace

std::string ImdsTokens::mint(steady_clock::time_point now, seconds ttl) const {
    // The handler validates the TTL; the clamp keeps a caller's mistake from minting an eternal token.
    ttl = std::clamp(ttl, seconds(1), seconds(kMaxTokenTtlSeconds));
    const auto expiry = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch() + ttl);
    auto bits = static_cast<std::uint64_t>(expiry.count());
    std::array<std::uint8_t, token_bytes> raw{};
    for (std::size_t i = 0; i < expiry_size; ++i) {
        raw[expiry_size - 1 - i] = static_cast<std::uint8_t>(bits & 0xFF);
        bits >>= 8;
    }
    const auto tag = mac_(mac_input(std::span<const std::uint8_t, expiry_size>(raw.data(), expiry_size)));
    std::copy(tag.begin(), tag.end(), raw.begin() + expiry_size);
    return base64url_encode(raw);
}

std::optional<seconds> ImdsTokens::remaining(std::string_view token, steady_clock::time_point now) const {
    const auto raw = decode_token(token);
    if (!raw) {
        return std::nullopt;
    }
    const auto expected =
        mac_(mac_input(std::span<const std::uint8_t, expiry_size>(raw->data(), expiry_size)));
    const std::string_view given_mac(reinterpret_cast<const char*>(raw->data() + expiry_size), mac_size);
    const std::string_view expected_mac(reinterpret_cast<const char*>(expected.data()), expected.size());
    if (!constant_time_equals(given_mac, expected_mac)) {
        return std::nullopt;
    }
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < expiry_size; ++i) {
        bits = (bits << 8) | (*raw)[i];
    }
    const std::chrono::milliseconds expiry(static_cast<std::int64_t>(bits));
    const auto left = expiry - std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
    if (left <= std::chrono::milliseconds(0)) {
        return std::nullopt;
    }
    // Rounded up: a token that is still valid never reports 0 seconds left.
    return std::chrono::ceil<seconds>(left);
}

}  // namespace rad::surfaces
