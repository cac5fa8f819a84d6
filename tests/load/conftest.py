"""Fixtures for the load suite (tests/load, CTest label `load`): the real agent under wrk, slowhttptest and
thousands of sockets, against tests/emulator/ra_emulator.py.

The emulator, the test PKI and the agent harness are the shared ones (tests/support/radtest). CTest passes
RAD_AGENT_BIN, RAD_TEST_PKI, RAD_EMULATOR, RAD_PYTHON and RAD_LOAD_SECONDS (tests/load/CMakeLists.txt).
"""

import os
import sys

import pytest


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
