#pragma once
// The simulator's outputs: a text summary, the per-second series as CSV, and an SVG plot of calls/s.

#include <filesystem>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "tools/fleet-sim/fleet_sim.hpp"

namespace rad::fleet {

// format_summary is the human-readable report: the scenario's knobs, then one figure per line.
std::string format_summary(const Scenario& scenario, const Summary& summary);

// summary_json is the scenario and the summary as one JSON object (times in seconds; null when not reached),
// for scripts that compare the simulation with real agents (tests/fleet).
std::string summary_json(const Scenario& scenario, const Summary& summary);

// write_json writes summary_json to `path`.
[[nodiscard]] Result<void> write_json(const std::filesystem::path& path,
                                      const Scenario& scenario,
                                      const Summary& summary);

// read_numbers reads one number per line (blank lines skipped) from `path`; `flag` names it in errors.
[[nodiscard]] Result<std::vector<double>> read_numbers(const std::filesystem::path& path,
                                                       std::string_view flag);

// write_csv writes "second,accepted,throttled,unreachable" and one row per simulated second.
[[nodiscard]] Result<void> write_csv(const std::filesystem::path& path,
                                     const std::vector<SecondCounts>& per_second);

// write_svg plots accepted and throttled calls per second over time, with the quota as a line. Long runs are
// drawn as the mean of consecutive seconds (the legend names the bin width), plus the per-bin peak of
// accepted calls, so a one-second spike stays visible.
[[nodiscard]] Result<void> write_svg(const std::filesystem::path& path,
                                     const Scenario& scenario,
                                     const std::vector<SecondCounts>& per_second);

}  // namespace rad::fleet
