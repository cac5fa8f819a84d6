// The agent that the continuous `update` runs, as built from its flags: one profile, the credentials file as
// its only surface.
#include "daemon/cli/agent_commands.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/time_format.hpp"
#include "daemon/agent/agent.hpp"
#include "daemon/control/control_protocol.hpp"

namespace rad::cli {
namespace {

UpdateOptions update_flags() {
    UpdateOptions options;
    options.profile = "web";
    config::ProfileConfig& c = options.credentials.profile;
    c.identity.certificate = "/etc/pki/host.pem";
    c.identity.private_key = "/etc/pki/host.key";
    c.identity.passphrase_file = "/etc/pki/host.pass";
    c.trust_anchor_arn = "arn:aws:rolesanywhere:eu-west-1:111122223333:trust-anchor/ta";
    c.profile_arn = "arn:aws:rolesanywhere:eu-west-1:111122223333:profile/p";
    c.role_arn = "arn:aws:iam::111122223333:role/r";
    c.endpoint = "https://127.0.0.1:8443";
    c.ca_bundle = "/etc/pki/ca.pem";
    c.session_duration = 900;
    c.role_session_name = "host-1";
    c.connect_timeout_seconds = 2;
    c.timeout_seconds = 7.5;
    return options;
}

TEST(UpdateAgent, OneProfileWithOnlyTheCredentialsFileSurface) {
    auto config = update_agent_config(update_flags());
    ASSERT_TRUE(config) << config.error().message;
    EXPECT_TRUE(config->agent.socket_path.empty());
    EXPECT_FALSE(config->agent.ecs_listen);
    EXPECT_FALSE(config->agent.health_listen);
    EXPECT_TRUE(config->path.empty());
    ASSERT_EQ(config->profiles.size(), 1u);
    const config::ProfileConfig& p = config->profiles[0];
    EXPECT_EQ(p.name, "web");
    EXPECT_EQ(p.credentials_file_profile, "web");
    EXPECT_TRUE(p.credentials_file.empty());  // the default file, as `update --once` writes
    EXPECT_TRUE(p.imds_listen.empty());
    EXPECT_TRUE(p.ecs_path.empty());
    EXPECT_EQ(p.identity.certificate, "/etc/pki/host.pem");
    EXPECT_EQ(p.identity.private_key, "/etc/pki/host.key");
    EXPECT_EQ(p.identity.passphrase_file, "/etc/pki/host.pass");
    EXPECT_EQ(p.trust_anchor_arn, update_flags().credentials.profile.trust_anchor_arn);
    EXPECT_EQ(p.endpoint, "https://127.0.0.1:8443");
    EXPECT_EQ(p.ca_bundle, "/etc/pki/ca.pem");
    EXPECT_EQ(p.session_duration, 900);
    EXPECT_EQ(p.role_session_name, "host-1");
    EXPECT_EQ(p.connect_timeout_seconds, 2);
    EXPECT_EQ(p.timeout_seconds, 7.5);
}

TEST(UpdateAgent, AProfileIsRequired) {
    auto no_section = update_flags();
    no_section.profile.clear();
    auto config = update_agent_config(no_section);
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error().code, Errc::usage);
}

// OneAnswer is an agent socket that answers one connection with `reply` (a whole reply line) and closes.
class OneAnswer {
public:
    OneAnswer(const std::filesystem::path& path, std::string reply) : path_(path), reply_(std::move(reply)) {
        listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
        EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
        EXPECT_EQ(::listen(listener_, 1), 0);
        thread_ = std::thread([this] {
            const int peer = ::accept(listener_, nullptr, nullptr);
            char c = 0;
            while (::read(peer, &c, 1) == 1 && c != '\n') {
            }
            EXPECT_EQ(::write(peer, reply_.data(), reply_.size()), static_cast<ssize_t>(reply_.size()));
            ::close(peer);
        });
    }
    ~OneAnswer() {
        thread_.join();
        ::close(listener_);
        std::filesystem::remove(path_);
    }

private:
    std::filesystem::path path_;
    std::string reply_;
    int listener_ = -1;
    std::thread thread_;
};

// status_output runs `status` against an agent whose status holds one profile with `certificate`.
std::string status_output(const nlohmann::json& certificate) {
    const auto socket = std::filesystem::temp_directory_path() / ("rad-status-" + std::to_string(::getpid()));
    nlohmann::json status = {{"version", "1"}, {"config", ""}};
    status["profiles"] = nlohmann::json::array({{{"name", "web"},
                                                 {"state", "fresh"},
                                                 {"next_refresh_in_seconds", 60},
                                                 {"certificate", certificate}}});
    OneAnswer agent(socket, std::string(control::format_ok_reply(status.dump()).reveal()));
    StatusOptions options;
    options.socket_path = socket.string();
    char* text = nullptr;
    std::size_t size = 0;
    std::FILE* out = ::open_memstream(&text, &size);
    const auto result = run_status(options, out);
    std::fclose(out);
    std::string output(text, size);
    std::free(text);
    EXPECT_TRUE(result) << result.error().message;
    return output;
}

// The certificate line of `status` says what the certificate's dates mean now: how long it has left (and a
// warning under 14 days), or that it has expired (since when), or that it is not valid yet (until when).
TEST(Status, SaysWhetherTheCertificateIsValidExpiredOrNotYetValid) {
    using namespace std::chrono;
    const auto now = system_clock::now();
    const auto day = hours(24);
    const auto at = [&](system_clock::duration offset) { return format_iso8601(now + offset); };
    const struct {
        const char* what;
        system_clock::duration not_before, not_after;
        long long days_left;
        std::string expected;
    } rows[] = {
        {"valid", -day, 200 * day + hours(1), 200, "expires " + at(200 * day + hours(1)) + " (200 days)\n"},
        {"expiring", -day, 9 * day + hours(1), 9,
         "expires " + at(9 * day + hours(1)) + " (9 days)  WARNING: renew it soon\n"},
        {"expired an hour ago", -day, -hours(1), 0, "EXPIRED at " + at(-hours(1)) + ": renew it\n"},
        {"expired 3 days ago", -10 * day, -3 * day - hours(1), -3,
         "EXPIRED at " + at(-3 * day - hours(1)) + ": renew it\n"},
        {"not yet valid", 2 * day, 300 * day, 300,
         "NOT YET VALID until " + at(2 * day) + ": check the clock, or the certificate's issuer\n"},
    };
    for (const auto& row : rows) {
        const nlohmann::json certificate = {{"subject", "CN=web"},
                                            {"serial", "42"},
                                            {"not_before", at(row.not_before)},
                                            {"not_after", at(row.not_after)},
                                            {"days_left", row.days_left},
                                            {"expiring_soon", row.days_left < 14}};
        const std::string output = status_output(certificate);
        EXPECT_NE(output.find("  certificate   CN=web, serial 42, " + row.expected), std::string::npos)
            << row.what << ":\n"
            << output;
    }
}

}  // namespace
}  // namespace rad::cli
