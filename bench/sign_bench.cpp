// sign_bench: signatures per second of PrivateKey::sign (SHA-256) for each key in the given directory.
// Usage: sign_bench <pki-dir> [seconds-per-key]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "pki/private_key.hpp"

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: sign_bench <pki-dir> [seconds-per-key]\n");
        return 64;
    }
    const std::string dir = argv[1];
    const double seconds = argc > 2 ? std::atof(argv[2]) : 1.0;
    // A string-to-sign of realistic size (four lines, ~150 bytes).
    const std::string message =
        "AWS4-X509-ECDSA-SHA256\n20260101T000000Z\n20260101/us-east-1/rolesanywhere/aws4_request\n"
        "0341377207232aa5da02d53ac67e71211fab7a4dd4cfc5f63c6121b17f540268";
    std::printf("key        signatures/s\n");
    for (const char* name : {"rsa2048", "p256", "p384", "p521"}) {
        auto key = rad::pki::PrivateKey::load(dir + "/" + name + ".key", nullptr, {});
        if (!key) {
            std::fprintf(stderr, "sign_bench: %s\n", key.error().message.c_str());
            return 66;
        }
        using clock = std::chrono::steady_clock;
        const auto start = clock::now();
        const auto stop = start + std::chrono::duration<double>(seconds);
        long count = 0;
        while (clock::now() < stop) {
            if (!key->sign(message, rad::pki::Digest::sha256)) {
                std::fprintf(stderr, "sign_bench: signing with %s failed\n", name);
                return 70;
            }
            ++count;
        }
        const double elapsed = std::chrono::duration<double>(clock::now() - start).count();
        std::printf("%-10s %.0f\n", name, static_cast<double>(count) / elapsed);
    }
    return 0;
}
