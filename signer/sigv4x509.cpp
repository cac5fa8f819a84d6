#include "signer/sigv4x509.hpp"

#include <algorithm>
#include <map>
#include <vector>

#include "common/encoding.hpp"
#include "common/time_format.hpp"
#include "pki/private_key.hpp"

namespace rad::signer {
namespace {

constexpr char kUpperHex[] = "0123456789ABCDEF";

bool is_unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

std::string to_lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
    return out;
}

bool is_unsigned_header(std::string_view lower_name) {
    // Authorization carries the signature itself; User-Agent and X-Amzn-Trace-Id are rewritten by proxies and
    // transports after signing, so signing them would only make valid requests fail (the reference helper
    // leaves out the same three).
    return lower_name == "authorization" || lower_name == "user-agent" || lower_name == "x-amzn-trace-id";
}

// canonical_value trims spaces and tabs at both ends and collapses every inner run of them into one space.
std::string canonical_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    bool pending_space = false;
    for (const char c : value) {
        if (c == ' ' || c == '\t') {
            pending_space = !out.empty();
            continue;
        }
        if (pending_space) {
            out += ' ';
            pending_space = false;
        }
        out += c;
    }
    return out;
}

// signed_headers maps each signed lowercase name to its values in insertion order; std::map keeps the names
// sorted byte-wise, which is the order SigV4 wants.
std::map<std::string, std::vector<std::string>> signed_headers(const HttpRequest& request) {
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& [name, value] : request.headers) {
        std::string lower = to_lower(name);
        if (is_unsigned_header(lower)) {
            continue;
        }
        out[std::move(lower)].push_back(canonical_value(value));
    }
    return out;
}

// canonical_path percent-encodes each path segment once; "/sessions" is left as it is.
std::string canonical_path(std::string_view path) {
    if (path.empty()) {
        return "/";
    }
    std::string out;
    std::size_t start = 0;
    while (true) {
        const std::size_t slash = path.find('/', start);
        out += uri_encode(
            path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
        if (slash == std::string_view::npos) {
            break;
        }
        out += '/';
        start = slash + 1;
    }
    return out;
}

}  // namespace

std::string uri_encode(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (const char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        if (is_unreserved(c)) {
            out += ch;
        } else {
            out += '%';
            out += kUpperHex[c >> 4];
            out += kUpperHex[c & 0x0F];
        }
    }
    return out;
}

std::string signed_header_names(const HttpRequest& request) {
    std::string out;
    for (const auto& [name, values] : signed_headers(request)) {
        if (!out.empty()) {
            out += ';';
        }
        out += name;
    }
    return out;
}

std::string canonical_request(const HttpRequest& request) {
    std::string out;
    out += request.method;
    out += '\n';
    out += canonical_path(request.path);
    out += '\n';
    out += encoded_query(request);
    out += '\n';
    std::string names;
    for (const auto& [name, values] : signed_headers(request)) {
        out += name;
        out += ':';
        for (std::size_t i = 0; i < values.size(); ++i) {
            if (i != 0) {
                out += ',';
            }
            out += values[i];
        }
        out += '\n';
        if (!names.empty()) {
            names += ';';
        }
        names += name;
    }
    out += '\n';
    out += names;
    out += '\n';
    out += pki::sha256_hex(request.body);
    return out;
}

std::string_view algorithm_name(pki::KeyType key_type) {
    switch (key_type) {
        case pki::KeyType::rsa:
            return "AWS4-X509-RSA-SHA256";
        case pki::KeyType::ec:
            return "AWS4-X509-ECDSA-SHA256";
        case pki::KeyType::ml_dsa_44:
        case pki::KeyType::ml_dsa_65:
        case pki::KeyType::ml_dsa_87:
            return "AWS4-X509-MLDSA";
    }
    return "AWS4-X509-UNKNOWN";
}

std::string credential_scope(std::chrono::system_clock::time_point now, std::string_view region) {
    std::string out = format_date_stamp(now);
    out += '/';
    out += region;
    out += '/';
    out += kServiceName;
    out += "/aws4_request";
    return out;
}

std::string string_to_sign(pki::KeyType key_type,
                           std::chrono::system_clock::time_point now,
                           std::string_view region,
                           std::string_view canonical) {
    std::string out(algorithm_name(key_type));
    out += '\n';
    out += format_amz_date(now);
    out += '\n';
    out += credential_scope(now, region);
    out += '\n';
    out += pki::sha256_hex(canonical);
    return out;
}

Result<void> sign_request(HttpRequest& request,
                          const pki::Identity& identity,
                          std::string_view region,
                          std::chrono::system_clock::time_point now) {
    if (region.empty()) {
        return make_error(Errc::internal,
                          "cannot sign the CreateSession request: the signing region is empty");
    }
    // Work on a copy so that a failed signature leaves the caller's request exactly as it was.
    HttpRequest signed_request = request;
    if (signed_request.header("Host") == nullptr) {
        if (signed_request.host.empty()) {
            return make_error(Errc::internal, "cannot sign the CreateSession request: it has no Host");
        }
        signed_request.set_header("Host", signed_request.host);
    }
    // Each attempt is signed afresh: the date moves on, and a stale Authorization must not survive.
    std::erase_if(signed_request.headers, [](const Header& h) {
        const std::string lower = to_lower(h.first);
        return lower == "authorization" || lower == "x-amz-x509-chain";
    });
    signed_request.set_header("X-Amz-Date", format_amz_date(now));
    signed_request.set_header("X-Amz-X509", identity.leaf.der_base64());
    if (!identity.chain.empty()) {
        std::string chain;
        for (const auto& certificate : identity.chain) {
            if (!chain.empty()) {
                chain += ',';
            }
            chain += certificate.der_base64();
        }
        signed_request.set_header("X-Amz-X509-Chain", std::move(chain));
    }

    const pki::KeyType key_type = identity.key.key_type();
    const std::string canonical = canonical_request(signed_request);
    const std::string to_sign = string_to_sign(key_type, now, region, canonical);
    // Roles Anywhere hashes with SHA-256 whatever the key size or curve; ML-DSA signs the string itself and
    // takes no digest (docs/protocol.md §4.4).
    auto signature = identity.key.sign(to_sign, pki::Digest::sha256);
    if (!signature) {
        return signature.error();
    }

    std::string authorization(algorithm_name(key_type));
    authorization += " Credential=";
    authorization += identity.leaf.serial_decimal();
    authorization += '/';
    authorization += credential_scope(now, region);
    authorization += ", SignedHeaders=";
    authorization += signed_header_names(signed_request);
    authorization += ", Signature=";
    authorization += hex_lower(std::span<const std::uint8_t>(*signature));
    signed_request.set_header("Authorization", std::move(authorization));
    request = std::move(signed_request);
    return {};
}

}  // namespace rad::signer
