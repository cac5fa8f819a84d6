"""The IAM Roles Anywhere emulator (tests/emulator/ra_emulator.py) as a running process: its URL, CA bundle
and ARNs, its control endpoints (faults, clock, statistics), and what it issued."""

import http.client
import json
import ssl
import subprocess
import time

from radtest import processes
from radtest.environment import EMULATOR, PYTHON, pki_dir


class Emulator:
    """A running ra_emulator.py: its URL, CA bundle and ARNs, and its control endpoints."""

    def __init__(self, directory, extra_args=()):
        self.directory = directory
        self.log = directory / "emulator.log"
        port_file = directory / "port"
        self.process = processes.spawn(
            "emulator",
            [PYTHON, str(EMULATOR), "--listen", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
             "--tls-dir", str(directory / "tls"), "--trust-anchor-ca", str(pki_dir() / "root-ca.pem"),
             "--log-file", str(self.log), *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                processes.end(self.process)
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

    def set_quota(self, rate, burst=None, retry_after=None):
        """The CreateSession quota: `rate` calls per second, a bucket of `burst` (full from now on), and
        Retry-After on throttled answers; rate None lifts it. A reset keeps it."""
        self._call("POST", "/_emulator/quota", {"rate": rate, "burst": burst, "retry_after": retry_after})

    def quota(self):
        """The quota's settings, its accepted and throttled counts, and every call it saw (stats["quota"])."""
        return self._call("GET", "/_emulator/quota")

    def issued(self):
        """Credentials of every accepted request, oldest first."""
        return [r["credentials"] for r in self.stats()["recorded"] if r.get("outcome") == "accepted"]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            processes.end(self.process)


def create_sessions(emulator):
    """How many CreateSession requests the emulator has received since its last reset."""
    return emulator.stats()["requests"]


def last_issued(emulator):
    """The credentials of the last accepted CreateSession, as the emulator issued them."""
    issued = emulator.issued()
    assert issued, "the emulator issued no credentials"
    return issued[-1]
