#include "common/file_read.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace rad {
namespace {

namespace fs = std::filesystem;

class FileReadTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "rad-file-read-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
        dir_ = pattern;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    fs::path write(const std::string& name, const std::string& contents, mode_t mode) {
        const fs::path path = dir_ / name;
        std::ofstream(path, std::ios::binary) << contents;
        EXPECT_EQ(::chmod(path.c_str(), mode), 0);
        return path;
    }
    fs::path dir_;
};

TEST_F(FileReadTest, ReadsPublicAndSecretFiles) {
    const auto pub = write("cert.pem", "certificate\n", 0644);
    auto text = read_public_file(pub);
    ASSERT_TRUE(text);
    EXPECT_EQ(text.value(), "certificate\n");

    const auto key = write("key.pem", "secret bytes", 0600);
    auto secret = read_secret_file(key, {});
    ASSERT_TRUE(secret) << secret.error().message;
    EXPECT_EQ(secret.value().reveal(), "secret bytes");
    // Owner read-only is as good as 0600.
    ASSERT_EQ(::chmod(key.c_str(), 0400), 0);
    EXPECT_TRUE(read_secret_file(key, {}));
}

TEST_F(FileReadTest, MissingFile) {
    const auto path = dir_ / "absent.pem";
    auto pub = read_public_file(path);
    ASSERT_FALSE(pub);
    EXPECT_EQ(pub.error().code, Errc::input_missing);
    EXPECT_NE(pub.error().message.find(path.string()), std::string::npos);
    auto secret = read_secret_file(path, {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::input_missing);
}

TEST_F(FileReadTest, DirectoryIsNotAFile) {
    auto pub = read_public_file(dir_);
    ASSERT_FALSE(pub);
    EXPECT_EQ(pub.error().code, Errc::input_invalid);
    EXPECT_NE(pub.error().message.find("not a regular file"), std::string::npos);
    auto secret = read_secret_file(dir_, {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::input_invalid);
}

TEST_F(FileReadTest, SymlinkRefusedForSecretsOnly) {
    const auto target = write("key.pem", "k", 0600);
    const auto link = dir_ / "link.pem";
    fs::create_symlink(target, link);
    auto secret = read_secret_file(link, {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::unsafe_permissions);
    EXPECT_NE(secret.error().message.find("symbolic link"), std::string::npos);
    EXPECT_TRUE(read_secret_file(link, SecretFilePolicy{true}));
    EXPECT_TRUE(read_public_file(link));
}

TEST_F(FileReadTest, GroupOrOtherAccessRefused) {
    for (mode_t mode : {0640, 0604, 0644, 0660, 0602, 0610, 0601}) {
        SCOPED_TRACE(mode);
        const auto path = write("key.pem", "k", mode);
        auto secret = read_secret_file(path, {});
        ASSERT_FALSE(secret);
        EXPECT_EQ(secret.error().code, Errc::unsafe_permissions);
        EXPECT_NE(secret.error().message.find(path.string()), std::string::npos);
        EXPECT_TRUE(read_secret_file(path, SecretFilePolicy{true}));
        EXPECT_TRUE(read_public_file(path));
    }
    const auto path = write("key.pem", "k", 0640);
    EXPECT_NE(read_secret_file(path, {}).error().message.find("0640"), std::string::npos);
}

TEST_F(FileReadTest, GroupReadAdmittedOnlyWhereAllowed) {
    SecretFilePolicy shared;
    shared.allow_group_read = true;
    for (mode_t mode : {0400, 0440, 0600, 0640}) {
        SCOPED_TRACE(mode);
        EXPECT_TRUE(read_secret_file(write("token", "t", mode), shared));
    }
    for (mode_t mode : {0660, 0644, 0604, 0650, 0641}) {
        SCOPED_TRACE(mode);
        auto secret = read_secret_file(write("token", "t", mode), shared);
        ASSERT_FALSE(secret);
        EXPECT_EQ(secret.error().code, Errc::unsafe_permissions);
        EXPECT_NE(secret.error().message.find("chmod 640"), std::string::npos);
    }
}

TEST_F(FileReadTest, DirectoryWritableByOthersRefusedUnlessSticky) {
    const auto path = write("key.pem", "k", 0600);
    ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
    auto secret = read_secret_file(path, {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::unsafe_permissions);
    EXPECT_NE(secret.error().message.find("writable by others"), std::string::npos);
    EXPECT_TRUE(read_secret_file(path, SecretFilePolicy{true}));
    EXPECT_TRUE(read_public_file(path));
    // Sticky (like /tmp): others cannot replace a file they do not own. Group-writable is left to the admin.
    for (mode_t mode : {01777, 0775, 0755, 0700}) {
        SCOPED_TRACE(mode);
        ASSERT_EQ(::chmod(dir_.c_str(), mode), 0);
        EXPECT_TRUE(read_secret_file(path, {}));
    }
}

TEST_F(FileReadTest, SizeCap) {
    const auto exact = write("exact.pem", std::string(kMaxInputFileBytes, 'a'), 0600);
    auto ok = read_public_file(exact);
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok.value().size(), kMaxInputFileBytes);
    const auto big = write("big.pem", std::string(kMaxInputFileBytes + 1, 'a'), 0600);
    auto pub = read_public_file(big);
    ASSERT_FALSE(pub);
    EXPECT_EQ(pub.error().code, Errc::input_invalid);
    EXPECT_NE(pub.error().message.find("larger than"), std::string::npos);
    auto secret = read_secret_file(big, {});
    ASSERT_FALSE(secret);
    EXPECT_EQ(secret.error().code, Errc::input_invalid);
}

TEST_F(FileReadTest, PassphraseFileStripsOneNewline) {
    EXPECT_EQ(read_passphrase_file(write("a", "pass\n", 0600), {}).value().reveal(), "pass");
    EXPECT_EQ(read_passphrase_file(write("b", "pass\r\n", 0600), {}).value().reveal(), "pass");
    EXPECT_EQ(read_passphrase_file(write("c", "pass\n\n", 0600), {}).value().reveal(), "pass\n");
    EXPECT_EQ(read_passphrase_file(write("d", "pass", 0600), {}).value().reveal(), "pass");
    EXPECT_EQ(read_passphrase_file(write("e", " pass \n", 0600), {}).value().reveal(), " pass ");
    auto loose = read_passphrase_file(write("f", "pass\n", 0644), {});
    ASSERT_FALSE(loose);
    EXPECT_EQ(loose.error().code, Errc::unsafe_permissions);
}

}  // namespace
}  // namespace rad
