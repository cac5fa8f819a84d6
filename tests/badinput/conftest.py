"""Fixtures for the bad-input suite: one live agent per test module, attacked with raw sockets.

The emulator, the test PKI and their fixtures are the integration tests' (tests/integration/conftest.py, loaded
under its own module name so that the conftest modules do not collide), and so is the agent harness
(tests/integration/agent_support.py). What stays here: the `live` agent (IMDS + ECS + Unix socket, started once
per module) and the raw-socket client in rawhttp.py. CTest passes RAD_AGENT_BIN, RAD_TEST_PKI, RAD_EMULATOR and
RAD_PYTHON (tests/badinput/CMakeLists.txt). Every wait is bounded.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(Path(__file__).resolve().parent)]
from suite_support import adopt  # noqa: E402

# The integration fixtures under the same names; AGENT and clean_environment before the agent_support import
# below, which takes them `from conftest` (this module).
_integration = adopt(globals(), "AGENT", "PYTHON", "clean_environment", "emulator", "em", "agent", "pki",
                     "private_copy")
AGENT = _integration.AGENT
PYTHON = _integration.PYTHON
private_copy = _integration.private_copy
from agent_support import AgentProcess  # noqa: E402


@pytest.fixture(scope="module")
def live(emulator, pki):
    """One `serve --config` per test module: profile `web` on its own IMDS port, the ECS endpoint with a token
    file, and the Unix socket (in a short directory: AF_UNIX paths are limited to 107 bytes). Debug logging, so
    that every refused request has had its chance to reach the log."""
    directory = Path(tempfile.mkdtemp(prefix="rad-bi-", dir="/tmp"))
    os.chmod(directory, 0o700)
    emulator.reset()
    process = AgentProcess(directory, emulator, pki)
    process.profile("web")
    process.start()
    yield process
    try:
        assert process.stop() == 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)
