#include "daemon/surfaces/http_types.hpp"

namespace rad::surfaces {

namespace {

char ascii_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) {
            return false;
        }
    }
    return true;
}

const std::string* SurfaceRequest::header(std::string_view name) const {
    for (const auto& [field, value] : headers) {
        if (iequals(field, name)) {
            return &value;
        }
    }
    return nullptr;
}

std::size_t SurfaceRequest::count(std::string_view name) const {
    std::size_t n = 0;
    for (const auto& entry : headers) {
        if (iequals(entry.first, name)) {
            ++n;
        }
    }
    return n;
}

void SurfaceResponse::set_header(std::string name, std::string value) {
    for (auto& entry : headers) {
        if (iequals(entry.first, name)) {
            entry.second = std::move(value);
            return;
        }
    }
    headers.emplace_back(std::move(name), std::move(value));
}

const std::string* SurfaceResponse::header(std::string_view name) const {
    for (const auto& [field, value] : headers) {
        if (iequals(field, name)) {
            return &value;
        }
    }
    return nullptr;
}

}  // namespace rad::surfaces
