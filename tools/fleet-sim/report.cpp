#include "tools/fleet-sim/report.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace rad::fleet {

namespace {

std::string fixed(double value, int decimals) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
    return buffer;
}

std::string duration_text(Millis d) {
    const double s = static_cast<double>(d.count()) / 1000.0;
    if (s < 120.0) {
        return fixed(s, 1) + " s";
    }
    if (s < 7200.0) {
        return fixed(s / 60.0, 1) + " min (" + fixed(s, 0) + " s)";
    }
    return fixed(s / 3600.0, 2) + " h (" + fixed(s, 0) + " s)";
}

std::string rate_line(const char* name, const RateStats& r) {
    return std::string(name) + ": total " + std::to_string(r.total) + ", peak " + std::to_string(r.peak) +
           "/s, p99 " + std::to_string(r.p99) + "/s, mean " + fixed(r.mean, 3) + "/s\n";
}

Result<void> write_text(const std::filesystem::path& path, const std::string& text, const char* what) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) {
        return make_error(Errc::input_missing, std::string(what) + " " + path.string() +
                                                   ": cannot create: " + std::strerror(errno));
    }
    out << text;
    out.close();
    if (!out) {
        return make_error(Errc::input_invalid, std::string(what) + " " + path.string() + ": write failed");
    }
    return {};
}

// The plot's vertical axis is log10(1 + calls/s): a cold start throttles thousands of calls in its first
// seconds while the quota is 10/s, and both must stay readable on one chart.
double y_value(double calls) {
    return std::log10(1.0 + std::max(calls, 0.0));
}

std::string time_label(double seconds, double span) {
    if (span <= 2 * 3600.0) {
        return fixed(seconds / 60.0, 0) + " min";
    }
    return fixed(seconds / 3600.0, seconds / 3600.0 == std::floor(seconds / 3600.0) ? 0 : 1) + " h";
}

}  // namespace

std::string format_summary(const Scenario& s, const Summary& summary) {
    std::ostringstream out;
    out << "scenario: " << s.agents << " agents x " << s.profiles << " profiles, quota "
        << fixed(s.quota_rate, 3) << "/s burst " << fixed(s.quota_burst, 0) << ", session "
        << s.session.count() << " s, refresh at " << fixed(s.refresh.refresh_at_min, 2) << ".."
        << fixed(s.refresh.refresh_at_max, 2) << " of lifetime, "
        << (s.initial == InitialState::cold ? "cold start" : "steady start");
    if (s.initial == InitialState::cold) {
        out << (s.start_spread.count() > 0 ? " spread over " + duration_text(s.start_spread) : " all at t=0");
        if (s.startup_jitter.count() > 0) {
            out << ", startup jitter " << duration_text(s.startup_jitter);
        }
    }
    out << ", latency " << s.latency.count() << "+U[0," << s.latency_jitter.count() << ") ms, failure rate "
        << fixed(s.failure_rate, 3);
    if (s.outage_end > s.outage_start) {
        out << ", outage [" << s.outage_start.count() / 1000 << " s, " << s.outage_end.count() / 1000
            << " s)";
    }
    out << ", retry base " << s.refresh.retry_base.count() << " ms (throttled "
        << s.refresh.throttled_base.count() << " ms) cap " << s.refresh.retry_cap.count() << " ms, duration "
        << duration_text(s.duration) << ", seed " << s.seed << "\n";
    out << rate_line("accepted CreateSession", summary.accepted);
    out << rate_line("throttled CreateSession", summary.throttled);
    out << "throttled per slot: "
        << fixed(static_cast<double>(summary.throttled.total) /
                     static_cast<double>(std::max<std::uint64_t>(summary.slots, 1)),
                 2)
        << "\n";
    out << "server errors: " << summary.server_errors << ", calls during outage: " << summary.unreachable
        << ", successful refreshes: " << summary.successes << "\n";
    out << "all slots credentialed after: "
        << (summary.all_credentialed_after
                ? duration_text(*summary.all_credentialed_after)
                : "never (" + std::to_string(summary.slots_never_credentialed) + " of " +
                      std::to_string(summary.slots) + " slots never were)")
        << "\n";
    out << "slot-seconds without servable credentials: "
        << fixed(static_cast<double>(summary.unservable_time.count()) / 1000.0, 1) << "\n";
    if (s.sample_every_second) {
        out << "  (sampled once per second from the engines: " << summary.sampled_unservable_seconds << ")\n";
    }
    out << "worst staleness (refresh overdue): " << duration_text(summary.worst_staleness) << "\n";
    return out.str();
}

std::string summary_json(const Scenario& s, const Summary& summary) {
    nlohmann::ordered_json doc;
    const auto seconds = [](Millis ms) { return static_cast<double>(ms.count()) / 1000.0; };
    const auto rates = [](const RateStats& r) {
        return nlohmann::ordered_json{{"total", r.total}, {"peak", r.peak}, {"p99", r.p99}, {"mean", r.mean}};
    };
    auto& scenario = doc["scenario"];
    scenario["agents"] = s.agents;
    scenario["profiles"] = s.profiles;
    scenario["quota_rate"] = s.quota_rate;
    scenario["quota_burst"] = s.quota_burst;
    scenario["session_seconds"] = s.session.count();
    scenario["initial"] = s.initial == InitialState::cold ? "cold" : "steady";
    scenario["spread_seconds"] = seconds(s.start_spread);
    scenario["start_offsets"] = !s.start_offsets.empty();
    scenario["startup_jitter_seconds"] = seconds(s.startup_jitter);
    scenario["latency_ms"] = s.latency.count();
    scenario["latency_jitter_ms"] = s.latency_jitter.count();
    scenario["latency_samples"] = s.latency_samples.size();
    scenario["retry_base_ms"] = s.refresh.retry_base.count();
    scenario["retry_cap_ms"] = s.refresh.retry_cap.count();
    scenario["throttled_base_ms"] = s.refresh.throttled_base.count();
    scenario["failure_rate"] = s.failure_rate;
    scenario["outage_start_seconds"] = seconds(s.outage_start);
    scenario["outage_end_seconds"] = seconds(s.outage_end);
    scenario["retry_after_seconds"] = s.retry_after.count();
    scenario["duration_seconds"] = seconds(s.duration);
    scenario["seed"] = s.seed;
    doc["accepted"] = rates(summary.accepted);
    doc["throttled"] = rates(summary.throttled);
    doc["server_errors"] = summary.server_errors;
    doc["unreachable"] = summary.unreachable;
    doc["successes"] = summary.successes;
    doc["slots"] = summary.slots;
    doc["slots_never_credentialed"] = summary.slots_never_credentialed;
    doc["all_credentialed_after_seconds"] =
        summary.all_credentialed_after ? nlohmann::ordered_json(seconds(*summary.all_credentialed_after))
                                       : nlohmann::ordered_json(nullptr);
    doc["unservable_slot_seconds"] = seconds(summary.unservable_time);
    doc["worst_staleness_seconds"] = seconds(summary.worst_staleness);
    return doc.dump();
}

Result<void> write_json(const std::filesystem::path& path, const Scenario& scenario, const Summary& summary) {
    return write_text(path, summary_json(scenario, summary) + "\n", "--json");
}

Result<std::vector<double>> read_numbers(const std::filesystem::path& path, std::string_view flag) {
    std::ifstream in(path);
    if (!in) {
        return make_error(Errc::input_missing, std::string(flag) + " " + path.string() + ": cannot read it");
    }
    std::vector<double> numbers;
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) {
            continue;
        }
        std::size_t used = 0;
        double value = 0;
        try {
            value = std::stod(line, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || line.find_first_not_of(" \t\r", used) != std::string::npos ||
            !std::isfinite(value)) {
            return make_error(Errc::input_invalid, std::string(flag) + " " + path.string() + ":" +
                                                       std::to_string(number) + ": not a number");
        }
        numbers.push_back(value);
    }
    return numbers;
}

Result<void> write_csv(const std::filesystem::path& path, const std::vector<SecondCounts>& per_second) {
    std::string text = "second,accepted,throttled,unreachable\n";
    text.reserve(per_second.size() * 16 + text.size());
    for (std::size_t i = 0; i < per_second.size(); ++i) {
        const SecondCounts& c = per_second[i];
        text += std::to_string(i) + ',' + std::to_string(c.accepted) + ',' + std::to_string(c.throttled) +
                ',' + std::to_string(c.unreachable) + '\n';
    }
    return write_text(path, text, "--csv");
}

Result<void> write_svg(const std::filesystem::path& path,
                       const Scenario& scenario,
                       const std::vector<SecondCounts>& per_second) {
    constexpr double width = 1000, height = 420, left = 70, right = 20, top = 40, bottom = 50;
    constexpr double plot_w = width - left - right, plot_h = height - top - bottom;
    const std::size_t seconds = std::max<std::size_t>(per_second.size(), 1);
    const std::size_t bin = std::max<std::size_t>(1, (seconds + 999) / 1000);
    const std::size_t bins = (seconds + bin - 1) / bin;

    std::vector<double> accepted(bins, 0.0), throttled(bins, 0.0), peak(bins, 0.0);
    for (std::size_t i = 0; i < per_second.size(); ++i) {
        accepted[i / bin] += per_second[i].accepted;
        throttled[i / bin] += per_second[i].throttled;
        peak[i / bin] = std::max(peak[i / bin], static_cast<double>(per_second[i].accepted));
    }
    double top_value = scenario.quota_rate;
    for (std::size_t b = 0; b < bins; ++b) {
        const double n =
            static_cast<double>(std::min(bin, per_second.size() - std::min(per_second.size(), b * bin)));
        accepted[b] /= std::max(n, 1.0);
        throttled[b] /= std::max(n, 1.0);
        top_value = std::max({top_value, accepted[b], throttled[b], peak[b]});
    }
    const double decades = std::ceil(y_value(top_value) + 1e-9);
    auto px = [&](double second) { return left + plot_w * second / static_cast<double>(seconds); };
    auto py = [&](double calls) { return top + plot_h * (1.0 - y_value(calls) / decades); };
    auto polyline = [&](const std::vector<double>& values, const char* colour, double stroke) {
        std::string points;
        for (std::size_t b = 0; b < values.size(); ++b) {
            points += fixed(px(static_cast<double>(b * bin)), 1) + ',' + fixed(py(values[b]), 1) + ' ';
        }
        return "<polyline fill=\"none\" stroke=\"" + std::string(colour) + "\" stroke-width=\"" +
               fixed(stroke, 1) + "\" points=\"" + points + "\"/>\n";
    };

    std::ostringstream svg;
    svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
        << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
    svg << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    svg << "<text x=\"" << left << "\" y=\"22\" font-size=\"14\">CreateSession calls/s: " << scenario.agents
        << " agents x " << scenario.profiles << " profiles, quota " << fixed(scenario.quota_rate, 1)
        << "/s, session " << scenario.session.count() << " s"
        << (bin > 1 ? ", " + std::to_string(bin) + " s bins" : "") << "</text>\n";
    // Axes and grid: 0, 1, 10, 100... calls/s, six time ticks.
    for (double calls = 0.0; y_value(calls) <= decades + 1e-9; calls = calls == 0.0 ? 1.0 : calls * 10.0) {
        const double y = py(calls);
        svg << "<line x1=\"" << left << "\" x2=\"" << width - right << "\" y1=\"" << fixed(y, 1) << "\" y2=\""
            << fixed(y, 1) << "\" stroke=\"#ddd\"/>\n";
        svg << "<text x=\"" << left - 6 << "\" y=\"" << fixed(y + 4, 1) << "\" text-anchor=\"end\">"
            << fixed(calls, 0) << "</text>\n";
    }
    for (int t = 0; t <= 6; ++t) {
        const double second = static_cast<double>(seconds) * t / 6.0;
        svg << "<text x=\"" << fixed(px(second), 1) << "\" y=\"" << height - bottom + 18
            << "\" text-anchor=\"middle\">" << time_label(second, static_cast<double>(seconds))
            << "</text>\n";
    }
    svg << "<line x1=\"" << left << "\" x2=\"" << left << "\" y1=\"" << top << "\" y2=\"" << top + plot_h
        << "\" stroke=\"black\"/>\n";
    svg << "<line x1=\"" << left << "\" x2=\"" << width - right << "\" y1=\"" << top + plot_h << "\" y2=\""
        << top + plot_h << "\" stroke=\"black\"/>\n";
    svg << "<text x=\"16\" y=\"" << top + plot_h / 2 << "\" transform=\"rotate(-90 16 " << top + plot_h / 2
        << ")\" text-anchor=\"middle\">calls/s (log scale)</text>\n";
    const double quota_y = py(scenario.quota_rate);
    svg << "<line x1=\"" << left << "\" x2=\"" << width - right << "\" y1=\"" << fixed(quota_y, 1)
        << "\" y2=\"" << fixed(quota_y, 1) << "\" stroke=\"#555\" stroke-dasharray=\"6 4\"/>\n";
    svg << polyline(throttled, "#d62728", 1.2);
    if (bin > 1) {
        svg << polyline(peak, "#98df8a", 0.8);
    }
    svg << polyline(accepted, "#2ca02c", 1.5);
    // Legend.
    const double ly = height - 12;
    svg << "<rect x=\"" << left << "\" y=\"" << ly - 9
        << "\" width=\"12\" height=\"4\" fill=\"#2ca02c\"/><text x=\"" << left + 16 << "\" y=\"" << ly
        << "\">accepted (mean)</text>\n";
    if (bin > 1) {
        svg << "<rect x=\"" << left + 130 << "\" y=\"" << ly - 9
            << "\" width=\"12\" height=\"4\" fill=\"#98df8a\"/><text x=\"" << left + 146 << "\" y=\"" << ly
            << "\">accepted (peak second)</text>\n";
    }
    svg << "<rect x=\"" << left + 310 << "\" y=\"" << ly - 9
        << "\" width=\"12\" height=\"4\" fill=\"#d62728\"/><text x=\"" << left + 326 << "\" y=\"" << ly
        << "\">throttled (mean)</text>\n";
    svg << "<line x1=\"" << left + 460 << "\" x2=\"" << left + 480 << "\" y1=\"" << ly - 4 << "\" y2=\""
        << ly - 4 << "\" stroke=\"#555\" stroke-dasharray=\"6 4\"/><text x=\"" << left + 486 << "\" y=\""
        << ly << "\">quota</text>\n";
    svg << "</svg>\n";
    return write_text(path, svg.str(), "--svg");
}

}  // namespace rad::fleet
