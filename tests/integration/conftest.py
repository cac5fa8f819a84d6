"""Fixtures for the integration tests: the real agent binary against ra_emulator.py over HTTPS.

CTest passes RAD_AGENT_BIN, RAD_TEST_PKI, RAD_EMULATOR and RAD_PYTHON (tests/integration/CMakeLists.txt). Run by
hand, the defaults are build/daemon/rolesanywhere-agent and a PKI generated into a temporary directory.
"""

import http.client
import json
import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = os.environ.get("RAD_PYTHON") or "/usr/bin/python3"
AGENT = Path(os.environ.get("RAD_AGENT_BIN") or ROOT / "build" / "daemon" / "rolesanywhere-agent")
EMULATOR = Path(os.environ.get("RAD_EMULATOR") or ROOT / "tests" / "emulator" / "ra_emulator.py")
SUBPROCESS_TIMEOUT = 45
EXPIRATION_FORMAT = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"
# Variables that would change what the agent or the AWS clients do; the tests start from none of them.
PROXY_VARIABLES = {"http_proxy", "https_proxy", "no_proxy", "all_proxy"}


def clean_environment(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k.lower() not in PROXY_VARIABLES and not k.startswith("RAD_")}
    env.update(extra or {})
    return env


class Emulator:
    """A running ra_emulator.py: its URL, CA bundle and ARNs, and its control endpoints."""

    def __init__(self, directory, extra_args=()):
        self.directory = directory
        self.log = directory / "emulator.log"
        port_file = directory / "port"
        self.process = subprocess.Popen(
            [PYTHON, str(EMULATOR), "--listen", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
             "--tls-dir", str(directory / "tls"), "--trust-anchor-ca", str(pki_dir() / "root-ca.pem"),
             "--log-file", str(self.log), *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError("the emulator did not start: " + self.process.stderr.read().decode())
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca_bundle = str(directory / "tls" / "ca.pem")
        self.context = ssl.create_default_context(cafile=self.ca_bundle)
        self.arns = self._call("GET", "/_emulator/config")

    def _call(self, method, path, document=None):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=10)
        try:
            body = None if document is None else json.dumps(document).encode()
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            assert response.status == 200, data
            return json.loads(data)
        finally:
            conn.close()

    def stats(self):
        return self._call("GET", "/_emulator/stats")

    def reset(self):
        self._call("POST", "/_emulator/reset")

    def faults(self, *specs):
        self._call("POST", "/_emulator/faults", list(specs))

    def set_clock_offset(self, seconds):
        self._call("POST", "/_emulator/clock", {"offset_seconds": seconds})

    def set_tls_variant(self, variant):
        """What the --tls-fault-listener port presents (needs extra_args=["--tls-fault-listener"])."""
        self._call("POST", "/_emulator/tls", {"variant": variant})

    def issued(self):
        """Credentials of every accepted request, oldest first."""
        return [r["credentials"] for r in self.stats()["recorded"] if r.get("outcome") == "accepted"]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


_generated_pki = None


def pki_dir():
    global _generated_pki
    configured = os.environ.get("RAD_TEST_PKI")
    if configured:
        return Path(configured)
    if _generated_pki is None:
        import tempfile
        _generated_pki = Path(tempfile.mkdtemp(prefix="rad-it-pki-")) / "pki"
        subprocess.run([PYTHON, str(ROOT / "tests" / "support" / "make-test-pki"), str(_generated_pki)],
                       check=True, capture_output=True, timeout=120)
    return _generated_pki


class Agent:
    """Runs the agent binary with a clean environment and a timeout."""

    def __init__(self, emulator):
        self.emulator = emulator
        self.pki = pki_dir()

    def run(self, *args, env=None, timeout=SUBPROCESS_TIMEOUT):
        return subprocess.run([str(AGENT), *map(str, args)], capture_output=True, env=clean_environment(env),
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def identity_args(self, certificate="p256.pem", key="p256.key"):
        args = ["--certificate", self.path(certificate)]
        if key is not None:
            args += ["--private-key", self.path(key)]
        return args

    def path(self, name):
        return name if os.path.isabs(str(name)) else str(self.pki / name)

    def target_args(self, **arns):
        a = dict(self.emulator.arns, **arns)
        return ["--trust-anchor-arn", a["trust_anchor_arn"], "--profile-arn", a["profile_arn"],
                "--role-arn", a["role_arn"], "--endpoint", self.emulator.url, "--ca-bundle",
                self.emulator.ca_bundle]

    def credential_process(self, certificate="p256.pem", key="p256.key", *extra, env=None, arns=None):
        return self.run("credential-process", *self.identity_args(certificate, key), *self.target_args(**(arns or {})),
                        *extra, env=env)

    def command_line(self, certificate="p256.pem", key="p256.key", *extra):
        """The same invocation as one credential_process config line (absolute paths, no quoting needed)."""
        parts = [str(AGENT), "credential-process", *self.identity_args(certificate, key), *self.target_args(), *extra]
        assert all(" " not in p and '"' not in p for p in parts), parts
        return " ".join(parts)


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


@pytest.fixture
def agent(em):
    return Agent(em)


@pytest.fixture(scope="session")
def pki():
    return pki_dir()


@pytest.fixture
def private_copy(tmp_path, pki):
    """Copy a PKI file into the test's directory with the given mode (for permission tests)."""

    def copy(name, mode=0o600):
        target = tmp_path / name
        shutil.copyfile(pki / name, target)
        os.chmod(target, mode)
        return target

    return copy
