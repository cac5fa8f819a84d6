#pragma once
// /healthz and /metrics of the agent's optional health listener, as pure functions of a snapshot the event
// loop takes. Nothing secret goes in: no keys, tokens or access key ids, only states, counts and times.

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/http_types.hpp"

namespace rad::daemon {

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

// SurfaceHealth is how one way of serving a profile fares: the credentials file (written), its ECS token
// file, an IMDS listener (opened at a reload).
struct SurfaceHealth {
    std::string surface;  // "credentials_file", "ecs_token", "imds"
    bool ok = true;
    std::string error_code;      // errc_name of the last failure while failing
    std::uint64_t failures = 0;  // since the agent started
};

struct ProfileHealth {
    std::string name;
    std::string state;  // cache_state_name()
    bool servable = false;
    std::string last_error_code;  // empty when the last refresh succeeded
    std::optional<double> credentials_seconds_left;
    std::optional<double> certificate_seconds_left;
    // refresh attempts by outcome: "ok", "retryable", "rejected"
    std::map<std::string, std::uint64_t> refreshes;
    LatencyHistogram create_session_seconds;
    std::vector<SurfaceHealth> surfaces;  // those that can fail on their own
};

// RequestCounts counts answered requests by (surface, HTTP status), e.g. ("imds", 200).
using RequestCounts = std::map<std::pair<std::string, int>, std::uint64_t>;

struct HealthSnapshot {
    std::vector<ProfileHealth> profiles;
    RequestCounts requests;
};

// health_response: 200 "ok" when every profile holds servable credentials and every surface of theirs works;
// 503 listing the failing profiles (their state) and surfaces otherwise. Routes: GET /healthz, GET /metrics;
// 404 elsewhere, 405 for other methods.
SurfaceResponse handle_health(const SurfaceRequest& request, const HealthSnapshot& snapshot);

// metrics_text renders the snapshot in the Prometheus text exposition format (version 0.0.4).
std::string metrics_text(const HealthSnapshot& snapshot);

}  // namespace rad::daemon
