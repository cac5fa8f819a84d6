#pragma once
// SigV4-X509, the request signature of IAM Roles Anywhere (docs/protocol.md §4): a SigV4 canonical request
// whose string to sign is signed by the certificate's private key (RSA and EC: over its SHA-256; ML-DSA: the
// string itself). Canonicalisation is pure; sign_request
// only adds headers and calls the key.

#include <chrono>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "pki/identity.hpp"
#include "signer/http_request.hpp"

namespace rad::signer {

inline constexpr std::string_view kServiceName = "rolesanywhere";

// uri_encode percent-encodes every byte except A-Z a-z 0-9 - _ . ~ (uppercase hex), as SigV4 requires.
std::string uri_encode(std::string_view value);

// signed_header_names is the ';'-joined, sorted, lowercased list of the request's headers that are signed:
// every header except Authorization, User-Agent and X-Amzn-Trace-Id.
std::string signed_header_names(const HttpRequest& request);

// canonical_request is "METHOD\nPATH\nQUERY\nHEADERS\n\nSIGNED\nHEXSHA256(body)". Header values are trimmed,
// inner runs of spaces collapsed, repeated names joined with ','.
std::string canonical_request(const HttpRequest& request);

// algorithm_name is "AWS4-X509-RSA-SHA256", "AWS4-X509-ECDSA-SHA256" or, for every ML-DSA parameter set,
// "AWS4-X509-MLDSA".
std::string_view algorithm_name(pki::KeyType key_type);

// credential_scope is "YYYYMMDD/<region>/rolesanywhere/aws4_request".
std::string credential_scope(std::chrono::system_clock::time_point now, std::string_view region);

// string_to_sign is "ALG\nX-Amz-Date\nSCOPE\nHEXSHA256(canonical request)".
std::string string_to_sign(pki::KeyType key_type,
                           std::chrono::system_clock::time_point now,
                           std::string_view region,
                           std::string_view canonical);

// sign_request sets X-Amz-Date (from `now`), X-Amz-X509 and, when the identity has a chain, X-Amz-X509-Chain,
// then adds Authorization: "ALG Credential=<serial decimal>/<scope>, SignedHeaders=<...>, Signature=<hex>".
// Headers already present (Host, Content-Type) are signed as they are.
[[nodiscard]] Result<void> sign_request(HttpRequest& request,
                                        const pki::Identity& identity,
                                        std::string_view region,
                                        std::chrono::system_clock::time_point now);

}  // namespace rad::signer
