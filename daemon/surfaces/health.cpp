#include "daemon/surfaces/health.hpp"

#include <cstdio>

#include "daemon/policy/health.hpp"

namespace rad::surfaces {

namespace {

// label escapes a Prometheus label value (backslash, quote, newline).
std::string label(const std::string& value) {
    std::string out;
    for (char c : value) {
        if (c == '\\' || c == '"') {
            out.push_back('\\');
            out.push_back(c);
        } else if (c == '\n') {
            out.append("\\n");
        } else {
            out.push_back(c);
        }
    }
    return out;
}

std::string number(double value) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.6g", value);
    return buffer;
}

SurfaceResponse text_response(int status, std::string body, const char* content_type) {
    SurfaceResponse response;
    response.status = status;
    response.set_header("Content-Type", content_type);
    response.set_header("Cache-Control", "no-store");
    response.body = Secret(std::move(body));
    return response;
}

}  // namespace

std::string metrics_text(const policy::AgentSnapshot& snapshot) {
    std::string out;
    auto help = [&](const char* name, const char* type, const char* text) {
        out.append("# HELP ").append(name).append(" ").append(text).append("\n");
        out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
    };
    const policy::AgentHealth health = policy::agent_health(snapshot);
    help("rolesanywhere_agent_ready", "gauge", "1 when every profile serves credentials (/readyz)");
    out.append(std::string("rolesanywhere_agent_ready ") + (health.ready ? "1" : "0") + "\n");
    help("rolesanywhere_agent_healthy", "gauge",
         "1 when every profile serves, its last refresh succeeded and its surfaces work (/healthz)");
    out.append(std::string("rolesanywhere_agent_healthy ") + (health.healthy ? "1" : "0") + "\n");
    help("rolesanywhere_agent_profile_healthy", "gauge",
         "1 when the profile serves, its last refresh succeeded and its surfaces work");
    for (const auto& p : health.profiles) {
        out.append("rolesanywhere_agent_profile_healthy{profile=\"" + label(p.name) + "\"} " +
                   (p.healthy ? "1" : "0") + "\n");
    }
    help("rolesanywhere_agent_credentials_servable", "gauge",
         "1 when the profile holds credentials it may serve");
    for (const auto& p : snapshot.profiles) {
        out.append("rolesanywhere_agent_credentials_servable{profile=\"" + label(p.name) + "\"} " +
                   (p.servable ? "1" : "0") + "\n");
    }
    help("rolesanywhere_agent_credentials_expiry_seconds", "gauge",
         "Seconds until the held credentials expire");
    for (const auto& p : snapshot.profiles) {
        if (p.credentials_seconds_left) {
            out.append("rolesanywhere_agent_credentials_expiry_seconds{profile=\"" + label(p.name) + "\"} " +
                       number(*p.credentials_seconds_left) + "\n");
        }
    }
    help("rolesanywhere_agent_certificate_expiry_seconds", "gauge",
         "Seconds until the profile's certificate expires");
    for (const auto& p : snapshot.profiles) {
        if (p.certificate_seconds_left) {
            out.append("rolesanywhere_agent_certificate_expiry_seconds{profile=\"" + label(p.name) + "\"} " +
                       number(*p.certificate_seconds_left) + "\n");
        }
    }
    help("rolesanywhere_agent_refresh_total", "counter",
         "CreateSession refreshes by outcome (ok, retryable, rejected)");
    for (const auto& p : snapshot.profiles) {
        for (const char* outcome : {"ok", "retryable", "rejected"}) {
            const auto it = p.refreshes.find(outcome);
            out.append("rolesanywhere_agent_refresh_total{profile=\"" + label(p.name) + "\",outcome=\"" +
                       outcome + "\"} " + std::to_string(it == p.refreshes.end() ? 0 : it->second) + "\n");
        }
    }
    help("rolesanywhere_agent_create_session_seconds", "histogram", "Duration of CreateSession attempts");
    for (const auto& p : snapshot.profiles) {
        const auto& h = p.create_session_seconds;
        std::uint64_t cumulative = 0;
        const std::string base = "rolesanywhere_agent_create_session_seconds";
        const std::string profile = "profile=\"" + label(p.name) + "\"";
        for (std::size_t i = 0; i < policy::LatencyHistogram::kBounds.size(); ++i) {
            cumulative += h.buckets()[i];
            out.append(base + "_bucket{" + profile + ",le=\"" + number(policy::LatencyHistogram::kBounds[i]) +
                       "\"} " + std::to_string(cumulative) + "\n");
        }
        out.append(base + "_bucket{" + profile + ",le=\"+Inf\"} " + std::to_string(h.count()) + "\n");
        out.append(base + "_sum{" + profile + "} " + number(h.sum()) + "\n");
        out.append(base + "_count{" + profile + "} " + std::to_string(h.count()) + "\n");
    }
    help("rolesanywhere_agent_surface_up", "gauge",
         "1 while a profile's surface works (credentials file written, token file read, listener open)");
    for (const auto& p : snapshot.profiles) {
        for (const auto& surface : p.surfaces) {
            out.append("rolesanywhere_agent_surface_up{profile=\"" + label(p.name) + "\",surface=\"" +
                       label(surface.surface) + "\"} " + (surface.ok ? "1" : "0") + "\n");
        }
    }
    help("rolesanywhere_agent_surface_failures_total", "counter", "Failures of a profile's surface");
    for (const auto& p : snapshot.profiles) {
        for (const auto& surface : p.surfaces) {
            out.append("rolesanywhere_agent_surface_failures_total{profile=\"" + label(p.name) +
                       "\",surface=\"" + label(surface.surface) + "\"} " + std::to_string(surface.failures) +
                       "\n");
        }
    }
    help("rolesanywhere_agent_requests_total", "counter", "Requests answered, by surface and HTTP status");
    for (const auto& [key, count] : snapshot.requests) {
        out.append("rolesanywhere_agent_requests_total{surface=\"" + label(key.first) + "\",status=\"" +
                   std::to_string(key.second) + "\"} " + std::to_string(count) + "\n");
    }
    return out;
}

SurfaceResponse handle_health(const SurfaceRequest& request, const policy::AgentSnapshot& snapshot) {
    const std::string path = request.target.substr(0, request.target.find('?'));
    if (path != "/healthz" && path != "/readyz" && path != "/livez" && path != "/metrics") {
        return text_response(404, "not found\n", "text/plain");
    }
    if (request.method != "GET" && request.method != "HEAD") {
        SurfaceResponse response = text_response(405, "method not allowed\n", "text/plain");
        response.set_header("Allow", "GET, HEAD");
        return response;
    }
    if (path == "/metrics") {
        return text_response(200, metrics_text(snapshot), "text/plain; version=0.0.4; charset=utf-8");
    }
    if (path == "/livez") {
        return text_response(200, "ok\n", "text/plain");
    }
    const policy::AgentHealth health = policy::agent_health(snapshot);
    std::string problems;
    for (const auto& profile : health.profiles) {
        for (const auto& problem : profile.problems) {
            // /readyz asks only whether every profile serves.
            if (path == "/healthz" || problem.kind == policy::HealthProblem::Kind::nothing_to_serve) {
                problems.append(policy::problem_text(profile.name, problem)).push_back('\n');
            }
        }
    }
    if (problems.empty()) {
        return text_response(200, "ok\n", "text/plain");
    }
    return text_response(503, problems, "text/plain");
}

}  // namespace rad::surfaces
