"""The surroundings of every suite: the programs under test, the test PKI, the environment subprocesses get,
free ports and bounded waits.

CTest passes RAD_AGENT_BIN, RAD_TEST_PKI, RAD_EMULATOR and RAD_PYTHON (the suites' CMakeLists.txt). Run by
hand, the defaults are build/daemon/rolesanywhere-agent and a PKI generated into a temporary directory.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
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


_generated_pki = None


def pki_dir():
    """RAD_TEST_PKI (made absolute: tests link to its files from elsewhere), or a PKI made once per test process
    by tests/support/make-test-pki."""
    global _generated_pki
    configured = os.environ.get("RAD_TEST_PKI")
    if configured:
        return Path(configured).absolute()
    if _generated_pki is None:
        _generated_pki = Path(tempfile.mkdtemp(prefix="rad-it-pki-")) / "pki"
        subprocess.run([PYTHON, str(ROOT / "tests" / "support" / "make-test-pki"), str(_generated_pki)],
                       check=True, capture_output=True, timeout=120)
    return _generated_pki


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, interval=0.1, what="the condition"):
    """Poll `predicate` until it returns a true value (returned) or `timeout` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(interval)


def replace_file(source, target, mode):
    """Put a copy of `source` at `target` by an atomic rename, as a certificate manager would."""
    temporary = target.with_name(target.name + ".new")
    shutil.copyfile(source, temporary)
    os.chmod(temporary, mode)
    os.replace(temporary, target)
