// /livez, /readyz, /healthz and /metrics from a snapshot: status codes, the exposition format, that every
// place that reports health agrees with the one definition (policy/health.hpp), and that nothing secret
// shows.
#include "daemon/surfaces/health.hpp"

#include <gtest/gtest.h>

#include "daemon/policy/health.hpp"

namespace rad::surfaces {
namespace {

SurfaceRequest get(std::string target) {
    SurfaceRequest r;
    r.method = "GET";
    r.target = std::move(target);
    r.headers = {{"Host", "127.0.0.1:9913"}};
    return r;
}

policy::AgentSnapshot snapshot(bool web_ok) {
    policy::AgentSnapshot s;
    policy::ProfileSnapshot web;
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
    policy::ProfileSnapshot api;
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
    EXPECT_EQ(r.body.reveal(), "web: nothing to serve (upstream_rejected)\n");
}

// Every state a profile can be in, and what each surface of health says of an agent with that profile and a
// healthy one: /livez, /readyz, /healthz, the metrics and STATUS= agree, because all read agent_health().
TEST(Health, EverySurfaceAgreesOnEveryState) {
    struct Row {
        const char* what;
        bool servable;
        const char* last_error;
        bool surface_ok;
        bool ready, healthy;
        const char* status;  // STATUS= line
    };
    const Row rows[] = {
        {"fresh", true, "", true, true, true, "2/2 profiles serving credentials"},
        {"starting: the first CreateSession in flight", false, "", true, false, false,
         "1/2 profiles serving credentials; starting: web"},
        {"stale: last good served after a failure", true, "upstream_unreachable", true, true, false,
         "2/2 profiles serving credentials; failing: web: last refresh failed (upstream_unreachable)"},
        {"failing: nothing to serve", false, "certificate_expired", true, false, false,
         "1/2 profiles serving credentials; failing: web: nothing to serve (certificate_expired)"},
        {"a surface failing", true, "", false, true, false,
         "2/2 profiles serving credentials; failing: web: credentials_file failing (internal)"},
    };
    for (const auto& row : rows) {
        policy::AgentSnapshot s = snapshot(true);
        s.profiles[0].servable = row.servable;
        s.profiles[0].last_error_code = row.last_error;
        s.profiles[0].surfaces = {policy::SurfaceHealth{"credentials_file", row.surface_ok,
                                                        row.surface_ok ? "" : "internal",
                                                        row.surface_ok ? 0u : 1u, ""}};
        const policy::AgentHealth health = policy::agent_health(s);
        EXPECT_EQ(health.ready, row.ready) << row.what;
        EXPECT_EQ(health.healthy, row.healthy) << row.what;
        EXPECT_EQ(policy::systemd_status(health), row.status) << row.what;
        EXPECT_EQ(handle_health(get("/livez"), s).status, 200) << row.what;
        EXPECT_EQ(handle_health(get("/readyz"), s).status, row.ready ? 200 : 503) << row.what;
        const auto healthz = handle_health(get("/healthz"), s);
        EXPECT_EQ(healthz.status, row.healthy ? 200 : 503) << row.what;
        if (!row.healthy && std::string(row.status).find("failing") != std::string::npos) {
            // /healthz names each problem as STATUS= does.
            const std::string status = row.status;
            const std::string body(healthz.body.reveal());
            EXPECT_NE(status.find(body.substr(0, body.size() - 1)), std::string::npos)
                << row.what << ": " << body;
        }
        const std::string metrics = metrics_text(s);
        EXPECT_NE(metrics.find(std::string("rolesanywhere_agent_ready ") + (row.ready ? "1" : "0") + "\n"),
                  std::string::npos)
            << row.what;
        EXPECT_NE(
            metrics.find(std::string("rolesanywhere_agent_healthy ") + (row.healthy ? "1" : "0") + "\n"),
            std::string::npos)
            << row.what;
        EXPECT_NE(metrics.find(std::string("rolesanywhere_agent_profile_healthy{profile=\"web\"} ") +
                               (row.healthy ? "1" : "0") + "\n"),
                  std::string::npos)
            << row.what;
    }
}

TEST(Healthz, AFailingSurfaceMakesItUnavailableEvenWithCredentials) {
    auto s = snapshot(true);
    s.profiles[1].surfaces = {policy::SurfaceHealth{"credentials_file", false, "internal", 3, "disk full"},
                              policy::SurfaceHealth{"ecs_token", true, "", 0, ""}};
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
    policy::AgentSnapshot s;
    policy::ProfileSnapshot odd;
    odd.name = "a\"b\\c";
    s.profiles = {odd};
    EXPECT_NE(metrics_text(s).find("profile=\"a\\\"b\\\\c\""), std::string::npos);
}

}  // namespace
}  // namespace rad::surfaces
