// Credentials-file editing on many layouts (the reference helper loses a trailing key of the last section and
// drops CRs), and the atomic writer on real files.
#include "daemon/surfaces/credentials_file.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/time_format.hpp"

namespace rad::surfaces {
namespace {

using namespace std::chrono_literals;

signer::Credentials creds(const std::string& id = "ASIANEW") {
    // 2030-01-02T03:04:05Z
    const auto expiration = std::chrono::sys_days{std::chrono::year{2030} / 1 / 2} + 3h + 4min + 5s;
    return signer::Credentials{id, Secret(std::string_view("S/" + id)), Secret(std::string_view("T+" + id)),
                               std::chrono::time_point_cast<std::chrono::system_clock::duration>(expiration)};
}

std::string edit(std::string_view existing, std::string_view profile = "rad") {
    return std::string(edit_credentials_file(existing, profile, creds()).reveal());
}

const char* const kNewKeys =
    "aws_access_key_id = ASIANEW\n"
    "aws_secret_access_key = S/ASIANEW\n"
    "aws_session_token = T+ASIANEW\n"
    "x_expiration = 2030-01-02T03:04:05Z\n";

TEST(EditCredentialsFile, EmptyFileGetsTheSection) {
    EXPECT_EQ(edit(""), std::string("[rad]\n") + kNewKeys);
}

TEST(EditCredentialsFile, AppendsMissingSectionAfterABlankLine) {
    EXPECT_EQ(edit("[default]\nregion = eu-west-1\n"),
              std::string("[default]\nregion = eu-west-1\n\n[rad]\n") + kNewKeys);
}

TEST(EditCredentialsFile, AppendsAfterALastLineWithoutNewline) {
    EXPECT_EQ(edit("[default]\nregion = eu-west-1"),
              std::string("[default]\nregion = eu-west-1\n\n[rad]\n") + kNewKeys);
}

TEST(EditCredentialsFile, ReplacesKeysInPlaceAndKeepsEverythingElse) {
    const std::string before =
        "# managed by hand\n"
        "[default]\n"
        "aws_access_key_id = AKIAKEEP\n"
        "\n"
        "[rad]\n"
        "region = us-east-2\n"
        "aws_access_key_id=OLD\n"
        "  aws_secret_access_key   =   OLDSECRET\n"
        "; a comment inside\n"
        "aws_session_token = OLDTOKEN\n"
        "x_expiration = 2020-01-01T00:00:00Z\n"
        "output = json\n"
        "\n"
        "[other]\n"
        "aws_access_key_id = AKIAOTHER\n";
    const std::string after =
        "# managed by hand\n"
        "[default]\n"
        "aws_access_key_id = AKIAKEEP\n"
        "\n"
        "[rad]\n"
        "region = us-east-2\n"
        "aws_access_key_id = ASIANEW\n"
        "aws_secret_access_key = S/ASIANEW\n"
        "; a comment inside\n"
        "aws_session_token = T+ASIANEW\n"
        "x_expiration = 2030-01-02T03:04:05Z\n"
        "output = json\n"
        "\n"
        "[other]\n"
        "aws_access_key_id = AKIAOTHER\n";
    EXPECT_EQ(edit(before), after);
}

TEST(EditCredentialsFile, AddsMissingKeysAfterLastNonBlankLineOfTheSection) {
    EXPECT_EQ(edit("[rad]\nregion = us-east-2\n\n\n[next]\na = b\n"),
              std::string("[rad]\nregion = us-east-2\n") + kNewKeys + "\n\n[next]\na = b\n");
}

TEST(EditCredentialsFile, KeepsTheLastKeyOfTheLastSection) {
    // The reference helper drops "region" here.
    EXPECT_EQ(edit("[rad]\naws_access_key_id = OLD\nregion = us-east-2"),
              "[rad]\naws_access_key_id = ASIANEW\nregion = us-east-2\n"
              "aws_secret_access_key = S/ASIANEW\naws_session_token = T+ASIANEW\n"
              "x_expiration = 2030-01-02T03:04:05Z\n");
}

TEST(EditCredentialsFile, CrlfFilesStayCrlf) {
    EXPECT_EQ(edit("[default]\r\nregion = x\r\n[rad]\r\naws_access_key_id = OLD\r\n"),
              "[default]\r\nregion = x\r\n[rad]\r\naws_access_key_id = ASIANEW\r\n"
              "aws_secret_access_key = S/ASIANEW\r\naws_session_token = T+ASIANEW\r\n"
              "x_expiration = 2030-01-02T03:04:05Z\r\n");
}

TEST(EditCredentialsFile, OnlyTheFirstSectionOfThatNameIsEditedAndNamesAreExact) {
    EXPECT_EQ(
        edit("[rad-2]\naws_access_key_id = A\n[ rad ]\naws_access_key_id = B\n[rad]\naws_access_key_id = C\n"
             "[rad]\naws_access_key_id = D\n"),
        "[rad-2]\naws_access_key_id = A\n[ rad ]\naws_access_key_id = B\n[rad]\naws_access_key_id = ASIANEW\n"
        "aws_secret_access_key = S/ASIANEW\naws_session_token = T+ASIANEW\n"
        "x_expiration = 2030-01-02T03:04:05Z\n"
        "[rad]\naws_access_key_id = D\n");
}

TEST(EditCredentialsFile, DuplicateKeysInTheSectionCollapseToOne) {
    EXPECT_EQ(edit("[rad]\naws_access_key_id = A\naws_access_key_id = B\n"),
              std::string("[rad]\naws_access_key_id = ASIANEW\naws_secret_access_key = S/ASIANEW\n"
                          "aws_session_token = T+ASIANEW\nx_expiration = 2030-01-02T03:04:05Z\n"));
}

// botocore lower-cases keys and splits at the first '=' or ':': these lines set our keys too, and keeping
// them beside ours would make botocore refuse the whole file for a duplicate key.
TEST(EditCredentialsFile, KeysMatchAsBotocoreReadsThem) {
    EXPECT_EQ(
        edit("[rad]\nAWS_ACCESS_KEY_ID = A\nAws_Secret_Access_Key: B\nregion = x\naws_access_key_id: C\n"),
        "[rad]\naws_access_key_id = ASIANEW\naws_secret_access_key = S/ASIANEW\nregion = x\n"
        "aws_session_token = T+ASIANEW\nx_expiration = 2030-01-02T03:04:05Z\n");
}

// Found by the fuzz target's oracle: a duplicate key dropped from the file's last line left an empty line in
// its place, and a file ending without a newline got one even when nothing was added after its last line.
TEST(EditCredentialsFile, ADuplicateDroppedFromTheLastLineLeavesNoEmptyLine) {
    EXPECT_EQ(edit("[rad]\naws_access_key_id = A\naws_access_key_id = B"),
              std::string("[rad]\naws_access_key_id = ASIANEW\naws_secret_access_key = S/ASIANEW\n"
                          "aws_session_token = T+ASIANEW\nx_expiration = 2030-01-02T03:04:05Z\n"));
}

TEST(EditCredentialsFile, ALastLineWithoutNewlineKeepsItWhenNothingFollowsIt) {
    EXPECT_EQ(edit("[rad]\naws_access_key_id = A\naws_secret_access_key = B\naws_session_token = C\n"
                   "x_expiration = D\nregion = us-east-2"),
              std::string("[rad]\n") + kNewKeys + "region = us-east-2");
}

TEST(EditCredentialsFile, IsIdempotent) {
    const std::string once = edit("[default]\nregion = x\n");
    EXPECT_EQ(edit(once), once);
}

class CredentialsFileWriter : public ::testing::Test {
protected:
    void SetUp() override {
        char pattern[] = "/tmp/rad-credfile-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern), nullptr);
        dir_ = pattern;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    static std::string slurp(const std::filesystem::path& p) {
        std::ifstream in(p, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
    static unsigned mode_of(const std::filesystem::path& p) {
        struct stat st {};
        EXPECT_EQ(::stat(p.c_str(), &st), 0);
        return st.st_mode & 0777;
    }

    std::filesystem::path dir_;
};

TEST_F(CredentialsFileWriter, CreatesFileAndDirectoryPrivately) {
    const auto path = dir_ / "aws" / "credentials";
    ASSERT_TRUE(write_credentials_file(path, "rad", creds()));
    EXPECT_EQ(slurp(path), std::string("[rad]\n") + kNewKeys);
    EXPECT_EQ(mode_of(path), 0600u);
    EXPECT_EQ(mode_of(dir_ / "aws"), 0700u);
}

// Under umask 0000 every directory the writer makes is still 0700 (mkdir's own mode, no chmod afterwards,
// so no moment when it is open), intermediate ones included.
TEST_F(CredentialsFileWriter, CreatesNestedDirectoriesPrivatelyUnderUmask0) {
    const auto path = dir_ / "a" / "b" / "credentials";
    const mode_t old_mask = ::umask(0);
    const auto written = write_credentials_file(path, "rad", creds());
    ::umask(old_mask);
    ASSERT_TRUE(written) << written.error().message;
    EXPECT_EQ(mode_of(dir_ / "a"), 0700u);
    EXPECT_EQ(mode_of(dir_ / "a" / "b"), 0700u);
    EXPECT_EQ(mode_of(path), 0600u);
}

TEST_F(CredentialsFileWriter, RefusesAGroupReadableFileAndLeavesItAlone) {
    const auto path = dir_ / "credentials";
    std::ofstream(path) << "[default]\nx = y\n";
    ::chmod(path.c_str(), 0644);
    auto r = write_credentials_file(path, "rad", creds());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::unsafe_permissions);
    EXPECT_NE(r.error().message.find(path.string()), std::string::npos);
    EXPECT_EQ(slurp(path), "[default]\nx = y\n");
}

TEST_F(CredentialsFileWriter, LeavesNoTemporaryFilesBehind) {
    const auto path = dir_ / "credentials";
    ASSERT_TRUE(write_credentials_file(path, "a", creds("A")));
    ASSERT_TRUE(write_credentials_file(path, "b", creds("B")));
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
        names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"credentials"}));  // nor the writers' lock file
}

TEST_F(CredentialsFileWriter, RemovesTheLockFileAKilledWriterLeft) {
    const auto path = dir_ / "credentials";
    std::ofstream(dir_ / "credentials.lock") << "";
    ASSERT_TRUE(write_credentials_file(path, "a", creds("A")));
    EXPECT_FALSE(std::filesystem::exists(dir_ / "credentials.lock"));
    EXPECT_EQ(slurp(path).rfind("[a]\naws_access_key_id = A\n", 0), 0u);
}

TEST_F(CredentialsFileWriter, RemovesTemporaryFilesAKilledWriterLeft) {
    const auto path = dir_ / "credentials";
    std::ofstream(dir_ / "credentials.tmp.4242.17") << "[half";
    std::ofstream(dir_ / "credentials.tmp.4243.18") << "";
    std::ofstream(dir_ / "other.tmp.1.2") << "not ours";
    std::filesystem::create_directory(dir_ / "credentials.tmp.dir");
    std::filesystem::create_symlink(dir_ / "other.tmp.1.2", dir_ / "credentials.tmp.link");
    ASSERT_TRUE(write_credentials_file(path, "a", creds("A")));
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
        names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    // Only the stale regular files of this credentials file go; a directory, a symlink and others' files
    // stay.
    EXPECT_EQ(names, (std::vector<std::string>{"credentials", "credentials.tmp.dir", "credentials.tmp.link",
                                               "other.tmp.1.2"}));
    EXPECT_EQ(slurp(dir_ / "other.tmp.1.2"), "not ours");
}

TEST_F(CredentialsFileWriter, ConcurrentWritersLoseNoProfile) {
    const auto path = dir_ / "credentials";
    std::vector<std::thread> writers;
    for (int i = 0; i < 8; ++i) {
        writers.emplace_back([&, i] {
            for (int round = 0; round < 5; ++round) {
                EXPECT_TRUE(
                    write_credentials_file(path, "p" + std::to_string(i), creds("K" + std::to_string(i))));
            }
        });
    }
    for (auto& t : writers) {
        t.join();
    }
    const std::string text = slurp(path);
    for (int i = 0; i < 8; ++i) {
        EXPECT_NE(text.find("[p" + std::to_string(i) + "]\naws_access_key_id = K" + std::to_string(i) + "\n"),
                  std::string::npos)
            << text;
    }
    EXPECT_FALSE(std::filesystem::exists(dir_ / "credentials.lock"));
}

}  // namespace
}  // namespace rad::surfaces
