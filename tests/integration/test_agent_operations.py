"""The agent's operational life on one host: a second agent, reloads that change little, shared token files,
failing surfaces, refused socket peers and sockets passed in by systemd. Each test is the reproduction of a
problem an operator would meet; every wait is bounded.
"""

import subprocess

from agent_support import AgentProcess, create_sessions, started_agent
from conftest import AGENT


def test_a_second_agent_on_the_same_socket_is_refused(em, pki, tmp_path):
    """The second agent exits 78 with one line naming the socket; the first one's fast path keeps working,
    also after the second agent is gone (it must not remove a socket it did not bind)."""
    first = started_agent(tmp_path / "first", em, pki)
    try:
        second = AgentProcess(tmp_path / "second", em, pki)
        second.profile("web")
        second.agent["socket_path"] = str(first.socket_path)
        second.write_config()
        result = subprocess.run([str(AGENT), "serve", "--config", str(second.config_path)],
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
        assert result.returncode == 78, result.stderr
        assert str(first.socket_path) in result.stderr and "another agent is listening" in result.stderr
        assert first.socket_path.is_socket()
        served = first.credential_process("web", "--no-fallback")
        assert served.returncode == 0, served.stderr
        assert create_sessions(em) == 1
    finally:
        assert first.stop() == 0
    assert not first.socket_path.exists(), "the agent left its own socket behind"

