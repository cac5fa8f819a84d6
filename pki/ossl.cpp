#include "pki/ossl.hpp"

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include <array>
#include <cstring>
#include <limits>

namespace rad::pki::ossl {

std::string take_error_reason() {
    unsigned long last = 0;
    for (unsigned long code = ERR_get_error(); code != 0; code = ERR_get_error()) {
        last = code;
    }
    if (last == 0) {
        return "unknown OpenSSL error";
    }
    const char* reason = ERR_reason_error_string(last);
    return reason != nullptr ? reason : "OpenSSL error " + std::to_string(last);
}

void clear_errors() noexcept {
    ERR_clear_error();
}

std::string oid_text(const ASN1_OBJECT* oid) {
    std::array<char, 128> text{};
    const int length = OBJ_obj2txt(text.data(), static_cast<int>(text.size()), oid, 1);
    if (length <= 0 || static_cast<std::size_t>(length) >= text.size()) {
        clear_errors();
        return {};
    }
    return std::string(text.data(), static_cast<std::size_t>(length));
}

Result<BioPtr> memory_bio(std::string_view data) {
    if (data.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        return make_error(Errc::input_invalid, "input too large for OpenSSL");
    }
    BioPtr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    if (!bio) {
        return make_error(Errc::crypto_failure,
                          "cannot create an OpenSSL memory BIO: " + take_error_reason());
    }
    return bio;
}

PemBlock::PemBlock(PemBlock&& other) noexcept
    : name_(other.name_), header_(other.header_), data_(other.data_), length_(other.length_) {
    other.name_ = nullptr;
    other.header_ = nullptr;
    other.data_ = nullptr;
    other.length_ = 0;
}

PemBlock::~PemBlock() {
    // Allocated by PEM_read_bio_ex with PEM_FLAG_SECURE, hence the secure-heap free functions (which fall
    // back to the ordinary heap when no secure heap was set up).
    OPENSSL_secure_free(name_);
    OPENSSL_secure_free(header_);
    if (data_ != nullptr) {
        OPENSSL_secure_clear_free(data_, static_cast<std::size_t>(length_));
    }
}

bool looks_like_pem(std::string_view text) noexcept {
    return text.find("-----BEGIN ") != std::string_view::npos;
}

Result<std::vector<PemBlock>> read_pem_blocks(std::string_view text, std::string_view origin) {
    auto bio = memory_bio(text);
    if (!bio) {
        return bio.error();
    }
    std::vector<PemBlock> blocks;
    for (;;) {
        char* name = nullptr;
        char* header = nullptr;
        unsigned char* data = nullptr;
        long length = 0;
        const int ok = PEM_read_bio_ex(bio->get(), &name, &header, &data, &length,
                                       PEM_FLAG_SECURE | PEM_FLAG_EAY_COMPATIBLE);
        if (ok == 1) {
            blocks.emplace_back(name, header, data, length);
            continue;
        }
        // PEM_read_bio_ex reports "no start line" when nothing but text is left: the normal end. Anything
        // else is a block that started and is broken.
        const unsigned long err = ERR_peek_last_error();
        if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
            clear_errors();
            return blocks;
        }
        return make_error(Errc::input_invalid, std::string(origin) + ": malformed PEM block after " +
                                                   std::to_string(blocks.size()) + " good block(s) (" +
                                                   take_error_reason() + ")");
    }
}

const EVP_MD* md(Digest digest) noexcept {
    switch (digest) {
        case Digest::sha256:
            return EVP_sha256();
        case Digest::sha384:
            return EVP_sha384();
        case Digest::sha512:
            return EVP_sha512();
    }
    return EVP_sha256();
}

}  // namespace rad::pki::ossl
