"""Fixtures for the load suite (tests/load, CTest label `load`): the real agent under wrk, slowhttptest and
thousands of sockets, against tests/emulator/ra_emulator.py.

The emulator, the test PKI and the agent harness are the integration tests' (tests/integration/conftest.py,
loaded here under its own module name so that the two conftest modules do not collide, and
tests/integration/agent_support.py). CTest passes RAD_AGENT_BIN, RAD_TEST_PKI, RAD_EMULATOR, RAD_PYTHON and
RAD_LOAD_SECONDS (tests/load/CMakeLists.txt).
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from suite_support import adopt  # noqa: E402

# The integration fixtures under the same names: emulator (session), em (reset per test), pki; AGENT and
# clean_environment for agent_support, which takes them `from conftest` (this module).
_integration = adopt(globals(), "AGENT", "Emulator", "pki_dir", "clean_environment", "emulator", "em", "pki")
AGENT = _integration.AGENT


@pytest.fixture
def report(request):
    """report(test_id, {figure: value}) prints one block of figures past pytest's capture (ctest -V shows it)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def emit(test_id, figures):
        lines = [f"[{test_id}] " + ", ".join(f"{k}={v}" for k, v in figures.items())]
        with capture.global_and_fixture_disabled():
            sys.stderr.write("\n" + "\n".join(lines) + "\n")
            sys.stderr.flush()

    return emit


@pytest.fixture(scope="session")
def load_seconds():
    """How long each wrk run lasts: the plan's 60 s is RAD_LOAD_SECONDS=60; CI uses 10 s."""
    return int(os.environ.get("RAD_LOAD_SECONDS") or 10)
