// TPM keys without a TPM: reference and key-file parsing, the TCTI default, and how an unreachable TPM is
// reported. Signing with a real (software) TPM is tests/integration/test_tpm.py.

#include "pki/tpm_key.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "pki/identity.hpp"

namespace rad::pki {
namespace {

std::string tpm_data(const std::string& name) {
    const char* dir = std::getenv("RAD_TEST_DATA");
    const std::filesystem::path base = dir != nullptr ? dir : RAD_TEST_DATA_DEFAULT;
    std::ifstream in(base / "tpm" / name, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

// A TCTI that refuses at once: nothing listens on port 1.
constexpr const char* kNowhere = "swtpm:host=127.0.0.1,port=1";

TpmKeyOptions nowhere() {
    TpmKeyOptions options;
    options.tcti = kNowhere;
    return options;
}

TEST(TpmKey, RecognisesReferencesAndKeyFiles) {
    EXPECT_TRUE(is_tpm_handle_reference("handle:0x81000001"));
    EXPECT_FALSE(is_tpm_handle_reference("/etc/handle:0x81000001"));
    EXPECT_TRUE(is_tss2_private_key(tpm_data("owner-p256.tss")));
    EXPECT_FALSE(is_tss2_private_key("-----BEGIN PRIVATE KEY-----\n"));
}

TEST(TpmKey, TctiDefaults) {
    EXPECT_EQ(resolve_tcti("tabrmd:"), "tabrmd:");
    ::unsetenv("TPM_DEVICE");
    EXPECT_EQ(resolve_tcti(""), std::string(kDefaultTcti));
    // $TPM_DEVICE (the reference helper's variable) counts only when it names a character device.
    ::setenv("TPM_DEVICE", "/dev/null", 1);
    EXPECT_EQ(resolve_tcti(""), "device:/dev/null");
    ::setenv("TPM_DEVICE", "/nonexistent/tpm", 1);
    EXPECT_EQ(resolve_tcti(""), std::string(kDefaultTcti));
    ::unsetenv("TPM_DEVICE");
}

TEST(TpmKey, MalformedHandlesAreUsageErrors) {
    for (const char* reference : {"handle:", "handle:0x", "handle:xyz", "handle:0x810000011",
                                  "handle:0x40000001", "handle:0x80000000"}) {
        auto key = load_tpm_handle_key(reference, nowhere());
        ASSERT_FALSE(key) << reference;
        EXPECT_EQ(key.error().code, Errc::usage) << reference;
        EXPECT_NE(key.error().message.find(reference), std::string::npos) << key.error().message;
    }
}

TEST(TpmKey, UnreachableTpmIsRetryableDeviceError) {
    auto key = load_tpm_handle_key("handle:0x81000001", nowhere());
    ASSERT_FALSE(key);
    EXPECT_EQ(key.error().code, Errc::device_unavailable);
    EXPECT_TRUE(is_retryable(key.error().code));
    EXPECT_EQ(exit_code(key.error().code), 69);
    EXPECT_NE(key.error().message.find(kNowhere), std::string::npos) << key.error().message;
}

TEST(TpmKey, KeyFileIsParsedWithoutTheTpmAndSignsThroughIt) {
    // A P-256 key made by `openssl genpkey -provider tpm2` (owner hierarchy parent) in some other TPM.
    auto key = load_tss2_key(tpm_data("owner-p256.tss"), "owner-p256.tss", nowhere());
    ASSERT_TRUE(key) << key.error().message;
    EXPECT_EQ(key->key_type(), KeyType::ec);
    EXPECT_EQ(key->description().rfind("EC P-256 in the TPM (owner-p256.tss, ", 0), 0u) << key->description();
    EXPECT_EQ(key->native(), nullptr);
    auto public_point = key->sign_string_public_key();
    ASSERT_TRUE(public_point);
    EXPECT_EQ(public_point->size(), 65u);
    // Signing is the first TPM access.
    auto signature = key->sign("message", Digest::sha256);
    ASSERT_FALSE(signature);
    EXPECT_EQ(signature.error().code, Errc::device_unavailable) << signature.error().message;
}

TEST(TpmKey, RefusesKeyFilesItCannotUse) {
    struct Case {
        const char* file;
        const char* words;
    };
    for (const Case& c : {Case{"importable.tss", "importable"}, Case{"policy.tss", "policies"},
                          Case{"transient-parent.tss", "0x80000000"}, Case{"truncated.tss", "malformed"}}) {
        auto key = load_tss2_key(tpm_data(c.file), c.file, nowhere());
        ASSERT_FALSE(key) << c.file;
        EXPECT_EQ(key.error().code, Errc::input_invalid) << c.file;
        EXPECT_NE(key.error().message.find(c.words), std::string::npos) << key.error().message;
        EXPECT_EQ(key.error().message.rfind(c.file, 0), 0u) << key.error().message;
    }
    auto none =
        load_tss2_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "k.pem", nowhere());
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().code, Errc::input_invalid);
}

TEST(TpmKey, PasswordLongerThanTheTpmAllowsIsRefused) {
    TpmKeyOptions options = nowhere();
    options.key_password.emplace(std::string(65, 'x'));
    auto key = load_tss2_key(tpm_data("owner-p256.tss"), "owner-p256.tss", options);
    ASSERT_FALSE(key);
    EXPECT_EQ(key.error().code, Errc::usage);
    EXPECT_EQ(key.error().message.find(std::string(65, 'x')), std::string::npos);
}

TEST(TpmKey, LoadPrivateKeyRoutesKeyFilesAndHandles) {
    IdentitySource source;
    source.tpm = nowhere();
    const char* dir = std::getenv("RAD_TEST_DATA");
    source.private_key =
        std::filesystem::path(dir != nullptr ? dir : RAD_TEST_DATA_DEFAULT) / "tpm" / "owner-p256.tss";
    auto from_file = load_private_key(source);
    ASSERT_TRUE(from_file) << from_file.error().message;
    EXPECT_NE(from_file->description().find("in the TPM"), std::string::npos);
    source.private_key = "handle:0x81000001";
    auto from_handle = load_private_key(source);
    ASSERT_FALSE(from_handle);
    EXPECT_EQ(from_handle.error().code, Errc::device_unavailable);
}

}  // namespace
}  // namespace rad::pki
