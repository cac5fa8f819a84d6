// Fuzz target: everything pki/ parses out of a file the agent is pointed at. Each input goes through the
// leaf-certificate reader (PEM or DER), the PEM block reader with a DER decode per CERTIFICATE block (what
// --intermediates does), the private-key reader without and with a passphrase, and the PKCS#12 reader
// without and with a passphrase. What comes out must be usable as the headers promise: a certificate
// re-encodes to the same DER and answers every accessor, a key is a supported one that signs and verifies,
// a PKCS#12 bundle yields a key that matches its leaf and a chain in issuer order.
//
// pki/ossl.hpp (pki's internal header, with OpenSSL types) is used for the from-bytes entry points that the
// file loaders share; the target links OpenSSL like pki/ does.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "pki/certificate.hpp"
#include "pki/ossl.hpp"
#include "pki/private_key.hpp"

namespace {

constexpr std::string_view kOrigin = "fuzz-input";
// The passphrase of the encrypted seeds in corpus/fuzz_pem_der/.
constexpr std::string_view kPassphrase = "fuzz-passphrase";

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
}

void check_certificate(const rad::pki::Certificate& certificate) {
    if (certificate.der().empty() || certificate.der_base64().empty()) {
        fail("a parsed certificate with no DER");
    }
    auto again = rad::pki::Certificate::from_der(certificate.der(), kOrigin);
    if (!again || again->der() != certificate.der()) {
        fail("a parsed certificate does not re-parse to the same DER");
    }
    if (certificate.serial_decimal().empty() || certificate.serial_hex().empty() ||
        certificate.sha1_fingerprint_hex().size() != 40) {
        fail("a parsed certificate without a serial or fingerprint");
    }
    const int version = certificate.version();
    if (version < 1 || version > 3) {
        fail("a parsed certificate with a version outside 1..3");
    }
    // The rest must merely not crash or leak: names, dates, flags, key type, the leaf rules.
    static_cast<void>(certificate.subject());
    static_cast<void>(certificate.issuer());
    static_cast<void>(certificate.not_before() <= certificate.not_after());
    static_cast<void>(certificate.is_ca());
    static_cast<void>(certificate.has_digital_signature());
    static_cast<void>(certificate.key_type());
    static_cast<void>(certificate.issued_by(certificate));
    static_cast<void>(rad::pki::ossl::check_leaf_rules(certificate, kOrigin, std::nullopt));
}

void check_key(const rad::pki::PrivateKey& key) {
    if (!rad::pki::check_supported(key, kOrigin)) {
        fail("a loaded private key that check_supported refuses");
    }
    if (key.description().empty()) {
        fail("a loaded private key without a description");
    }
    auto signature = key.sign("fuzz", rad::pki::Digest::sha256);
    if (!signature || signature->empty()) {
        fail("a loaded private key that cannot sign");
    }
    auto public_key = key.sign_string_public_key();
    if (!public_key || public_key->empty()) {
        fail("a loaded private key without a public key");
    }
}

void try_key(std::string_view input, const rad::Secret* passphrase) {
    auto key = rad::pki::PrivateKey::from_pem(input, passphrase, kOrigin);
    if (key) {
        check_key(*key);
    } else if (key.error().message.empty()) {
        fail("a key refusal without a message");
    }
}

void try_pkcs12(std::string_view input, const rad::Secret* passphrase) {
    auto bundle = rad::pki::ossl::load_pkcs12(input, passphrase, kOrigin);
    if (!bundle) {
        return;
    }
    check_key(bundle->key);
    check_certificate(bundle->leaf);
    if (!bundle->key.matches(bundle->leaf)) {
        fail("a PKCS#12 leaf that does not match its key");
    }
    const rad::pki::Certificate* child = &bundle->leaf;
    for (const auto& issuer : bundle->chain) {
        check_certificate(issuer);
        if (!child->issued_by(issuer)) {
            fail("a PKCS#12 chain out of issuer order");
        }
        child = &issuer;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > rad::kMaxInputFileBytes) {
        return 0;  // read_public_file and read_secret_file refuse bigger files
    }
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    auto leaf = rad::pki::ossl::certificate_from_bytes(input, kOrigin);
    if (leaf) {
        check_certificate(*leaf);
    }

    auto blocks = rad::pki::ossl::read_pem_blocks(input, kOrigin);
    if (blocks) {
        for (const auto& block : *blocks) {
            if (block.name() == "CERTIFICATE") {
                if (auto certificate = rad::pki::Certificate::from_der(block.der(), kOrigin)) {
                    check_certificate(*certificate);
                }
            }
        }
    }

    const rad::Secret passphrase(kPassphrase);
    try_key(input, nullptr);
    try_key(input, &passphrase);
    try_pkcs12(input, nullptr);
    try_pkcs12(input, &passphrase);
    return 0;
}
