"""Fixtures for the systemd tests: the agent run the way systemd runs it, without systemd as PID 1.

The emulator class and the test PKI are the integration tests' (tests/integration/conftest.py, loaded here under
its own module name so that the two conftest modules do not collide). CTest passes RAD_AGENT_BIN, RAD_TEST_PKI,
RAD_EMULATOR, RAD_PYTHON, RAD_SOURCE_DIR, RAD_BUILD_DIR, RAD_CPACK and RAD_VERSION (tests/systemd/CMakeLists.txt).
Every wait is bounded.
"""

import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("RAD_SOURCE_DIR") or Path(__file__).resolve().parents[2])
BUILD = Path(os.environ.get("RAD_BUILD_DIR") or ROOT / "build")
AGENT = Path(os.environ.get("RAD_AGENT_BIN") or BUILD / "daemon" / "rolesanywhere-agent")
UNIT_DIR = ROOT / "systemd"
START_TIMEOUT = 20
STOP_TIMEOUT = 15
HTTP_TIMEOUT = 10


def _load_integration_support():
    spec = importlib.util.spec_from_file_location("rad_integration_conftest",
                                                  ROOT / "tests" / "integration" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_integration = _load_integration_support()
Emulator = _integration.Emulator
pki_dir = _integration.pki_dir
clean_environment = _integration.clean_environment


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    if not AGENT.is_file():
        pytest.fail(f"agent binary {AGENT} not found; build the rolesanywhere-agent target or set RAD_AGENT_BIN")
    instance = Emulator(tmp_path_factory.mktemp("emulator"))
    yield instance
    instance.stop()


@pytest.fixture
def em(emulator):
    """The session's emulator, with faults and statistics reset for this test."""
    emulator.reset()
    return emulator


@pytest.fixture(scope="session")
def pki():
    return pki_dir()


@pytest.fixture
def short_dir():
    """A directory under /tmp with a short path: AF_UNIX socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="rad-sd-", dir="/tmp"))
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_closed(port):
    """True when nothing accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def render_config(agent_settings, profiles):
    """TOML for an [agent] table and one [profiles.NAME] table per entry (strings, ints, bools, lists)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))  # a TOML basic string is a JSON string for everything used here

    lines = ["[agent]"] + [f"{k} = {value(v)}" for k, v in agent_settings.items()]
    for name, settings in profiles.items():
        lines += ["", f"[profiles.{name}]"] + [f"{k} = {value(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


class AgentConfig:
    """A one-profile (`web`) configuration against the emulator, in `directory`, mode 0600."""

    def __init__(self, directory, emulator, pki, **profile_overrides):
        self.dir = Path(directory)
        self.path = self.dir / "agent.toml"
        self.imds_port = free_port()
        self.ecs_port = free_port()
        self.agent = {"socket_path": str(self.dir / "agent.sock"), "ecs_listen": f"127.0.0.1:{self.ecs_port}",
                      "log_level": "debug"}
        self.profile = {
            "certificate": str(Path(pki) / "p256.pem"),
            "private_key": str(Path(pki) / "p256.key"),
            "trust_anchor_arn": emulator.arns["trust_anchor_arn"],
            "profile_arn": emulator.arns["profile_arn"],
            "role_arn": emulator.arns["role_arn"],
            "endpoint": emulator.url,
            "ca_bundle": emulator.ca_bundle,
            "imds_listen": f"127.0.0.1:{self.imds_port}",
            "ecs_path": "/creds/web",
            "ecs_token_file": str(self.dir / "web.token"),
        }
        self.profile.update(profile_overrides)

    def write(self):
        self.path.write_text(render_config(self.agent, {"web": self.profile}))
        os.chmod(self.path, 0o600)
        return self.path


class AgentProcess:
    """`serve --config FILE`, optionally behind a wrapper (systemd-socket-activate), stderr into a file."""

    def __init__(self, directory):
        self.log_path = Path(directory) / "agent.stderr"
        self.process = None
        self._log = None

    def start(self, config_path, env=None, wrapper=(), wait_started=True):
        command = [*wrapper, str(AGENT), "serve", "--config", str(config_path)]
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                        env=clean_environment(env))
        if wait_started:
            self.wait_for_log(r"event=started")
        return self

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            lines = [line for line in self.log().splitlines() if regex.search(line)]
            if lines:
                return lines
            if self.process.poll() is not None:
                raise AssertionError(f"the agent exited ({self.process.returncode}) before logging {pattern!r}:\n"
                                     f"{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing matched {pattern!r} within {timeout} s:\n{self.log()[-4000:]}")
            time.sleep(0.05)

    def signal(self, signum):
        assert self.process.poll() is None, "the agent is not running"
        self.process.send_signal(signum)

    def stop(self):
        """SIGTERM and wait; returns the exit status (kills the agent and fails after STOP_TIMEOUT)."""
        if self.process is None:
            return None
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"the agent did not stop within {STOP_TIMEOUT} s of SIGTERM")
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


@pytest.fixture
def agent_process(tmp_path):
    """An AgentProcess that is always stopped at the end of the test."""
    process = AgentProcess(tmp_path)
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


def http_call(port, method, path, headers=None):
    """One HTTP/1.1 request to 127.0.0.1:port; returns (status, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def imds_credentials(port):
    """IMDSv2 as an SDK does it (token, role name, credentials); returns (status, JSON or raw body)."""
    status, token = http_call(port, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    assert status == 200, (status, token)
    headers = {"X-aws-ec2-metadata-token": token.decode()}
    status, role = http_call(port, "GET", "/latest/meta-data/iam/security-credentials/", headers)
    assert status == 200, (status, role)
    status, body = http_call(port, "GET", f"/latest/meta-data/iam/security-credentials/{role.decode().strip()}",
                             headers)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def wait_until(predicate, timeout, interval=0.1, what="the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(interval)


def last_issued(emulator):
    issued = [r["credentials"] for r in emulator.stats()["recorded"] if r.get("outcome") == "accepted"]
    assert issued, "the emulator issued no credentials"
    return issued[-1]
