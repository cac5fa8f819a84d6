// /healthz and /metrics from a snapshot: status codes, the exposition format, and that nothing secret shows.
#include "daemon/surfaces/health.hpp"

#include <gtest/gtest.h>

namespace rad::daemon {
namespace {

SurfaceRequest get(std::string target) {
    SurfaceRequest r;
    r.method = "GET";
    r.target = std::move(target);
    r.headers = {{"Host", "127.0.0.1:9913"}};
    return r;
}

AgentSnapshot snapshot(bool web_ok) {
    AgentSnapshot s;
    ProfileSnapshot web;
    web.name = "web";
    web.state = web_ok ? "fresh" : "failing";
    web.servable = web_ok;
    web.last_error_code = web_ok ? "" : "upstream_rejected";
    web.credentials_seconds_left = 1800;
    web.certificate_seconds_left = 86400.5;
    web.refreshes = {{"ok", 3}, {"rejected", 1}};
    web.create_session_seconds.observe(0.02);
    web.create_session_seconds.observe(0.3);
    web.create_session_seconds.observe(60);
    ProfileSnapshot api;
    api.name = "api";
    api.state = "fresh";
    api.servable = true;
    s.profiles = {web, api};
    s.requests = {{{"imds", 200}, 10}, {{"imds", 401}, 2}, {{"ecs", 503}, 1}};
    return s;
}

TEST(Healthz, OkWhenEveryProfileServes) {
    auto r = handle_health(get("/healthz"), snapshot(true));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body.reveal(), "ok\n");
}

TEST(Healthz, UnavailableListsFailingProfiles) {
    auto r = handle_health(get("/healthz"), snapshot(false));
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.body.reveal(), "web: failing (upstream_rejected)\n");
}

TEST(Healthz, AFailingSurfaceMakesItUnavailableEvenWithCredentials) {
    auto s = snapshot(true);
    s.profiles[1].surfaces = {SurfaceHealth{"credentials_file", false, "internal", 3, "disk full"},
                              SurfaceHealth{"ecs_token", true, "", 0, ""}};
    auto r = handle_health(get("/healthz"), s);
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.body.reveal(), "api: credentials_file failing (internal)\n");
    const std::string metrics = metrics_text(s);
    EXPECT_NE(
        metrics.find("rolesanywhere_agent_surface_up{profile=\"api\",surface=\"credentials_file\"} 0\n"),
        std::string::npos);
    EXPECT_NE(metrics.find("rolesanywhere_agent_surface_up{profile=\"api\",surface=\"ecs_token\"} 1\n"),
              std::string::npos);
    EXPECT_NE(
        metrics.find(
            "rolesanywhere_agent_surface_failures_total{profile=\"api\",surface=\"credentials_file\"} 3\n"),
        std::string::npos);
    s.profiles[1].surfaces[0].ok = true;
    EXPECT_EQ(handle_health(get("/healthz"), s).status, 200);
}

TEST(Healthz, OtherPathsAndMethods) {
    EXPECT_EQ(handle_health(get("/"), snapshot(true)).status, 404);
    auto post = get("/metrics");
    post.method = "POST";
    auto r = handle_health(post, snapshot(true));
    EXPECT_EQ(r.status, 405);
    ASSERT_NE(r.header("Allow"), nullptr);
}

TEST(Metrics, PrometheusText) {
    auto r = handle_health(get("/metrics"), snapshot(false));
    ASSERT_EQ(r.status, 200);
    ASSERT_NE(r.header("Content-Type"), nullptr);
    EXPECT_EQ(*r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    const std::string text(r.body.reveal());
    for (const char* line : {
             "rolesanywhere_agent_credentials_servable{profile=\"web\"} 0\n",
             "rolesanywhere_agent_credentials_servable{profile=\"api\"} 1\n",
             "rolesanywhere_agent_credentials_expiry_seconds{profile=\"web\"} 1800\n",
             "rolesanywhere_agent_certificate_expiry_seconds{profile=\"web\"} 86400.5\n",
             "rolesanywhere_agent_refresh_total{profile=\"web\",outcome=\"ok\"} 3\n",
             "rolesanywhere_agent_refresh_total{profile=\"web\",outcome=\"retryable\"} 0\n",
             "rolesanywhere_agent_refresh_total{profile=\"web\",outcome=\"rejected\"} 1\n",
             "rolesanywhere_agent_create_session_seconds_bucket{profile=\"web\",le=\"0.025\"} 1\n",
             "rolesanywhere_agent_create_session_seconds_bucket{profile=\"web\",le=\"0.5\"} 2\n",
             "rolesanywhere_agent_create_session_seconds_bucket{profile=\"web\",le=\"10\"} 2\n",
             "rolesanywhere_agent_create_session_seconds_bucket{profile=\"web\",le=\"+Inf\"} 3\n",
             "rolesanywhere_agent_create_session_seconds_count{profile=\"web\"} 3\n",
             "rolesanywhere_agent_requests_total{surface=\"imds\",status=\"401\"} 2\n",
             "rolesanywhere_agent_requests_total{surface=\"ecs\",status=\"503\"} 1\n",
             "# TYPE rolesanywhere_agent_create_session_seconds histogram\n",
         }) {
        EXPECT_NE(text.find(line), std::string::npos) << line << "\n---\n" << text;
    }
    // No credentials-expiry line for a profile that holds none.
    EXPECT_EQ(text.find("rolesanywhere_agent_credentials_expiry_seconds{profile=\"api\"}"),
              std::string::npos);
}

TEST(Metrics, LabelValuesAreEscaped) {
    AgentSnapshot s;
    ProfileSnapshot odd;
    odd.name = "a\"b\\c";
    s.profiles = {odd};
    EXPECT_NE(metrics_text(s).find("profile=\"a\\\"b\\\\c\""), std::string::npos);
}

}  // namespace
}  // namespace rad::daemon
