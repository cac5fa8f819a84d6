"""Fixtures for the fault suite (tests/faults, CTest label `faults`).

The emulator, the PKI and the agent harness are the shared ones (tests/support/radtest). The one difference:
this suite's emulator also runs the TLS fault listener (--tls-fault-listener). Each test prints its figures; they are
collected here and shown in pytest's summary, so that `ctest -L faults -V` shows them.
"""

import os
import sys

import pytest

from radtest.emulator import Emulator
from radtest.environment import AGENT

FIGURES = []


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    if not AGENT.is_file():
        pytest.fail(f"agent binary {AGENT} not found; build the rolesanywhere-agent target or set RAD_AGENT_BIN")
    instance = Emulator(tmp_path_factory.mktemp("emulator"), extra_args=["--tls-fault-listener"])
    yield instance
    instance.stop()


@pytest.fixture
def figure():
    """figure("F4: delays ...") records one line for the summary (and prints it, for -s runs)."""

    def record(line):
        FIGURES.append(line)
        print(line, file=sys.stderr)

    return record


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("fault suite figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
    if os.environ.get("RAD_FAULT_FIGURES"):
        with open(os.environ["RAD_FAULT_FIGURES"], "a") as f:
            f.writelines(line + "\n" for line in FIGURES)
