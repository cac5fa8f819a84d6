#pragma once
// ECDSA signatures in the form X.509 and SigV4-X509 carry them: DER SEQUENCE { r INTEGER, s INTEGER }
// (RFC 3279 §2.2.3), which is what OpenSSL's own ECDSA signing returns. Keys that sign outside OpenSSL hand
// back r and s as unsigned big-endian integers instead: a PKCS#11 token as r‖s from C_Sign with CKM_ECDSA,
// both halves as long as the curve's order (PKCS#11 v2.40 §2.3.1), and a TPM as two buffers
// (TPMS_SIGNATURE_ECC). These functions turn either into DER. OpenSSL stays behind this header.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace rad::pki {

// kMaxEcdsaIntegerSize is the longest r or s accepted: 66 bytes, the order of P-521, the largest curve a key
// may use here.
inline constexpr std::size_t kMaxEcdsaIntegerSize = 66;

// ecdsa_der encodes r and s, unsigned big-endian with any number of leading zero bytes, as DER. Errors,
// crypto_failure naming `origin`: r or s empty or longer than kMaxEcdsaIntegerSize, or OpenSSL failing.
[[nodiscard]] Result<std::vector<std::uint8_t>> ecdsa_der(std::span<const std::uint8_t> r,
                                                          std::span<const std::uint8_t> s,
                                                          std::string_view origin);

// ecdsa_der_from_raw is ecdsa_der of r‖s cut into two halves of equal length. A length that is odd, zero or
// more than twice kMaxEcdsaIntegerSize is crypto_failure naming `origin`.
[[nodiscard]] Result<std::vector<std::uint8_t>> ecdsa_der_from_raw(std::span<const std::uint8_t> r_and_s,
                                                                   std::string_view origin);

}  // namespace rad::pki
