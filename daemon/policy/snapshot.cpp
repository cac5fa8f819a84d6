#include "daemon/policy/snapshot.hpp"

#include <nlohmann/json.hpp>

#include "daemon/policy/health.hpp"

namespace rad::policy {

void LatencyHistogram::observe(double seconds) {
    for (std::size_t i = 0; i < kBounds.size(); ++i) {
        if (seconds <= kBounds[i]) {
            ++buckets_[i];
            break;
        }
    }
    ++count_;
    sum_ += seconds;
}

namespace {

nlohmann::ordered_json profile_object(const ProfileSnapshot& profile) {
    nlohmann::ordered_json p;
    p["name"] = profile.name;
    p["state"] = profile.state;
    p["servable"] = profile.servable;
    if (!profile.access_key_id.empty()) {
        p["access_key_id"] = profile.access_key_id;
        p["expiration"] = profile.expiration;
        p["expires_in_seconds"] = static_cast<long long>(profile.credentials_seconds_left.value_or(0));
    }
    if (profile.refreshing) {
        p["refreshing"] = true;
    } else {
        p["next_refresh_in_seconds"] = profile.next_refresh_in_seconds;
    }
    if (!profile.last_error_code.empty()) {
        p["last_error"] = {{"code", profile.last_error_code}, {"message", profile.last_error_message}};
        p["consecutive_failures"] = profile.consecutive_failures;
    }
    if (profile.certificate) {
        const auto& c = *profile.certificate;
        p["certificate"] = {{"subject", c.subject},
                            {"serial", c.serial},
                            {"not_after", c.not_after},
                            {"days_left", c.days_left},
                            {"expiring_soon", c.days_left < kCertificateWarningDays}};
        if (!c.not_before.empty()) {
            p["certificate"]["not_before"] = c.not_before;
        }
    }
    p["surfaces"] = profile.served;
    nlohmann::ordered_json failing = nlohmann::json::array();
    for (const auto& surface : profile.surfaces) {
        if (!surface.ok) {
            failing.push_back({{"surface", surface.surface},
                               {"code", surface.error_code},
                               {"message", surface.error_message},
                               {"failures", surface.failures}});
        }
    }
    if (!failing.empty()) {
        p["surface_errors"] = std::move(failing);
    }
    return p;
}

}  // namespace

std::string profile_status_json(const ProfileSnapshot& profile) {
    return profile_object(profile).dump();
}

std::string status_json(const AgentSnapshot& snapshot) {
    nlohmann::ordered_json doc;
    doc["version"] = snapshot.version;
    doc["config"] = snapshot.config;
    // The health as /readyz, /healthz, STATUS= and the metrics say it (health.hpp).
    const AgentHealth health = agent_health(snapshot);
    auto problems = nlohmann::ordered_json::array();
    for (const auto& profile : health.profiles) {
        for (const auto& problem : profile.problems) {
            problems.push_back(problem_text(profile.name, problem));
        }
    }
    doc["health"] = {{"ready", health.ready}, {"healthy", health.healthy}, {"problems", problems}};
    auto& list = doc["profiles"] = nlohmann::json::array();
    for (const auto& profile : snapshot.profiles) {
        list.push_back(profile_object(profile));
    }
    return doc.dump();
}

}  // namespace rad::policy
