"""Fixtures for the systemd tests: the agent run the way systemd runs it, without systemd as PID 1.

The emulator, the test PKI, their fixtures and the agent harness (configuration, process, HTTP clients) are the
shared ones (tests/support/radtest). What stays here is systemd's own: short socket directories, the
receiving end of $NOTIFY_SOCKET and the `agent_process` fixture. CTest passes RAD_AGENT_BIN, RAD_TEST_PKI, RAD_EMULATOR, RAD_PYTHON, RAD_SOURCE_DIR,
RAD_BUILD_DIR, RAD_CPACK and RAD_VERSION (tests/systemd/CMakeLists.txt). Every wait is bounded.
"""

import os
import shutil
import socket
import tempfile
import time
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


class NotifySocket:
    """The receiving end of sd_notify(): every datagram's text, in order. Descriptors sent along (FDSTORE=1)
    are handed to keep_fds, which closes them; a subclass that plays systemd's descriptor store keeps them."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages = []

    def receive(self, timeout):
        """Read one datagram, waiting up to `timeout` seconds; None when none came."""
        self.sock.settimeout(timeout)
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, 4096, 4)
        except socket.timeout:
            return None
        message = data.decode()
        self.messages.append(message)
        self.keep_fds(message, fds)
        return message

    def keep_fds(self, message, fds):
        for fd in fds:
            os.close(fd)

    def wait_for(self, predicate, timeout, what):
        """Receive until `predicate(message)` holds for a new message; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s; received {self.messages}")
            message = self.receive(left)
            if message is not None and predicate(message):
                return message

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(short_dir):
    receiver = NotifySocket(short_dir / "notify")
    yield receiver
    receiver.close()
