// status_json as a pure function of a snapshot.
#include "daemon/policy/snapshot.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace rad::policy {
namespace {

ProfileSnapshot fresh_profile() {
    ProfileSnapshot p;
    p.name = "web";
    p.state = "fresh";
    p.servable = true;
    p.access_key_id = "…WXYZ";
    p.expiration = "2026-12-01T12:00:00Z";
    p.credentials_seconds_left = 3599.7;
    p.next_refresh_in_seconds = 1800;
    p.certificate = CertificateSnapshot{"CN=web", "42", "2026-12-10T00:00:00Z", 9};
    p.served = {"imds http://127.0.0.1:9911/"};
    return p;
}

TEST(StatusJson, AFreshProfile) {
    AgentSnapshot snapshot;
    snapshot.version = "1.2.3";
    snapshot.config = "/etc/rad/config.toml";
    snapshot.profiles = {fresh_profile()};
    const auto doc = nlohmann::json::parse(status_json(snapshot));
    EXPECT_EQ(doc["version"], "1.2.3");
    EXPECT_EQ(doc["config"], "/etc/rad/config.toml");
    const auto& p = doc["profiles"][0];
    EXPECT_EQ(p["name"], "web");
    EXPECT_EQ(p["access_key_id"], "…WXYZ");
    EXPECT_EQ(p["expires_in_seconds"], 3599);
    EXPECT_EQ(p["next_refresh_in_seconds"], 1800);
    EXPECT_FALSE(p.contains("refreshing"));
    EXPECT_FALSE(p.contains("last_error"));
    EXPECT_FALSE(p.contains("surface_errors"));
    EXPECT_EQ(p["certificate"]["days_left"], 9);
    EXPECT_EQ(p["certificate"]["expiring_soon"], true);
    EXPECT_EQ(p["certificate"]["not_after"], "2026-12-10T00:00:00Z");
    EXPECT_FALSE(p["certificate"].contains("not_before"));  // not known: left out
    EXPECT_EQ(p["surfaces"][0], "imds http://127.0.0.1:9911/");
}

TEST(StatusJson, TheCertificatesValidityPeriod) {
    ProfileSnapshot p = fresh_profile();
    p.certificate->not_before = "2026-11-01T00:00:00Z";
    const auto doc = nlohmann::json::parse(profile_status_json(p));
    EXPECT_EQ(doc["certificate"]["not_before"], "2026-11-01T00:00:00Z");
    EXPECT_EQ(doc["certificate"]["not_after"], "2026-12-10T00:00:00Z");
}

TEST(StatusJson, FailuresAndARefreshInFlight) {
    ProfileSnapshot p = fresh_profile();
    p.state = "stale";
    p.refreshing = true;
    p.last_error_code = "upstream_throttled";
    p.last_error_message = "HTTP 429";
    p.consecutive_failures = 3;
    p.surfaces = {
        SurfaceHealth{"credentials_file", false, "internal", 2, "/root/.aws/credentials: disk full"},
        SurfaceHealth{"ecs_token", true, "", 0, ""}};
    const auto doc = nlohmann::json::parse(profile_status_json(p));
    EXPECT_EQ(doc["refreshing"], true);
    EXPECT_FALSE(doc.contains("next_refresh_in_seconds"));
    EXPECT_EQ(doc["last_error"]["code"], "upstream_throttled");
    EXPECT_EQ(doc["consecutive_failures"], 3);
    ASSERT_EQ(doc["surface_errors"].size(), 1u);
    EXPECT_EQ(doc["surface_errors"][0]["surface"], "credentials_file");
    EXPECT_EQ(doc["surface_errors"][0]["failures"], 2);
}

}  // namespace
}  // namespace rad::policy
