#include "daemon/cli/cli.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace rad::cli {
namespace {

// Argv owns mutable copies of the arguments, as the kernel hands them to main().
class Argv {
public:
    Argv(std::initializer_list<std::string> args) {
        storage_.emplace_back("rolesanywhere-agent");
        storage_.insert(storage_.end(), args.begin(), args.end());
        for (auto& s : storage_) {
            pointers_.push_back(s.data());
        }
        pointers_.push_back(nullptr);
    }
    int argc() const { return static_cast<int>(storage_.size()); }
    char** argv() { return pointers_.data(); }
    const std::string& at(std::size_t i) const { return storage_[i]; }

private:
    std::vector<std::string> storage_;
    std::vector<char*> pointers_;
};

int run(std::initializer_list<std::string> args, std::string* err = nullptr) {
    Argv a(args);
    ::testing::internal::CaptureStderr();
    ::testing::internal::CaptureStdout();
    const int code = run_cli(a.argc(), a.argv());
    (void)::testing::internal::GetCapturedStdout();
    const std::string captured = ::testing::internal::GetCapturedStderr();
    if (err != nullptr) {
        *err = captured;
    }
    return code;
}

const std::string kTa =
    "--trust-anchor-arn=arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/"
    "0a1b2c3d-0000-4000-8000-000000000001";
const std::string kPr =
    "--profile-arn=arn:aws:rolesanywhere:us-east-1:123456789012:profile/0a1b2c3d-0000-4000-8000-000000000002";
const std::string kRole = "--role-arn=arn:aws:iam::123456789012:role/r";

TEST(CliTest, UnknownFlagIsAUsageErrorOnOneLine) {
    std::string err;
    EXPECT_EQ(run({"credential-process", "--no-such-flag"}, &err), 64);
    EXPECT_NE(err.find("--no-such-flag"), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(CliTest, FastPathCommandLinesGoThroughTheFastPathParser) {
    std::string err;
    EXPECT_EQ(run({"credential-process", "--profile", "web", "--region", "us-east-1"}, &err), 64);
    EXPECT_NE(err.find("--region does not apply"), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_EQ(run({"credential-process", "--profile", "web", "--min-lifetime", "ten"}, &err), 64);
    EXPECT_NE(err.find("--min-lifetime must be 0-43200"), std::string::npos) << err;
    // Its flags without --profile are CLI11's to refuse, as before.
    EXPECT_EQ(run({"credential-process", "--socket", "/run/x.sock"}, &err), 64);
    EXPECT_NE(err.find("--profile"), std::string::npos) << err;
}

TEST(CliTest, UnknownCommandIsAUsageError) {
    EXPECT_EQ(run({"fly"}), 64);
}

TEST(CliTest, NoCommandPrintsHelpAndExits64) {
    std::string err;
    EXPECT_EQ(run({}, &err), 64);
    EXPECT_NE(err.find("credential-process"), std::string::npos);
}

TEST(CliTest, HelpExitsZero) {
    EXPECT_EQ(run({"--help"}), 0);
    EXPECT_EQ(run({"credential-process", "--help"}), 0);
    EXPECT_EQ(run({"sign-string", "--help"}), 0);
    EXPECT_EQ(run({"read-certificate-data", "--help"}), 0);
}

TEST(CliTest, MissingArnsAreAUsageError) {
    std::string err;
    EXPECT_EQ(run({"credential-process", "--certificate", "c.pem", "--private-key", "k.pem", kTa, kPr}, &err),
              64);
    EXPECT_NE(err.find("--role-arn"), std::string::npos) << err;
}

TEST(CliTest, SessionDurationOutsideServiceBoundsIsAUsageError) {
    std::string err;
    EXPECT_EQ(
        run({"credential-process", kTa, kPr, kRole, "--certificate", "c", "--session-duration", "899"}, &err),
        64);
    EXPECT_NE(err.find("--session-duration"), std::string::npos) << err;
    EXPECT_EQ(run({"credential-process", kTa, kPr, kRole, "--certificate", "c", "--session-duration=43201"}),
              64);
    EXPECT_EQ(
        run({"credential-process", kTa, kPr, kRole, "--certificate", "c", "--session-duration", "soon"}), 64);
}

TEST(CliTest, RegionMismatchBetweenTrustAnchorAndProfileIsAUsageError) {
    std::string err;
    EXPECT_EQ(run({"credential-process", kTa,
                   "--profile-arn=arn:aws:rolesanywhere:eu-west-1:123456789012:profile/"
                   "0a1b2c3d-0000-4000-8000-000000000002",
                   kRole, "--certificate", "c"},
                  &err),
              64);
    EXPECT_NE(err.find("region"), std::string::npos) << err;
}

TEST(CliTest, MalformedArnIsAUsageErrorNamingTheFlag) {
    std::string err;
    EXPECT_EQ(
        run({"credential-process", "--trust-anchor-arn", "not-an-arn", kPr, kRole, "--certificate", "c"},
            &err),
        64);
    EXPECT_NE(err.find("--trust-anchor-arn"), std::string::npos) << err;
}

TEST(CliTest, PassphraseSourcesExcludeEachOther) {
    EXPECT_EQ(run({"credential-process", "--pkcs8-password", "x", "--pkcs8-password-file", "f"}), 64);
}

// The variable is read once, for every command that takes it; unset, it is a usage error naming it.
TEST(CliTest, AnUnsetPassphraseVariableIsAUsageErrorNamingIt) {
    ::unsetenv("RAD_TEST_UNSET_PASSPHRASE_VARIABLE");
    for (const char* command :
         {"credential-process", "serve", "update", "sign-string", "read-certificate-data"}) {
        std::string err;
        EXPECT_EQ(run({command, "--certificate", "/nonexistent/leaf.pem", "--pkcs8-password-env",
                       "RAD_TEST_UNSET_PASSPHRASE_VARIABLE"},
                      &err),
                  64)
            << command;
        EXPECT_NE(err.find("--pkcs8-password-env: environment variable RAD_TEST_UNSET_PASSPHRASE_VARIABLE"),
                  std::string::npos)
            << command << ": " << err;
    }
}

// The variable's bytes are wiped once taken, so that /proc/PID/environ no longer shows the passphrase.
TEST(CliTest, ThePassphraseVariableIsWipedOnceRead) {
    ::setenv("RAD_TEST_PASSPHRASE_VARIABLE", "hunter2", 1);
    std::string err;
    // The certificate is missing: the command fails after taking the passphrase.
    EXPECT_EQ(run({"read-certificate-data", "--certificate", "/nonexistent/leaf.pem", "--pkcs8-password-env",
                   "RAD_TEST_PASSPHRASE_VARIABLE"},
                  &err),
              66)
        << err;
    const char* left = std::getenv("RAD_TEST_PASSPHRASE_VARIABLE");
    ASSERT_NE(left, nullptr);
    EXPECT_EQ(std::string(left).find("hunter2"), std::string::npos);
    ::unsetenv("RAD_TEST_PASSPHRASE_VARIABLE");
}

TEST(CliTest, OsStoreFlagsAreRefusedOnLinux) {
    std::string err;
    EXPECT_EQ(
        run({"credential-process", kTa, kPr, kRole, "--cert-selector", "Key=x509Subject,Value=CN=x"}, &err),
        64);
    EXPECT_NE(err.find("macOS and Windows"), std::string::npos) << err;
}

TEST(CliTest, SignStringRefusesUnknownDigestAndFormat) {
    EXPECT_EQ(run({"sign-string", "--private-key", "k", "--digest", "MD5"}), 64);
    EXPECT_EQ(run({"sign-string", "--private-key", "k", "--format", "xml"}), 64);
}

TEST(CliTest, MissingCertificateFileIsNoInput) {
    std::string err;
    EXPECT_EQ(run({"read-certificate-data", "--certificate", "/nonexistent/leaf.pem"}, &err), 66);
    EXPECT_NE(err.find("/nonexistent/leaf.pem"), std::string::npos) << err;
}

TEST(CliTest, VersionPrintsAndExitsZero) {
    EXPECT_EQ(run({"version"}), 0);
}

TEST(CliTest, PasswordValuesAreWipedFromArgv) {
    Argv a({"sign-string", "--pkcs8-password", "hunter2", "--pkcs8-password=swordfish"});
    scrub_secret_arguments(a.argc(), a.argv());
    EXPECT_EQ(std::string(a.argv()[3]).find("hunter2"), std::string::npos);
    EXPECT_EQ(std::strlen(a.argv()[3]), 0u);
    EXPECT_STREQ(a.argv()[4], "--pkcs8-password=");
}

}  // namespace
}  // namespace rad::cli
