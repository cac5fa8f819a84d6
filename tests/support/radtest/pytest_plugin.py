"""The fixtures every suite shares, loaded by tests/conftest.py (`pytest_plugins`).

- emulator (session): ra_emulator.py on a free port; em: the same, reset (faults, statistics) for the test;
- agent: Agent, the agent's one-shot commands against the emulator; pki (session): the test PKI's directory;
- private_copy: a PKI file copied into the test's directory with a given mode;
- live (module): one `serve` with the profile `web` (IMDS, ECS, the Unix socket), for the suites that attack
  one running agent with many requests (badinput, secrets);
- nothing_left_running (every test): whatever agent or emulator the test started and left running is killed,
  and the test fails saying so.

A suite's conftest.py may override any of them (the fault suite's emulator also runs the TLS fault listener).
"""

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from radtest import processes
from radtest.agent import Agent, AgentProcess
from radtest.emulator import Emulator
from radtest.environment import AGENT, pki_dir


def pytest_configure(config):
    # A run stopped by SIGTERM (`timeout`, a supervisor) ends what it started before it goes.
    processes.end_everything_on(signal.SIGTERM)


@pytest.fixture(autouse=True)
def nothing_left_running():
    """After the test and its own fixtures: any process it started through radtest.processes that still runs
    (or left something running in its process group) is killed, and the test fails. Processes of fixtures of a
    wider scope were started before this fixture, so they are not the test's."""
    since = processes.mark()
    yield
    left = processes.end_left_running(since)
    if left:
        pytest.fail("the test left running, now killed: " + "; ".join(left), pytrace=False)


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
