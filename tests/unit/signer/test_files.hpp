#pragma once
// Helpers of the signer tests: locating tests/data and loading fixed identities without the secret-file
// permission rules (the checked-in test keys are world-readable on purpose).

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "pki/identity.hpp"

namespace rad::signer::test {

// data_dir is $RAD_TEST_DATA when set, else the source tree's tests/data compiled in by CMake.
inline std::filesystem::path data_dir() {
    if (const char* dir = std::getenv("RAD_TEST_DATA"); dir != nullptr && *dir != '\0') {
        return dir;
    }
    return RAD_SIGNER_TEST_DATA_DIR;
}

inline std::string slurp(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("cannot open " + path.string());
    }
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

// load_test_identity loads a leaf certificate, its key and optionally a chain bundle through pki.
inline pki::Identity load_test_identity(const std::filesystem::path& cert,
                                        const std::filesystem::path& key,
                                        const std::filesystem::path& chain = {}) {
    // value() throws ResultError on failure; GoogleTest reports it with the message.
    pki::Certificate leaf = pki::load_certificate(cert).value();
    pki::PrivateKey private_key = pki::PrivateKey::from_pem(slurp(key), nullptr, key.string()).value();
    std::vector<pki::Certificate> bundle;
    if (!chain.empty()) {
        bundle = pki::load_certificate_bundle(chain).value();
    }
    return pki::Identity{std::move(leaf), std::move(bundle), std::move(private_key)};
}

}  // namespace rad::signer::test
