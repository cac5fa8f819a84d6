// fleet-sim: simulate a fleet of agents sharing one CreateSession quota (see README.md next to this file).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "tools/fleet-sim/fleet_sim.hpp"
#include "tools/fleet-sim/report.hpp"

namespace {

using rad::fleet::Millis;

int fail(const rad::Error& error) {
    std::fprintf(stderr, "fleet-sim: %s\n", error.message.c_str());
    return rad::exit_code(error.code);
}

}  // namespace

int main(int argc, char** argv) {
    rad::fleet::Scenario s;
    CLI::App app{
        "Discrete-event simulation of N agents x P profiles sharing one CreateSession quota, each profile "
        "run by the agent's own engine (daemon/engine)."};
    app.set_help_flag("-h,--help", "Print this help and exit");

    double session = 3600, spread = 0, startup_jitter = 0, duration = 86400, outage_start = 0, outage_end = 0;

    long long latency = 200, latency_jitter = 0, retry_base = s.refresh.retry_base.count(),
              retry_cap = s.refresh.retry_cap.count(), throttled_base = s.refresh.throttled_base.count();
    long long retry_after = 0;
    std::string initial = "cold", csv, svg, json, start_offsets, latency_samples;
    app.add_option("--agents", s.agents, "Number of agents (hosts)")->capture_default_str();
    app.add_option("--profiles", s.profiles, "Profiles per agent, each with its own CreateSession")
        ->capture_default_str();
    app.add_option("--rate", s.quota_rate, "CreateSession quota, calls per second")->capture_default_str();
    app.add_option("--burst", s.quota_burst, "Token bucket capacity")->capture_default_str();
    app.add_option("--session", session, "Session duration, seconds")->capture_default_str();
    app.add_option("--refresh-min", s.refresh.refresh_at_min, "Earliest refresh point, fraction of lifetime")
        ->capture_default_str();
    app.add_option("--refresh-max", s.refresh.refresh_at_max, "Latest refresh point, fraction of lifetime")
        ->capture_default_str();
    app.add_option("--retry-base-ms", retry_base, "Backoff base of retryable failures")
        ->capture_default_str();
    app.add_option("--throttled-base-ms", throttled_base,
                   "Backoff base after a throttled answer without Retry-After")
        ->capture_default_str();
    app.add_option("--retry-cap-ms", retry_cap, "Backoff cap of retryable failures")->capture_default_str();
    app.add_option("--initial", initial, "cold: agents start without credentials; steady: mid-cycle")
        ->check(CLI::IsMember({"cold", "steady"}))
        ->capture_default_str();
    app.add_option("--spread", spread,
                   "Cold start: agents start uniformly over this many seconds (0: all at t=0)")
        ->capture_default_str();
    app.add_option("--startup-jitter", startup_jitter,
                   "The agents' startup_jitter_seconds: each profile's first call is delayed by a random "
                   "0..this many seconds")
        ->capture_default_str();
    app.add_option("--latency-ms", latency, "CreateSession round trip")->capture_default_str();
    app.add_option("--latency-jitter-ms", latency_jitter, "Plus a uniform [0, this) ms")
        ->capture_default_str();
    app.add_option("--failure-rate", s.failure_rate, "Fraction of accepted calls answered with HTTP 500")
        ->capture_default_str();
    app.add_option("--outage-start", outage_start, "Outage start, seconds (calls fail: unreachable)")
        ->capture_default_str();
    app.add_option("--outage-end", outage_end, "Outage end, seconds (exclusive)")->capture_default_str();
    app.add_option("--retry-after", retry_after, "Retry-After seconds on throttled answers (0: none)")
        ->capture_default_str();
    app.add_option("--duration", duration, "Simulated time, seconds")->capture_default_str();
    app.add_option("--seed", s.seed, "Random seed (same seed, same run)")->capture_default_str();
    app.add_option("--csv", csv, "Write per-second accepted/throttled/unreachable to this file");
    app.add_option("--svg", svg, "Write a plot of calls/s over time to this file");
    app.add_flag("--sample", s.sample_every_second,
                 "Also ask every slot's engine what it serves once per second (cross-check, slow)");
    app.add_option("--json", json,
                   "Write the summary as one JSON object to this file (- for stdout, then no text)");
    app.add_option("--start-offsets", start_offsets,
                   "Cold start: a file with one start time per agent, in seconds (replaces --spread)");
    app.add_option("--latency-samples", latency_samples,
                   "A file of measured round trips, in ms, one per line: each call's is drawn from them");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : rad::exit_code(rad::Errc::usage);
    }

    auto to_ms = [](double seconds) { return Millis(static_cast<Millis::rep>(seconds * 1000.0)); };
    s.session = std::chrono::seconds(static_cast<long long>(session));
    s.start_spread = to_ms(spread);
    s.startup_jitter = to_ms(startup_jitter);
    s.duration = to_ms(duration);
    s.outage_start = to_ms(outage_start);
    s.outage_end = to_ms(outage_end);
    s.latency = Millis(latency);
    s.latency_jitter = Millis(latency_jitter);
    s.retry_after = std::chrono::seconds(retry_after);
    s.refresh.retry_base = Millis(retry_base);
    s.refresh.retry_cap = Millis(retry_cap);
    s.refresh.throttled_base = Millis(throttled_base);
    s.initial = initial == "steady" ? rad::fleet::InitialState::steady : rad::fleet::InitialState::cold;

    if (!start_offsets.empty()) {
        auto offsets = rad::fleet::read_numbers(start_offsets, "--start-offsets");
        if (!offsets) {
            return fail(offsets.error());
        }
        for (double seconds : *offsets) {
            s.start_offsets.push_back(to_ms(seconds));
        }
    }
    if (!latency_samples.empty()) {
        auto samples = rad::fleet::read_numbers(latency_samples, "--latency-samples");
        if (!samples) {
            return fail(samples.error());
        }
        for (double ms : *samples) {
            s.latency_samples.push_back(Millis(static_cast<Millis::rep>(ms)));
        }
    }
    const auto started = std::chrono::steady_clock::now();
    auto result = rad::fleet::simulate(s);
    if (!result) {
        return fail(result.error());
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (json == "-") {
        std::puts(rad::fleet::summary_json(s, result->summary).c_str());
    } else {
        std::fputs(rad::fleet::format_summary(s, result->summary).c_str(), stdout);
        std::printf("wall time: %.2f s\n", elapsed);
        if (!json.empty()) {
            if (auto ok = rad::fleet::write_json(json, s, result->summary); !ok) {
                return fail(ok.error());
            }
        }
    }
    if (!csv.empty()) {
        if (auto ok = rad::fleet::write_csv(csv, result->per_second); !ok) {
            return fail(ok.error());
        }
    }
    if (!svg.empty()) {
        if (auto ok = rad::fleet::write_svg(svg, s, result->per_second); !ok) {
            return fail(ok.error());
        }
    }
    return 0;
}
