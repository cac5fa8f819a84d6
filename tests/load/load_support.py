"""Helpers of the load suite: run wrk with wrk_report.lua and parse its figures, read an agent's RSS and open
file descriptors from /proc, and start an agent set up for load (log level info: the debug level writes lines
that would make the log, not the agent, the thing measured)."""

import json
import re
import subprocess
import time
from pathlib import Path

from radtest.agent import AgentProcess
from radtest.environment import wait_until

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_report.lua"
MIB = 1024 * 1024


class WrkResult:
    """The figures of one wrk run: counts, errors and latency percentiles (microseconds)."""

    def __init__(self, figures, non_2xx, text):
        self.figures = figures
        self.non_2xx = non_2xx
        self.text = text

    def __getitem__(self, key):
        return self.figures[key]

    @property
    def requests_per_second(self):
        return self.figures["requests"] / (self.figures["duration_us"] / 1e6)

    @property
    def socket_errors(self):
        f = self.figures
        return f["connect_errors"] + f["read_errors"] + f["write_errors"] + f["timeouts"]

    def summary(self):
        f = self.figures
        return {"req/s": f"{self.requests_per_second:.0f}", "requests": f["requests"],
                "p50": f"{f['p50_us'] / 1000:.2f}ms", "p90": f"{f['p90_us'] / 1000:.2f}ms",
                "p99": f"{f['p99_us'] / 1000:.2f}ms", "p99.9": f"{f['p999_us'] / 1000:.2f}ms",
                "max": f"{f['max_us'] / 1000:.2f}ms", "non-2xx": self.non_2xx,
                "socket_errors": self.socket_errors}


def run_wrk(url, *, threads=2, connections=64, seconds=10, method="GET", headers=None, timeout_s=5):
    """wrk -tT -cC -dS --latency with wrk_report.lua; returns a WrkResult (fails the test if wrk fails)."""
    args = [method]
    for name, value in (headers or {}).items():
        args += [name, value]
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s", "--latency",
               "-s", str(WRK_SCRIPT), url, "--", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    assert result.returncode == 0, f"wrk failed ({result.returncode}): {result.stderr}"
    match = re.search(r"^WRK_JSON (\{.*\})$", result.stdout, re.M)
    assert match, f"no figures in wrk's output:\n{result.stdout}\n{result.stderr}"
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    return WrkResult(json.loads(match[1]), int(non_2xx[1]) if non_2xx else 0, result.stdout)


def rss_bytes(pid):
    """Resident set size of `pid` (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_fds(pid):
    """How many file descriptors `pid` holds open."""
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def wait_for_fds(pid, at_most, timeout=10):
    """Wait until `pid` holds at most `at_most` descriptors (connections close asynchronously); returns the count."""
    try:
        wait_until(lambda: open_fds(pid) <= at_most, timeout, what=f"open fds of the agent <= {at_most}")
    except AssertionError:
        pass  # the caller asserts on the count it gets, with the figures in the message
    return open_fds(pid)


def load_agent(directory, emulator, pki, **overrides):
    """An agent serving profile `web` over IMDS, ECS and the Unix socket, started, with credentials in cache."""
    agent = AgentProcess(directory, emulator, pki)
    agent.agent["log_level"] = "info"
    agent.profile("web", **overrides)
    agent.start()
    assert agent.log_lines("refresh_ok"), agent.log()
    return agent


def imds_url(agent, role=None, name="web"):
    base = f"http://127.0.0.1:{agent.imds_port(name)}/latest/meta-data/iam/security-credentials/"
    return base + (role or "")


def settle(seconds=0.5):
    """Let connections the previous run left finish closing before a reading is taken."""
    time.sleep(seconds)
