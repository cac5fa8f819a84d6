"""Fixtures for the systemd tests: the agent run the way systemd runs it, without systemd as PID 1.

The emulator, the test PKI, their fixtures and the agent harness (configuration, process, HTTP clients) are the
shared ones (tests/support/radtest). What stays here is systemd's own: short socket directories and the
`agent_process` fixture. CTest passes RAD_AGENT_BIN, RAD_TEST_PKI, RAD_EMULATOR, RAD_PYTHON, RAD_SOURCE_DIR,
RAD_BUILD_DIR, RAD_CPACK and RAD_VERSION (tests/systemd/CMakeLists.txt). Every wait is bounded.
"""

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from radtest.agent import AgentProcess

ROOT = Path(os.environ.get("RAD_SOURCE_DIR") or Path(__file__).resolve().parents[2])
BUILD = Path(os.environ.get("RAD_BUILD_DIR") or ROOT / "build")
UNIT_DIR = ROOT / "systemd"


@pytest.fixture
def short_dir():
    """A directory under /tmp with a short path: AF_UNIX socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="rad-sd-", dir="/tmp"))
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def port_is_closed(port):
    """True when nothing accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def agent_process(em, pki, tmp_path):
    """agent_process(directory=tmp_path, **overrides): an AgentProcess with the one profile `web` (overrides
    applied) against the emulator, not yet started; every one made is stopped at the end of the test."""
    made = []

    def make(directory=None, **overrides):
        agent = AgentProcess(directory or tmp_path, em, pki)
        agent.profile("web", **overrides)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        if agent.running():
            agent.stop()
