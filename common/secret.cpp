#include "common/secret.hpp"

#include <string.h>

namespace rad {

void wipe_string(std::string& s) noexcept {
    // Clear up to capacity: earlier, longer contents may still sit past size().
    s.resize(s.capacity());
    explicit_bzero(s.data(), s.size());
    s.clear();
}

Secret::Secret(std::string&& value) noexcept : value_(std::move(value)) {
    wipe_string(value);
}

Secret::Secret(std::string_view value) : value_(value) {}

Secret::Secret(Secret&& other) noexcept : value_(std::move(other.value_)) {
    other.wipe();
}

Secret& Secret::operator=(Secret&& other) noexcept {
    if (this != &other) {
        wipe();
        value_ = std::move(other.value_);
        other.wipe();
    }
    return *this;
}

Secret::~Secret() {
    wipe();
}

void Secret::wipe() noexcept {
    wipe_string(value_);
}

}  // namespace rad
