"""Fixtures for the fault suite (tests/faults, CTest label `faults`).

The emulator, the PKI and the agent harness are the integration suite's (tests/integration/conftest.py, loaded
here under its own module name, and tests/integration/agent_support.py). The one difference: this suite's
emulator also runs the TLS fault listener (--tls-fault-listener). Each test prints its figures; they are
collected here and shown in pytest's summary, so that `ctest -L faults -V` shows them.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(Path(__file__).resolve().parent)]
from suite_support import adopt  # noqa: E402

# The integration fixtures (em, agent, pki, ...) under the same names; AGENT and clean_environment before
# anything imports agent_support, which takes them `from conftest` (this module).
_integration = adopt(globals(), "AGENT", "PYTHON", "Emulator", "pki_dir", "clean_environment", "em", "agent", "pki")
AGENT = _integration.AGENT
Emulator = _integration.Emulator

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
