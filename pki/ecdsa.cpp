#include "pki/ecdsa.hpp"

#include <openssl/ecdsa.h>

#include <memory>
#include <string>

#include "pki/ossl.hpp"

namespace rad::pki {

namespace {

using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, ossl::Deleter<ECDSA_SIG_free>>;

Error encoding_failed(std::string_view origin) {
    return make_error(Errc::crypto_failure, std::string(origin) + ": cannot encode the ECDSA signature: " +
                                                ossl::take_error_reason());
}

}  // namespace

Result<std::vector<std::uint8_t>> ecdsa_der(std::span<const std::uint8_t> r,
                                            std::span<const std::uint8_t> s,
                                            std::string_view origin) {
    if (r.empty() || s.empty() || r.size() > kMaxEcdsaIntegerSize || s.size() > kMaxEcdsaIntegerSize) {
        return make_error(Errc::crypto_failure, std::string(origin) + ": the ECDSA signature's r (" +
                                                    std::to_string(r.size()) + " bytes) or s (" +
                                                    std::to_string(s.size()) + " bytes) is empty or longer " +
                                                    "than a P-521 order");
    }
    // The sizes are at most 66, so the casts to int cannot overflow.
    ossl::BignumPtr r_number(BN_bin2bn(r.data(), static_cast<int>(r.size()), nullptr));
    ossl::BignumPtr s_number(BN_bin2bn(s.data(), static_cast<int>(s.size()), nullptr));
    EcdsaSigPtr signature(ECDSA_SIG_new());
    if (!r_number || !s_number || !signature ||
        ECDSA_SIG_set0(signature.get(), r_number.get(), s_number.get()) != 1) {
        return encoding_failed(origin);
    }
    // ECDSA_SIG_set0 took both numbers over; `signature` frees them now.
    (void)r_number.release();
    (void)s_number.release();
    unsigned char* der = nullptr;
    const int length = i2d_ECDSA_SIG(signature.get(), &der);
    const ossl::OpensslBytes owner(der);
    if (length <= 0 || der == nullptr) {
        return encoding_failed(origin);
    }
    return std::vector<std::uint8_t>(der, der + length);
}

Result<std::vector<std::uint8_t>> ecdsa_der_from_raw(std::span<const std::uint8_t> r_and_s,
                                                     std::string_view origin) {
    if (r_and_s.empty() || r_and_s.size() % 2 != 0 || r_and_s.size() > 2 * kMaxEcdsaIntegerSize) {
        return make_error(Errc::crypto_failure, std::string(origin) + ": the ECDSA signature is " +
                                                    std::to_string(r_and_s.size()) +
                                                    " bytes; r||s is an even number of bytes, 2 to " +
                                                    std::to_string(2 * kMaxEcdsaIntegerSize));
    }
    const std::size_t half = r_and_s.size() / 2;
    return ecdsa_der(r_and_s.first(half), r_and_s.subspan(half), origin);
}

}  // namespace rad::pki
