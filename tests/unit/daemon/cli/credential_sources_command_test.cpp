// The unit's pre-start check (daemon/cli/credential_sources_command.hpp): the unit's bus path, PID 1's answer
// as busctl prints it, and the key-file rules applied to LoadCredential= sources.

#include "daemon/cli/credential_sources_command.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace rad::cli {
namespace {

TEST(CheckCredentialSources, UnitObjectPathIsEscapedAsSystemdDoes) {
    EXPECT_EQ(bus_object_path("rolesanywhere-agent.service"),
              "/org/freedesktop/systemd1/unit/rolesanywhere_2dagent_2eservice");
    EXPECT_EQ(bus_object_path("a@b_c.service"), "/org/freedesktop/systemd1/unit/a_40b_5fc_2eservice");
    EXPECT_EQ(bus_object_path(""), "/org/freedesktop/systemd1/unit/_");
}

TEST(CheckCredentialSources, ReadsBusctlsJson) {
    auto pairs = parse_load_credentials(
        R"j({"type":"a(ss)","data":[["agent.pem","/etc/rolesanywhere-agent/agent.pem"],["agent.key","/etc/k"]]})j");
    ASSERT_TRUE(pairs) << pairs.error().message;
    ASSERT_EQ(pairs->size(), 2u);
    EXPECT_EQ((*pairs)[1], std::make_pair(std::string("agent.key"), std::string("/etc/k")));
    auto none = parse_load_credentials(R"j({"type":"a(ss)","data":[]})j");
    ASSERT_TRUE(none);
    EXPECT_TRUE(none->empty());
    for (const char* bad :
         {"", "[]", R"j({"type":"s","data":"x"})j", R"j({"type":"a(ss)","data":[["only"]]})j"}) {
        EXPECT_FALSE(parse_load_credentials(bad)) << bad;
    }
}

class SourceFiles : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() / ("rad-check-sources-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
        ::chmod(dir_.c_str(), 0755);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string file(const std::string& name, mode_t mode) {
        const auto path = dir_ / name;
        std::ofstream(path) << "secret";
        ::chmod(path.c_str(), mode);
        return path.string();
    }
    std::filesystem::path dir_;
};

TEST_F(SourceFiles, TheAgentsKeyFileRulesApplyToTheSources) {
    const struct {
        mode_t mode;
        bool refused, refused_shared;
    } cases[] = {{0600, false, false}, {0400, false, false}, {0640, true, false},
                 {0644, true, true},   {0604, true, true},   {0660, true, true}};
    for (const auto& c : cases) {
        const auto path = file("key", c.mode);
        const auto checked = check_source("agent.key", path);
        EXPECT_EQ(checked.name, "agent.key");
        EXPECT_EQ(checked.source, path);
        EXPECT_EQ(!checked.refusal.empty(), c.refused) << std::oct << c.mode << " " << checked.refusal;
        EXPECT_EQ(!checked.shared_refusal.empty(), c.refused_shared) << std::oct << c.mode;
        if (c.refused) {
            EXPECT_EQ(checked.refusal.rfind(path + ": permissions", 0), 0u) << checked.refusal;
        }
    }
}

TEST_F(SourceFiles, ALinkIsJudgedByWhatItLeadsToAndWhatIsNoPlainFileIsLeftToSystemd) {
    // A link is followed (as the agent follows one) and the file it leads to is what is judged.
    const auto target = file("target", 0600);
    const auto link = (dir_ / "link").string();
    ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
    EXPECT_TRUE(check_source("k", link).refusal.empty()) << check_source("k", link).refusal;
    ::chmod(target.c_str(), 0644);
    EXPECT_NE(check_source("k", link).refusal.find("permissions"), std::string::npos);
    EXPECT_TRUE(check_source("k", dir_.string()).refusal.empty());  // a directory of credentials
    EXPECT_TRUE(check_source("k", "agent.key").refusal.empty());    // looked up in the credential stores
    EXPECT_TRUE(check_source("k", (dir_ / "absent").string()).refusal.empty());
}

}  // namespace
}  // namespace rad::cli
