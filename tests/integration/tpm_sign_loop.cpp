// tpm_sign_loop: signs many messages with one TPM key, the way the agent signs (PrivateKey::sign, which
// opens, uses and flushes everything per signature), and verifies every signature against the certificate.
// test_tpm.py runs it, then checks that the TPM holds no transient object afterwards.
//
//   tpm_sign_loop --private-key handle:0x81000002|key.pem --certificate cert.pem --tcti swtpm:port=P
//                 --count N [--digest sha256|sha384|sha512] [--key-password-file F] [--parent-password-file
//                 F]
// Prints {"signatures": N, "seconds": S}; exits 1 with a message on the first failure.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/file_read.hpp"
#include "pki/certificate.hpp"
#include "pki/private_key.hpp"
#include "pki/tpm_key.hpp"

namespace {

int fail(const std::string& message) {
    std::fprintf(stderr, "tpm_sign_loop: %s\n", message.c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::string key_ref, certificate, tcti, key_password_file, parent_password_file, digest_name = "sha256";
    long count = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view flag = argv[i];
        const char* value = argv[i + 1];
        if (flag == "--private-key") {
            key_ref = value;
        } else if (flag == "--certificate") {
            certificate = value;
        } else if (flag == "--tcti") {
            tcti = value;
        } else if (flag == "--count") {
            count = std::strtol(value, nullptr, 10);
        } else if (flag == "--digest") {
            digest_name = value;
        } else if (flag == "--key-password-file") {
            key_password_file = value;
        } else if (flag == "--parent-password-file") {
            parent_password_file = value;
        } else {
            return fail("unknown flag " + std::string(flag));
        }
    }
    if (key_ref.empty() || certificate.empty() || count < 1) {
        return fail("--private-key, --certificate and a positive --count are required");
    }
    rad::pki::Digest digest = rad::pki::Digest::sha256;
    if (digest_name == "sha384") {
        digest = rad::pki::Digest::sha384;
    } else if (digest_name == "sha512") {
        digest = rad::pki::Digest::sha512;
    } else if (digest_name != "sha256") {
        return fail("--digest must be sha256, sha384 or sha512");
    }

    rad::pki::TpmKeyOptions options;
    options.tcti = tcti;
    for (auto [path, slot] : {std::pair{&key_password_file, &options.key_password},
                              std::pair{&parent_password_file, &options.parent_password}}) {
        if (!path->empty()) {
            auto secret = rad::read_passphrase_file(*path, rad::SecretFilePolicy{true});
            if (!secret) {
                return fail(secret.error().message);
            }
            *slot = std::move(*secret);
        }
    }
    auto cert = rad::pki::load_certificate(certificate);
    if (!cert) {
        return fail(cert.error().message);
    }
    rad::Result<rad::pki::PrivateKey> key = rad::make_error(rad::Errc::internal, "not loaded");
    if (rad::pki::is_tpm_handle_reference(key_ref)) {
        key = rad::pki::load_tpm_handle_key(key_ref, options);
    } else {
        auto pem = rad::read_public_file(key_ref);
        if (!pem) {
            return fail(pem.error().message);
        }
        key = rad::pki::load_tss2_key(*pem, key_ref, options);
    }
    if (!key) {
        return fail(key.error().message);
    }
    if (!key->matches(*cert)) {
        return fail(key_ref + " is not the key of " + certificate);
    }
    const auto started = std::chrono::steady_clock::now();
    for (long i = 0; i < count; ++i) {
        const std::string message = "tpm_sign_loop message " + std::to_string(i);
        auto signature = key->sign(message, digest);
        if (!signature) {
            return fail("signature " + std::to_string(i) + ": " + signature.error().message);
        }
        if (!rad::pki::verify(*cert, message, *signature, digest)) {
            return fail("signature " + std::to_string(i) + " does not verify against " + certificate);
        }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::printf("{\"signatures\": %ld, \"seconds\": %.3f}\n", count, seconds);
    return 0;
}
