"""The agent's operational life on one host: a second agent, reloads that change little, shared token files,
failing surfaces, refused socket peers and sockets passed in by systemd. Each test is the reproduction of a
problem an operator would meet; every wait is bounded.
"""

import json
import os
import re
import socket
import subprocess

from radtest.agent import AgentProcess, renewable_agent, started_agent
from radtest.clients import ecs_credentials, http_call
from radtest.emulator import create_sessions
from radtest.environment import AGENT, free_port, replace_file


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


def health(port, path):
    status, _, body = http_call(port, "GET", path, {"Host": f"127.0.0.1:{port}"})
    return status, body.decode()


def test_a_failing_credentials_file_shows_everywhere_and_is_retried(em, pki, tmp_path):
    """A credentials file the agent cannot write is not only a log line: status, /healthz and /metrics say so
    while it fails, the write is retried, and once the file can be written again it holds the credentials in
    service and every surface says ok."""
    credentials_file = tmp_path / "aws" / "credentials"
    agent = AgentProcess(tmp_path / "agent", em, pki)
    health_port = free_port()
    agent.agent["health_listen"] = f"127.0.0.1:{health_port}"
    agent.profile("web", credentials_file_profile="web", credentials_file=str(credentials_file))
    agent.start()
    try:
        agent.wait_for_log(r"event=credentials_file_written\b")
        assert health(health_port, "/healthz")[0] == 200
        # The disk refuses the next write: the file's name is taken by a directory.
        credentials_file.unlink()
        credentials_file.mkdir()
        agent.request_refresh()
        line = agent.wait_for_log(r"event=surface_failed\b.*surface=credentials_file")[0]
        assert "code=input_invalid" in line and "retry_in=" in line, line
        errors = agent.profile_status("web")["surface_errors"]
        assert [e["surface"] for e in errors] == ["credentials_file"] and errors[0]["failures"] >= 1, errors
        status, body = health(health_port, "/healthz")
        assert status == 503 and "web: credentials_file failing (input_invalid)" in body, body
        metrics = health(health_port, "/metrics")[1]
        assert 'rolesanywhere_agent_surface_up{profile="web",surface="credentials_file"} 0' in metrics
        assert agent.profile_status("web")["state"] == "fresh", "the credentials themselves are fine"
        # Fixed on disk: the retry writes what the agent holds now, and everything says ok again.
        credentials_file.rmdir()
        agent.wait_for_log(r"event=surface_recovered\b.*surface=credentials_file", timeout=30)
        assert em.issued()[-1]["secretAccessKey"] in credentials_file.read_text()
        assert "surface_errors" not in agent.profile_status("web")
        assert health(health_port, "/healthz")[0] == 200
        metrics = health(health_port, "/metrics")[1]
        assert 'rolesanywhere_agent_surface_up{profile="web",surface="credentials_file"} 1' in metrics
    finally:
        assert agent.stop() == 0


def test_a_credentials_file_that_cannot_be_written_is_refused_at_start(em, pki, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    agent = AgentProcess(tmp_path / "agent", em, pki)
    agent.profile("web", credentials_file_profile="web", credentials_file=str(blocker / "credentials"))
    agent.write_config()
    result = agent.run("serve", "--config", agent.config_path)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 78, lines
    assert any("profiles.web: credentials file" in line and str(blocker) in line for line in lines), lines
    assert create_sessions(em) == 0


def test_a_start_that_cannot_listen_leaves_no_token_file(em, pki, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        agent = AgentProcess(tmp_path, em, pki)
        agent.profile("web", imds_listen=f"127.0.0.1:{taken.getsockname()[1]}")
        agent.write_config()
        result = agent.run("serve", "--config", agent.config_path)
    assert result.returncode == 78, result.stderr
    assert not agent.ecs_token_file().exists(), "a failed start left its token file behind"


def test_a_token_file_shared_with_a_group_is_accepted(em, pki, tmp_path):
    """An ECS token provisioned for a group of clients (0640) is used, not refused; one others may read is."""
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    token_file = agent.ecs_token_file()
    token_file.write_text("a-token-shared-with-the-clients-group\n")
    os.chmod(token_file, 0o640)
    agent.start()
    try:
        status, body = ecs_credentials(agent.ecs_url(), "a-token-shared-with-the-clients-group")
        assert status == 200, body
    finally:
        assert agent.stop() == 0
    os.chmod(token_file, 0o644)
    agent.write_config()
    result = agent.run("serve", "--config", agent.config_path)
    assert result.returncode == 78 and b"chmod 640" in result.stderr, result.stderr


def test_a_renewal_whose_key_arrives_after_its_certificate_is_picked_up_at_once(em, pki, tmp_path):
    """The new certificate lands first: the refresh refuses the mismatched pair (key_cert_mismatch, a backoff
    of minutes) and the credentials in service stay. When the matching key lands, the agent sees the file
    change within about a second and refreshes with the new pair, not after that backoff."""
    agent, certificate, key = renewable_agent(tmp_path, em, pki)
    try:
        replace_file(pki / "rsa2048.pem", certificate, 0o644)
        agent.request_refresh()
        failed = agent.wait_for_log(r"event=refresh_failed\b")[0]
        assert "code=key_cert_mismatch" in failed and int(re.search(r"retry_in=(\d+)", failed)[1]) >= 300, failed
        replace_file(pki / "rsa2048.key", key, 0o600)
        ok = agent.wait_for_log(r"event=refresh_ok\b.*reason=rotation", timeout=10)[-1]
        assert create_sessions(em) == 2, ok
        assert em.stats()["recorded"][-1]["algorithm"] == "AWS4-X509-RSA-SHA256"
    finally:
        assert agent.stop() == 0


def test_refresh_runs_a_refresh_now_and_says_how_it_went(em, pki, tmp_path):
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.profile("api")
    agent.start()
    try:
        assert create_sessions(em) == 2
        result = agent.run("refresh", "--socket", agent.socket_path, "--profile", "web")
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(r"web: refreshed, credentials …\w{4} expire \S+Z\n", result.stdout.decode()), result.stdout
        assert create_sessions(em) == 3
        agent.wait_for_log(r"event=refresh_ok\b.*profile=web\b.*reason=command")
        # Every profile, one after the other; a refused refresh is reported with its own exit code.
        em.faults({"status": 403, "message": "AccessDeniedException (injected)"})
        result = agent.run("refresh", "--socket", agent.socket_path)
        lines = result.stdout.decode().splitlines()
        assert result.returncode == 77, (lines, result.stderr)
        assert lines[0].startswith("web: failed: upstream_rejected:") and lines[1].startswith("api: refreshed"), lines
        assert create_sessions(em) == 5
        missing = agent.run("refresh", "--socket", agent.socket_path, "--profile", "db")
        assert missing.returncode == 64 and b'no profile named "db"' in missing.stderr, missing.stderr
    finally:
        assert agent.stop() == 0
    gone = agent.run("refresh", "--socket", agent.socket_path)
    assert gone.returncode == 69 and gone.stderr.decode().count("\n") == 1, gone.stderr


def test_json_logs_carry_numbers_as_numbers_and_the_reason_of_each_refresh(em, pki, tmp_path):
    agent = AgentProcess(tmp_path, em, pki)
    agent.agent["log_format"] = "json"
    agent.profile("web")
    agent.start(wait_started=False)
    try:
        lines = agent.wait_for_log(r'"event":"refresh_ok"')
        event = json.loads(lines[0])
        assert event["reason"] == "startup" and isinstance(event["next_refresh_in"], int), event
        assert event["time"].endswith("Z"), event  # not under journald: a timestamp of its own
        assert isinstance(json.loads(agent.wait_for_log(r'"event":"started"')[0])["profiles"], int)
    finally:
        assert agent.stop() == 0
