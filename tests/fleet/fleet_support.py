"""A fleet of real `rolesanywhere-agent serve` processes cold-starting against one emulator whose CreateSession
quota they share, and the same fleet simulated by tools/fleet-sim: the two sides that tests/fleet compares
(test_fleet.py asserts that they agree; `compare` prints the table of the README).

The real side: every agent has its own directory, configuration and Unix socket (no TCP listener), and the
same certificate, trust anchor, profile and role; its roleSessionName (fleet-0001, ...) lets the emulator's
call records say which agent made each call. The agents are started behind a barrier (each one a shell
blocked opening a FIFO until every one of them is, then released at once and exec'ing the agent), so the
fleet starts within the time the machine needs to exec and initialise N processes, as a fleet that restarts
together does. Everything measured comes from the emulator's records and the agents' own logs and status.
"""

import json
import os
import re
import resource
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from radtest.agent import AgentProcess
from radtest.environment import ROOT, wait_until

FLEET_SIM = Path(os.environ.get("RAD_FLEET_SIM") or ROOT / "build" / "tools" / "fleet-sim" / "fleet-sim")
# The wrapper that holds each agent at the barrier: opening a FIFO for reading blocks until a writer opens it.
BARRIER = ': < "$0" && exec "$@"'
SHELL = os.path.realpath("/bin/sh")
RELEASE_TIMEOUT = 60
SIMULATED_SECONDS = 900  # long enough for any cold start here; shorter than the first scheduled refresh
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z ")


@dataclass(frozen=True)
class Scenario:
    """What both sides run: N agents with one profile each, cold, against one quota."""
    agents: int
    rate: float  # CreateSession quota, calls per second
    burst: float  # token bucket capacity, full at the start
    startup_jitter: int = 0  # the agents' startup_jitter_seconds (fleet-sim: --startup-jitter)
    retry_cap: int = 300  # the agents' retry_cap_seconds (fleet-sim: --retry-cap-ms)
    session: int = 3600  # session_duration (fleet-sim: --session)

    def describe(self):
        return (f"{self.agents} agents, quota {self.rate:g}/s burst {self.burst:g}, startup jitter "
                f"{self.startup_jitter} s, retry cap {self.retry_cap} s, {self.session} s sessions")


@dataclass
class RealRun:
    all_credentialed: float  # s from the release to the answer that gave the last agent its first credentials
    throttled: int  # calls the emulator's quota refused until then
    accepted: int  # calls it let through
    start_offsets: list  # s from the release to each agent's `event=started`
    round_trip_ms: dict  # CreateSession as the agents saw it (`event=create_session ms=`): p50, p90, max
    round_trips: list  # every one of those round trips, in ms
    answer_ms: dict  # the emulator's time from reading a call to answering it, accepted and throttled: p50, p99, max
    failures: dict  # refresh failures other than throttling in the agents' logs, by code (timeouts: an
    #                 emulator that did not keep up)
    wall: float  # s the whole run took, start to stop

    @property
    def start_spread(self):
        return max(self.start_offsets)

    @property
    def latency_ms(self):
        """The round trip given to fleet-sim: the median the agents saw."""
        return self.round_trip_ms["p50"]


@dataclass
class SimRun:
    all_credentialed: list = field(default_factory=list)  # s on the real fleet's clock, per seed (None: not all)
    throttled: list = field(default_factory=list)
    command: list = field(default_factory=list)  # the first seed's command line

    def mean_all_credentialed(self):
        done = [v for v in self.all_credentialed if v is not None]
        return statistics.mean(done) if len(done) == len(self.all_credentialed) else None

    def mean_throttled(self):
        return statistics.mean(self.throttled)


def raise_open_file_limit():
    """RLIMIT_NOFILE up to its hard limit: the test keeps one log file per agent open, and the emulator it
    starts (which inherits the limit) holds one socket per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def figures(values, fractions):
    """{"p50": ..., "p99": ..., "max": ...} of a list of numbers."""
    out = {f"p{round(100 * f)}": percentile(values, f) for f in fractions}
    out["max"] = max(values)
    return out


def log_time(line):
    """The Unix time of an agent log line (its UTC timestamp to the millisecond), or None."""
    match = LOG_TIME.match(line)
    if not match:
        return None
    return datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


def session_name(index):
    return f"fleet-{index + 1:04d}"


def fleet_agent(directory, emulator, pki, scenario, index):
    """One agent of the fleet: the socket only, one profile `fleet` named by its roleSessionName."""
    agent = AgentProcess(directory, emulator, pki)
    agent.agent = {"socket_path": str(agent.socket_path), "log_level": "debug",
                   "startup_jitter_seconds": scenario.startup_jitter, "retry_cap_seconds": scenario.retry_cap}
    agent.profile("fleet", imds_listen=None, ecs_path=None, ecs_token_file=None,
                  session_duration=scenario.session, role_session_name=session_name(index))
    return agent


def wchan(pid):
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read()
    except OSError:
        return ""


def executable(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def first_credentials(calls, names):
    """{session name: the first answered 201 call} for the names that got one."""
    first = {}
    for call in calls:
        name = call.get("session")
        if name in names and call.get("status") == 201 and "answered" in call and name not in first:
            first[name] = call
    return first


def run_real(scenario, emulator, pki, directory, credentialed_timeout=300):
    """Start the fleet at once, wait until every agent holds credentials, measure, stop it."""
    began = time.monotonic()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fifo = directory / "barrier"
    os.mkfifo(fifo, 0o600)
    emulator.reset()
    emulator.set_quota(scenario.rate, scenario.burst)

    agents = [fleet_agent(directory / f"a{i:04d}", emulator, pki, scenario, i) for i in range(scenario.agents)]
    names = {session_name(i) for i in range(scenario.agents)}
    writer = None
    try:
        for agent in agents:
            agent.start(wrapper=["/bin/sh", "-c", BARRIER, str(fifo)], wait_started=False)
        wait_until(lambda: all(wchan(a.process.pid) == "wait_for_partner" or a.process.poll() is not None
                               for a in agents), RELEASE_TIMEOUT, what="every agent waiting at the barrier")
        exited = [a for a in agents if a.process.poll() is not None]
        assert not exited, f"{len(exited)} agent wrapper(s) exited at the barrier: {exited[0].log()[-2000:]}"

        released = time.time()
        writer = os.open(fifo, os.O_WRONLY)  # every shell blocked opening the FIFO goes on
        wait_until(lambda: all(executable(a.process.pid) != SHELL or a.process.poll() is not None
                               for a in agents), RELEASE_TIMEOUT, what="every agent exec'd")
        os.close(writer)
        writer = None

        def credentialed():
            quota = emulator.quota()
            return quota if len(first_credentials(quota["calls"], names)) == len(names) else None

        try:
            quota = wait_until(credentialed, credentialed_timeout, interval=0.5,
                               what=f"credentials in all {len(names)} agents")
        except AssertionError:
            got = len(first_credentials(emulator.quota()["calls"], names))
            raise AssertionError(f"{got} of {len(names)} agents got credentials within {credentialed_timeout} s")

        first = first_credentials(quota["calls"], names)
        last = max(call["answered"] for call in first.values())
        # Every call counted was made before the last agent was credentialed: once all hold credentials,
        # none calls again before its scheduled refresh, half a session away.
        answer = {kind: [1000 * (c["answered"] - c["at"]) for c in quota["calls"]
                         if "answered" in c and c["throttled"] == (kind == "throttled")]
                  for kind in ("accepted", "throttled")}
        started, latencies, failures = [], [], {}
        for agent in agents:
            log = agent.log().splitlines()
            started += [log_time(line) for line in log if "event=started" in line][:1]
            latencies += [int(m[1]) for m in (re.search(r"\bevent=create_session\b.*\bms=(\d+)", line)
                                              for line in log) if m]
            for code in (m[1] for m in (re.search(r"\bevent=refresh_failed\b.*\bcode=(\w+)", line)
                                        for line in log) if m):
                if code != "upstream_throttled":
                    failures[code] = failures.get(code, 0) + 1
        assert len(started) == len(agents), "an agent did not log event=started"
        for agent in agents:
            entry = agent.profile_status("fleet")
            assert entry["state"] == "fresh" and entry.get("access_key_id"), entry
        return RealRun(all_credentialed=last - released, throttled=quota["throttled"], accepted=quota["accepted"],
                       start_offsets=[t - released for t in started],
                       round_trip_ms=figures(latencies, (0.5, 0.9)), round_trips=latencies,
                       answer_ms={kind: figures(values, (0.5, 0.99)) for kind, values in answer.items() if values},
                       failures=failures,
                       wall=time.monotonic() - began)
    finally:
        if writer is not None:
            os.close(writer)
        stop_all(agents)


def stop_all(agents):
    """SIGTERM to every agent at once, then each one's own stop (its wait and its log's secret check)."""
    for agent in agents:
        if agent.running():
            agent.process.send_signal(signal.SIGTERM)
    failures = []
    for agent in agents:
        try:
            agent.stop()
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, f"{len(failures)} agent(s) did not stop cleanly: {failures[0]}"


# --- fleet-sim -----------------------------------------------------------------------------------------------

SIM_THROTTLED = re.compile(r"^throttled CreateSession: total (\d+)", re.M)
SIM_ALL = re.compile(r"^all slots credentialed after: (?:(?P<s>[\d.]+) s|[\d.]+ (?:min|h) \((?P<whole>\d+) s\)|never)",
                     re.M)


def sim_command(scenario, real, directory, seed):
    """fleet-sim replaying the real run: each agent starts when its real counterpart logged `event=started`
    (--start-offsets, its t = 0 the release), waits the agents' own startup jitter (--startup-jitter, drawn by
    the engine as the agent draws it), and each call takes one of the round trips the agents measured
    (--latency-samples)."""
    offsets, samples = directory / "start-offsets", directory / "round-trips"
    offsets.write_text("".join(f"{offset:.3f}\n" for offset in real.start_offsets))
    samples.write_text("".join(f"{ms}\n" for ms in real.round_trips))
    return [str(FLEET_SIM), "--agents", str(scenario.agents), "--rate", f"{scenario.rate:g}",
            "--burst", f"{scenario.burst:g}", "--session", str(scenario.session),
            "--start-offsets", str(offsets), "--startup-jitter", str(scenario.startup_jitter),
            "--latency-samples", str(samples), "--retry-cap-ms", str(scenario.retry_cap * 1000),
            "--duration", str(SIMULATED_SECONDS), "--seed", str(seed), "--json", "-"]


def parse_sim_output(text):
    """(all credentialed after in s or None, throttled calls) from fleet-sim's summary: its JSON object
    ("all_credentialed_after_seconds", "throttled": {"total"}) or, from a fleet-sim without --json, its text."""
    if text.lstrip().startswith("{"):
        summary = json.loads(text)
        return summary["all_credentialed_after_seconds"], summary["throttled"]["total"]
    throttled = SIM_THROTTLED.search(text)
    done = SIM_ALL.search(text)
    if not throttled or not done:
        raise AssertionError(f"fleet-sim's summary has no throttled total or all-credentialed line:\n{text}")
    value = done["s"] or done["whole"]
    return (float(value) if value else None), int(throttled[1])


def run_sim(scenario, real, seeds, directory):
    """fleet-sim once per seed with the parameters of the real run `real` (files written in `directory`)."""
    result = SimRun()
    for seed in range(1, seeds + 1):
        command = sim_command(scenario, real, directory, seed)
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{' '.join(command)}: exit {done.returncode}: {done.stderr}"
        all_credentialed, throttled = parse_sim_output(done.stdout)
        result.all_credentialed.append(all_credentialed)
        result.throttled.append(throttled)
        result.command = result.command or command
    return result


def relative_difference(real, simulated):
    return (simulated - real) / real


def ms_text(figures):
    return "/".join(figures) + " " + "/".join(f"{v:.0f}" if v >= 10 else f"{v:.1f}" for v in figures.values()) + " ms"


def describe(real, sim):
    """The figures of one comparison, as the tests print them."""
    simulated_all = sim.mean_all_credentialed()
    done = [v for v in sim.all_credentialed if v is not None]
    lines = [f"  real: all credentialed after {real.all_credentialed:.1f} s, {real.throttled} throttled, "
             f"{real.accepted} accepted; agents started {min(real.start_offsets):.2f}-{real.start_spread:.2f} s "
             f"after the release; "
             f"CreateSession at the agents {ms_text(real.round_trip_ms)}; the emulator's answers: "
             + "; ".join(f"{kind} {ms_text(v)}" for kind, v in real.answer_ms.items()) + "; "
             f"other refresh failures {real.failures or 'none'}; run {real.wall:.1f} s",
             f"  fleet-sim ({len(sim.throttled)} seeds, the agents' measured starts and round trips replayed): "
             + (f"all credentialed after {simulated_all:.1f} s (seeds {min(done):.1f}-{max(done):.1f} s)"
                if simulated_all is not None else
                f"not every agent credentialed in {len(sim.all_credentialed) - len(done)} seed(s)")
             + f", {sim.mean_throttled():.1f} throttled ({min(sim.throttled)}-{max(sim.throttled)})"]
    if simulated_all is not None:
        lines.append(f"  fleet-sim against real: all credentialed "
                     f"{relative_difference(real.all_credentialed, simulated_all):+.1%}, throttled "
                     f"{relative_difference(real.throttled, sim.mean_throttled()):+.1%}")
    lines.append(f"  fleet-sim command (seed 1): {' '.join(sim.command)}")
    return "\n".join(lines)

