// plan_reload as a table: which profiles a reload starts, stops, refreshes, or only re-serves.
#include "daemon/policy/reload_plan.hpp"

#include <gtest/gtest.h>

#include <functional>

namespace rad::policy {
namespace {

config::ProfileConfig profile(const std::string& name) {
    config::ProfileConfig p;
    p.name = name;
    p.identity.certificate = "/etc/rad/" + name + ".pem";
    p.identity.private_key = "/etc/rad/" + name + ".key";
    p.trust_anchor_arn = "arn:aws:rolesanywhere:eu-west-1:111122223333:trust-anchor/a";
    p.profile_arn = "arn:aws:rolesanywhere:eu-west-1:111122223333:profile/p";
    p.role_arn = "arn:aws:iam::111122223333:role/" + name;
    p.imds_listen.push_back(config::ListenAddress{"127.0.0.1", 9911});
    p.ecs_path = "/credentials/" + name;
    p.ecs_token_file = "/run/rad/" + name + ".token";
    return p;
}

config::AgentConfig config_of(std::vector<config::ProfileConfig> profiles) {
    config::AgentConfig c;
    c.profiles = std::move(profiles);
    return c;
}

using Names = std::vector<std::string>;

TEST(PlanReload, NothingChangedRefreshesNothing) {
    auto old = config_of({profile("web"), profile("api")});
    auto next = old;
    next.profiles[0].source.lines["role_arn"] = 12;  // moved lines, same settings
    const auto plan = plan_reload(old, next);
    EXPECT_EQ(plan.unchanged, (Names{"web", "api"}));
    EXPECT_TRUE(plan.added.empty() && plan.removed.empty() && plan.credentials_changed.empty() &&
                plan.surfaces_changed.empty() && plan.restart_needed.empty());
}

TEST(PlanReload, AddedAndRemoved) {
    const auto plan =
        plan_reload(config_of({profile("web"), profile("api")}), config_of({profile("db"), profile("web")}));
    EXPECT_EQ(plan.added, Names{"db"});
    EXPECT_EQ(plan.removed, Names{"api"});
    EXPECT_EQ(plan.unchanged, Names{"web"});
}

// Every setting that changes what CreateSession returns, or with which identity, makes the profile refresh.
TEST(PlanReload, EachCredentialsSettingMeansARefresh) {
    const std::pair<const char*, std::function<void(config::ProfileConfig&)>> rows[] = {
        {"certificate", [](auto& p) { p.identity.certificate = "/etc/rad/new.pem"; }},
        {"private_key", [](auto& p) { p.identity.private_key = "/etc/rad/new.key"; }},
        {"intermediates", [](auto& p) { p.identity.intermediates = "/etc/rad/chain.pem"; }},
        {"passphrase_file", [](auto& p) { p.identity.passphrase_file = "/etc/rad/pass"; }},
        {"passphrase",
         [](auto& p) { p.identity.passphrase = std::make_shared<const Secret>(std::string_view("x")); }},
        {"allow_insecure_key_permissions", [](auto& p) { p.identity.allow_insecure_key_permissions = true; }},
        {"pkcs11_lib", [](auto& p) { p.identity.pkcs11_lib = "/usr/lib/softhsm/libsofthsm2.so"; }},
        {"pin_file", [](auto& p) { p.identity.pin_file = "/etc/rad/pin"; }},
        {"reuse_pin", [](auto& p) { p.identity.reuse_pin = true; }},
        {"tpm_tcti", [](auto& p) { p.identity.tpm_tcti = "swtpm:port=2321"; }},
        {"tpm_key_password_file", [](auto& p) { p.identity.tpm_key_password_file = "/etc/rad/tpm"; }},
        {"tpm_parent_password_file",
         [](auto& p) { p.identity.tpm_parent_password_file = "/etc/rad/parent"; }},
        {"tpm_key_password",
         [](auto& p) {
             p.identity.tpm_key_password = std::make_shared<const Secret>(std::string_view("x"));
         }},
        {"trust_anchor_arn", [](auto& p) { p.trust_anchor_arn += "2"; }},
        {"profile_arn", [](auto& p) { p.profile_arn += "2"; }},
        {"role_arn", [](auto& p) { p.role_arn += "2"; }},
        {"region", [](auto& p) { p.region = "eu-west-1"; }},
        {"endpoint", [](auto& p) { p.endpoint = "https://example.test"; }},
        {"use_fips_endpoint", [](auto& p) { p.use_fips_endpoint = true; }},
        {"ca_bundle", [](auto& p) { p.ca_bundle = "/etc/rad/ca.pem"; }},
        {"no_verify_ssl", [](auto& p) { p.no_verify_ssl = true; }},
        {"session_duration", [](auto& p) { p.session_duration = 900; }},
        {"role_session_name", [](auto& p) { p.role_session_name = "host-1"; }},
    };
    for (const auto& [what, change] : rows) {
        auto next = config_of({profile("web")});
        change(next.profiles[0]);
        const auto plan = plan_reload(config_of({profile("web")}), next);
        EXPECT_EQ(plan.credentials_changed, Names{"web"}) << what;
        EXPECT_TRUE(plan.surfaces_changed.empty() && plan.unchanged.empty()) << what;
    }
}

// How a profile is served changes without a CreateSession.
TEST(PlanReload, EachSurfaceSettingIsAppliedWithoutARefresh) {
    const struct {
        const char* what;
        std::function<void(config::ProfileConfig&)> change;
        bool listeners;
    } rows[] = {
        {"imds_listen port", [](auto& p) { p.imds_listen[0].port = 9921; }, true},
        {"imds_listen added",
         [](auto& p) {
             p.imds_listen.push_back(config::ListenAddress{"::1", 9911});
         },
         true},
        {"imds_listen removed", [](auto& p) { p.imds_listen.clear(); }, true},
        {"ecs_path", [](auto& p) { p.ecs_path = "/credentials/other"; }, false},
        {"ecs_token_file", [](auto& p) { p.ecs_token_file = "/run/rad/other.token"; }, false},
        {"credentials_file_profile", [](auto& p) { p.credentials_file_profile = "web"; }, false},
        {"credentials_file", [](auto& p) { p.credentials_file = "/var/lib/app/credentials"; }, false},
    };
    for (const auto& row : rows) {
        auto next = config_of({profile("web")});
        row.change(next.profiles[0]);
        const auto plan = plan_reload(config_of({profile("web")}), next);
        EXPECT_TRUE(plan.credentials_changed.empty()) << row.what;
        EXPECT_EQ(plan.surfaces_changed, Names{"web"}) << row.what;
        EXPECT_EQ(plan.listeners_changed, row.listeners ? Names{"web"} : Names{}) << row.what;
    }
}

TEST(PlanReload, AgentWideListenersNeedARestart) {
    auto old = config_of({profile("web")});
    auto next = old;
    next.agent.socket_path = "/run/other.sock";
    next.agent.ecs_listen = config::ListenAddress{"127.0.0.1", 9912};
    next.agent.health_listen = config::ListenAddress{"127.0.0.1", 9913};
    EXPECT_EQ(plan_reload(old, next).restart_needed, (Names{"socket_path", "ecs_listen", "health_listen"}));
    next = old;
    next.agent.log_level = config::LogLevel::debug;
    next.agent.allowed_uids = {1000};
    const auto plan = plan_reload(old, next);
    EXPECT_TRUE(plan.restart_needed.empty());
    EXPECT_EQ(plan.unchanged, Names{"web"});
}

// Each agent-wide setting, changed alone: applied at once, or kept until the next start. hop_limit and
// max_connections are limits of the running HTTP servers, applied at once (they were once changed by no
// reload at all while the documentation said they applied at once).
TEST(PlanReload, EachAgentWideSettingIsAppliedAtOnceOrAtTheNextStart) {
    const struct {
        const char* key;
        std::function<void(config::AgentSettings&)> change;
        bool at_once;
    } rows[] = {
        {"log_level", [](auto& a) { a.log_level = config::LogLevel::debug; }, true},
        {"log_format", [](auto& a) { a.log_format = config::LogFormat::json; }, false},
        {"socket_path", [](auto& a) { a.socket_path = "/run/other.sock"; }, false},
        {"socket_mode", [](auto& a) { a.socket_mode = 0600; }, false},
        {"socket_group", [](auto& a) { a.socket_group = "aws"; }, false},
        {"allowed_uids", [](auto& a) { a.allowed_uids = {1000}; }, true},
        {"allowed_gids", [](auto& a) { a.allowed_gids = {1000}; }, true},
        {"ecs_listen",
         [](auto& a) {
             a.ecs_listen = config::ListenAddress{"127.0.0.1", 9912};
         },
         false},
        {"health_listen",
         [](auto& a) {
             a.health_listen = config::ListenAddress{"127.0.0.1", 9913};
         },
         false},
        {"allow_imdsv1", [](auto& a) { a.allow_imdsv1 = true; }, true},
        {"hop_limit", [](auto& a) { a.hop_limit = 2; }, true},
        {"max_connections", [](auto& a) { a.max_connections = 64; }, true},
        {"refresh_window", [](auto& a) { a.refresh_window_max = 0.7; }, true},
        {"retry_cap_seconds", [](auto& a) { a.retry_cap_seconds = 60; }, true},
        {"startup_jitter_seconds", [](auto& a) { a.startup_jitter_seconds = 600; }, false},
    };
    for (const auto& row : rows) {
        const auto old = config_of({profile("web")});
        auto next = old;
        row.change(next.agent);
        const auto plan = plan_reload(old, next);
        EXPECT_EQ(plan.applied_at_once, row.at_once ? Names{row.key} : Names{}) << row.key;
        EXPECT_EQ(plan.restart_needed, row.at_once ? Names{} : Names{row.key}) << row.key;
        EXPECT_EQ(plan.unchanged, Names{"web"}) << row.key;
        // What the running agent applies: the new value, or the one it started with.
        auto expected = old;
        expected.agent = row.at_once ? next.agent : old.agent;
        auto in_effect = old;
        in_effect.agent = settings_in_effect(old.agent, next.agent);
        const auto difference = plan_reload(expected, in_effect);
        EXPECT_TRUE(difference.applied_at_once.empty() && difference.restart_needed.empty()) << row.key;
    }
}

TEST(PlanReload, SettingsInEffectKeepWhatNeedsARestart) {
    config::AgentSettings running;
    config::AgentSettings next;
    next.socket_path = "/run/other.sock";
    next.socket_mode = 0600;
    next.ecs_listen = config::ListenAddress{"127.0.0.1", 9912};
    next.log_format = config::LogFormat::json;
    next.startup_jitter_seconds = 60;
    next.hop_limit = 3;
    next.max_connections = 10;
    next.log_level = config::LogLevel::error;
    const auto in_effect = settings_in_effect(running, next);
    EXPECT_EQ(in_effect.socket_path, running.socket_path);
    EXPECT_EQ(in_effect.socket_mode, running.socket_mode);
    EXPECT_FALSE(in_effect.ecs_listen);
    EXPECT_EQ(in_effect.log_format, running.log_format);
    EXPECT_EQ(in_effect.startup_jitter_seconds, running.startup_jitter_seconds);
    EXPECT_EQ(in_effect.hop_limit, 3);
    EXPECT_EQ(in_effect.max_connections, 10);
    EXPECT_EQ(in_effect.log_level, config::LogLevel::error);
}

}  // namespace
}  // namespace rad::policy
