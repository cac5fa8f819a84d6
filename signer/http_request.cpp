#include "signer/http_request.hpp"

#include <algorithm>

#include "signer/sigv4x509.hpp"

namespace rad::signer {
namespace {

bool iequals(std::string_view a, std::string_view b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
        const auto lower = [](char c) {
            return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        };
        return lower(x) == lower(y);
    });
}

const std::string* find_header(const std::vector<Header>& headers, std::string_view name) {
    for (const auto& [key, value] : headers) {
        if (iequals(key, name)) {
            return &value;
        }
    }
    return nullptr;
}

}  // namespace

const std::string* HttpRequest::header(std::string_view name) const {
    return find_header(headers, name);
}

void HttpRequest::set_header(std::string name, std::string value) {
    std::erase_if(headers, [&](const Header& h) { return iequals(h.first, name); });
    headers.emplace_back(std::move(name), std::move(value));
}

const std::string* HttpResponse::header(std::string_view name) const {
    return find_header(headers, name);
}

std::string encoded_query(const HttpRequest& request) {
    // SigV4 sorts by the encoded key (then value); encoding first keeps the wire form and the canonical form
    // identical, so the transport can send exactly what was signed.
    std::vector<std::pair<std::string, std::string>> pairs;
    pairs.reserve(request.query.size());
    for (const auto& [key, value] : request.query) {
        pairs.emplace_back(uri_encode(key), uri_encode(value));
    }
    std::sort(pairs.begin(), pairs.end());
    std::string out;
    for (const auto& [key, value] : pairs) {
        if (!out.empty()) {
            out += '&';
        }
        out += key;
        out += '=';
        out += value;
    }
    return out;
}

}  // namespace rad::signer
