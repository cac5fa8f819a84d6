#pragma once
// AgentSnapshot is what the agent holds at one instant, as plain values: everything `status`, /healthz and
// /metrics report, and nothing secret (no key, token or full access key id). The event loop takes it; the
// functions that render it (status_json here, surfaces::handle_health and surfaces::metrics_text in
// surfaces/health.hpp) are pure.

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace rad::policy {

// LatencyHistogram counts CreateSession durations into Prometheus-style cumulative buckets (seconds).
class LatencyHistogram {
public:
    static constexpr std::array<double, 9> kBounds{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    void observe(double seconds);
    const std::array<std::uint64_t, kBounds.size()>& buckets() const noexcept {
        return buckets_;
    }  // not cumulative
    std::uint64_t count() const noexcept { return count_; }
    double sum() const noexcept { return sum_; }

private:
    std::array<std::uint64_t, kBounds.size()> buckets_{};
    std::uint64_t count_ = 0;
    double sum_ = 0;
};

// SurfaceHealth is how one way of serving a profile fares that can fail on its own: the credentials file
// (written), its ECS token file, an IMDS listener (opened at a reload).
struct SurfaceHealth {
    std::string surface;  // "credentials_file", "ecs_token", "imds"
    bool ok = true;
    std::string error_code;      // errc_name of the last failure while failing
    std::uint64_t failures = 0;  // since the agent started
    std::string error_message;   // one line, no secret
};

struct CertificateSnapshot {
    std::string subject;
    std::string serial;     // decimal
    std::string not_after;  // ISO 8601
    long long days_left = 0;
    std::string not_before = {};  // ISO 8601; empty when not known
};

struct ProfileSnapshot {
    std::string name;
    std::string state;  // engine::profile_state_name(): starting, fresh, stale, failing
    bool servable = false;
    // The credentials held, if any.
    std::string access_key_id;  // redacted: the last four characters
    std::string expiration;     // ISO 8601
    std::optional<double> credentials_seconds_left;
    // The next refresh: in so many seconds, or running now.
    bool refreshing = false;
    long long next_refresh_in_seconds = 0;
    // The last refresh's failure, if it failed.
    std::string last_error_code;  // empty when the last refresh succeeded
    std::string last_error_message;
    int consecutive_failures = 0;
    std::optional<CertificateSnapshot> certificate;
    std::optional<double> certificate_seconds_left;
    std::vector<std::string> served;  // how clients reach it ("imds http://127.0.0.1:9911/", ...)
    std::vector<SurfaceHealth> surfaces;
    // refresh attempts by outcome: "ok", "retryable", "rejected"
    std::map<std::string, std::uint64_t> refreshes;
    LatencyHistogram create_session_seconds;
};

// RequestCounts counts answered requests by (surface, HTTP status), e.g. ("imds", 200).
using RequestCounts = std::map<std::pair<std::string, int>, std::uint64_t>;

struct AgentSnapshot {
    std::string version;
    std::string config;  // the configuration file ("" when the agent runs from flags)
    std::vector<ProfileSnapshot> profiles;
    RequestCounts requests;
};

// kCertificateWarningDays: a certificate with fewer days left is flagged in `status` (and warned about in the
// log once a day).
inline constexpr long long kCertificateWarningDays = 14;

// status_json renders `status --json`: {"version","config","health":{"ready","healthy","problems"},
// "profiles":[{"name","state","servable",...}]}.
std::string status_json(const AgentSnapshot& snapshot);

// profile_status_json is one profile's object of status_json (the answer to `refresh`).
std::string profile_status_json(const ProfileSnapshot& profile);

}  // namespace rad::policy
