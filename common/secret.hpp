#pragma once
// Secret holds bytes that must not leak: passphrases, PINs, key file contents, secret access keys, session
// tokens. It cannot be streamed or implicitly converted to a string, and its buffer is wiped with
// explicit_bzero when the Secret is destroyed or assigned over. Copies are explicit (clone()).

#include <cstddef>
#include <string>
#include <string_view>

namespace rad {

class Secret {
public:
    Secret() = default;
    // Secret takes over `value`'s buffer; the caller's string is left empty. Short strings live inside the
    // std::string object (SSO) and are therefore copied: the moved-from string is wiped too.
    explicit Secret(std::string&& value) noexcept;
    explicit Secret(std::string_view value);
    Secret(Secret&& other) noexcept;
    Secret& operator=(Secret&& other) noexcept;
    Secret(const Secret&) = delete;
    Secret& operator=(const Secret&) = delete;
    ~Secret();

    // clone returns an independent copy (also wiped on destruction).
    Secret clone() const { return Secret(reveal()); }
    // reveal gives read access for the one call that needs the bytes (a KDF, a signature, a JSON writer).
    std::string_view reveal() const noexcept { return value_; }
    bool empty() const noexcept { return value_.empty(); }
    std::size_t size() const noexcept { return value_.size(); }
    // reveal_mutable lets a reader fill the buffer in place (e.g. reading a file) without a plain copy.
    std::string& reveal_mutable() noexcept { return value_; }

private:
    void wipe() noexcept;
    std::string value_;
};

// wipe_string clears the whole capacity of `s` (not just size()) and empties it.
void wipe_string(std::string& s) noexcept;

}  // namespace rad
