#include "pki/hmac.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "pki/ossl.hpp"

namespace rad::pki {

namespace {

using MacPtr = std::unique_ptr<EVP_MAC, ossl::Deleter<EVP_MAC_free>>;
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, ossl::Deleter<EVP_MAC_CTX_free>>;

// The signature has no error channel and any fixed tag would let a forger predict it: stop the process
// (systemd restarts it with a fresh key). Only allocation failure gets here.
[[noreturn]] void abort_hmac() {
    std::fputs("rolesanywhere-agent: HMAC-SHA256 failed; aborting\n", stderr);
    std::abort();
}

}  // namespace

// Prepared holds a MAC context whose key is set once. HMAC() fetched the algorithm, built a context and
// hashed the key's pads on every call — most of an IMDS request's crypto time; re-initialising a prepared
// context with a null key restarts it from the stored pads. The context is not safe to share, hence the lock.
struct HmacKey::Prepared {
    std::mutex lock;
    MacCtxPtr context;
};

HmacKey::HmacKey(std::unique_ptr<Prepared> prepared) noexcept : prepared_(std::move(prepared)) {}

HmacKey HmacKey::from_bytes(std::span<const std::uint8_t> key) {
    const MacPtr mac(EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr));
    if (!mac) {
        abort_hmac();
    }
    auto prepared = std::make_unique<Prepared>();
    prepared->context.reset(EVP_MAC_CTX_new(mac.get()));
    char digest[] = OSSL_DIGEST_NAME_SHA2_256;
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_construct_end()};
    // A valid pointer even for an empty key: a null key means "keep the previous one".
    static const unsigned char empty_key = 0;
    const unsigned char* bytes = key.empty() ? &empty_key : key.data();
    if (!prepared->context || EVP_MAC_init(prepared->context.get(), bytes, key.size(), params) != 1) {
        abort_hmac();
    }
    return HmacKey(std::move(prepared));
}

// Moving hands over the context (which holds the key); EVP_MAC_CTX_free wipes it.
HmacKey::HmacKey(HmacKey&& other) noexcept = default;
HmacKey& HmacKey::operator=(HmacKey&& other) noexcept = default;
HmacKey::~HmacKey() = default;

HmacKey::Tag HmacKey::sign(std::string_view message) const {
    if (!prepared_) {
        abort_hmac();  // a moved-from key
    }
    Tag tag{};
    std::size_t length = 0;
    const std::lock_guard<std::mutex> hold(prepared_->lock);
    EVP_MAC_CTX* context = prepared_->context.get();
    if (EVP_MAC_init(context, nullptr, 0, nullptr) != 1 ||
        EVP_MAC_update(context, ossl::bytes(message), message.size()) != 1 ||
        EVP_MAC_final(context, tag.data(), &length, tag.size()) != 1 || length != tag.size()) {
        abort_hmac();
    }
    return tag;
}

}  // namespace rad::pki
