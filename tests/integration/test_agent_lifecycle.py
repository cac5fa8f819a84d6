"""The agent's life over time, with the real binary against the emulator: a certificate that expires while the
agent runs is never sent, credentials too short to serve are backed off (not fetched in a loop), a refusal
waits 5-10 minutes even as the credentials run out, a profile that cannot load does not stop the others, a
refused reload says so and changes nothing, and a reload applies new connection limits at once. The engine's
own tables and the 30-day simulation (tests/sim) cover the same rules on a virtual clock; these show the
shell carries them out."""

import datetime
import re
import socket
import time

from radtest import certificates
from radtest.agent import AgentProcess
from radtest.clients import http_call, imds_credentials
from radtest.emulator import create_sessions
from radtest.environment import free_port, wait_until


def field(line, name):
    match = re.search(rf"\b{name}=(\"[^\"]*\"|\S+)", line)
    return match[1].strip('"') if match else None


def test_a_certificate_that_expires_while_the_agent_runs_never_signs(em, pki, tmp_path):
    """The certificate expires a few seconds after the start (plain paths, no renewal): a refresh asked for
    afterwards fails here, with the word "expired", and nothing reaches the service; the credentials held stay
    in service, and status and /healthz say what is wrong."""
    now = certificates.now()
    expires = now + datetime.timedelta(seconds=6)
    certificate, key = certificates.issue_pair(pki, tmp_path, "short", now - datetime.timedelta(hours=1),
                                               expires)
    agent = AgentProcess(tmp_path, em, pki)
    health = free_port()
    agent.agent["health_listen"] = f"127.0.0.1:{health}"
    agent.profile("web", certificate=str(certificate), private_key=str(key))
    agent.start()
    try:
        assert create_sessions(em) == 1
        # The certificate's notAfter is a wall-clock instant: wait for it to pass.
        wait_until(lambda: certificates.now() > expires + datetime.timedelta(seconds=1), 15,
                   what="the certificate to expire")
        result = agent.run("refresh", "--socket", agent.socket_path, "--profile", "web")
        assert result.returncode == 65, result
        assert b"certificate_expired" in result.stdout and b"expired at" in result.stdout, result
        assert create_sessions(em) == 1, "a CreateSession was signed with an expired certificate"
        failed = agent.wait_for_log(r"event=refresh_failed\b.*code=certificate_expired")[-1]
        assert field(failed, "class") == "rejected" and field(failed, "serving") == "last-good", failed
        status = agent.profile_status("web")
        assert status["last_error"]["code"] == "certificate_expired" and status["servable"], status
        text = agent.run("status", "--socket", agent.socket_path).stdout.decode()
        assert "EXPIRED" in text and "renew it soon" not in text, text
        code, _, body = http_call(health, "GET", "/healthz")
        assert code == 503 and "web: last refresh failed (certificate_expired)" in body.decode(), body
        assert imds_credentials(agent.imds_port())[0] == 200, "the credentials held are still served"
    finally:
        assert agent.stop() == 0


def test_credentials_too_short_to_serve_are_backed_off_not_fetched_in_a_loop(em, pki, tmp_path):
    """The service hands out 40-second credentials (a session cut short, or as a host whose clock runs far ahead
    sees an hour's): the agent reports why and waits as after a refusal, instead of calling CreateSession as
    fast as the answers come (2,295 calls in 10 s before)."""
    em.faults(*({"lifetime_seconds": 40} for _ in range(50)))
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.start()
    try:
        failed = agent.wait_for_log(r"event=refresh_failed\b.*code=credentials_too_short")[0]
        assert "is this host's clock ahead" in failed, failed
        assert 300 <= int(field(failed, "retry_in")) <= 600, failed
        calls = create_sessions(em)
        # Clients that keep asking do not hurry it either.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            imds_credentials(agent.imds_port())
            agent.credential_process("web", "--no-fallback")
        assert create_sessions(em) == calls == 1
        status = agent.profile_status("web")
        assert status["last_error"]["code"] == "credentials_too_short" and not status["servable"], status
    finally:
        assert agent.stop() == 0


def test_a_refusal_waits_five_to_ten_minutes_even_as_the_credentials_run_out(em, pki, tmp_path):
    """Credentials of 200 s are refreshed at about half their lifetime; the service refuses: the next attempt is
    5-10 minutes away, not squeezed into the 40 s the credentials have left (29, 14, 7, 3, 1 s apart before)."""
    em.faults({"lifetime_seconds": 200})
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.start()
    try:
        em.faults(*({"status": 403, "message": "not today"} for _ in range(10)))
        agent.request_refresh()
        failed = agent.wait_for_log(r"event=refresh_failed\b.*code=upstream_rejected")[0]
        assert field(failed, "class") == "rejected" and 300 <= int(field(failed, "retry_in")) <= 600, failed
        assert create_sessions(em) == 2  # the first credentials, and the refused refresh
    finally:
        assert agent.stop() == 0


def health_everywhere(agent, health_port):
    """The agent's health as each place that reports it says it: `status` (text and JSON), /livez, /readyz,
    /healthz and /metrics."""
    text = agent.run("status", "--socket", agent.socket_path).stdout.decode()
    metrics = http_call(health_port, "GET", "/metrics")[2].decode()
    gauge = {name: re.search(rf"^rolesanywhere_agent_{name} (\d)$", metrics, re.M)[1]
             for name in ("ready", "healthy")}
    healthz_status, _, healthz_body = http_call(health_port, "GET", "/healthz")
    return {"status": re.search(r"^health: (.*)$", text, re.M)[1], "json": agent.status()["health"],
            "livez": http_call(health_port, "GET", "/livez")[0],
            "readyz": http_call(health_port, "GET", "/readyz")[0],
            "healthz": (healthz_status, healthz_body), "metrics": gauge}


def test_a_profile_that_cannot_load_does_not_stop_the_others(em, pki, tmp_path):
    """A certificate and a key that do not belong together in one profile: the agent starts anyway, serves
    the other profile, and status and /healthz name the broken one. With only broken profiles it exits 78.
    Every place that reports health says the same: ok before, not ready (naming the profile) with it."""
    agent = AgentProcess(tmp_path, em, pki)
    health = free_port()
    agent.agent["health_listen"] = f"127.0.0.1:{health}"
    agent.profile("web")
    agent.start()
    try:
        assert imds_credentials(agent.imds_port("web"))[0] == 200
        assert health_everywhere(agent, health) == {
            "status": "ok", "json": {"ready": True, "healthy": True, "problems": []}, "livez": 200, "readyz": 200,
            "healthz": (200, b"ok\n"), "metrics": {"ready": "1", "healthy": "1"}}
    finally:
        assert agent.stop() == 0
    agent = AgentProcess(tmp_path / "degraded", em, pki)
    agent.agent["health_listen"] = f"127.0.0.1:{health}"
    agent.profile("web")
    agent.profile("broken", certificate=str(pki / "p256.pem"), private_key=str(pki / "rsa2048.key"))
    agent.start()
    try:
        assert imds_credentials(agent.imds_port("web"))[0] == 200
        broken = agent.profile_status("broken")
        assert broken["last_error"]["code"] == "key_cert_mismatch" and not broken["servable"], broken
        assert agent.profile_status("web")["state"] == "fresh"
        code, _, body = http_call(health, "GET", "/healthz")
        assert code == 503 and "broken: nothing to serve (key_cert_mismatch)" in body.decode(), body
        assert "web" not in body.decode()
        reported = health_everywhere(agent, health)
        assert reported == {
            "status": "not ready",
            "json": {"ready": False, "healthy": False, "problems": reported["json"]["problems"]},
            "livez": 200, "readyz": 503, "healthz": (503, body), "metrics": {"ready": "0", "healthy": "0"}}, reported
        assert [p for p in reported["json"]["problems"] if "broken" in p] == reported["json"]["problems"] != []
    finally:
        assert agent.stop() == 0
    alone = AgentProcess(tmp_path / "alone", em, pki)
    alone.profile("broken", certificate=str(pki / "p256.pem"), private_key=str(pki / "rsa2048.key"))
    alone.write_config()
    result = alone.run("serve", "--config", alone.config_path)
    assert result.returncode == 78, result
    assert b"no profile can serve credentials" in result.stderr, result.stderr


def test_a_refused_reload_fails_and_changes_nothing(em, pki, tmp_path):
    """`rolesanywhere-agent reload` (what systemctl reload runs) exits 78 with the file's line when the edited
    configuration is refused, and the agent serves on with the one it had; a good edit is applied."""
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.start()
    try:
        before = imds_credentials(agent.imds_port())[1]["AccessKeyId"]
        good = agent.write_config()
        agent.write_config(good + "\n[profiles.typo]\ncertificat = \"x\"\n")
        result = agent.run("reload", "--socket", agent.socket_path)
        assert result.returncode == 78, result
        assert re.search(rb"agent\.toml:\d+: profiles\.typo", result.stderr), result.stderr
        assert b"configuration in use is kept" in result.stderr, result.stderr
        assert [p["name"] for p in agent.status()["profiles"]] == ["web"]
        assert imds_credentials(agent.imds_port())[1]["AccessKeyId"] == before
        agent.profile("batch")
        agent.write_config()
        result = agent.run("reload", "--socket", agent.socket_path)
        assert result.returncode == 0, result
        assert result.stdout.startswith(b"reloaded: 2 profiles; added batch"), result.stdout
        agent.wait_for_log(r"event=refresh_ok\b.*profile=batch\b")
        assert imds_credentials(agent.imds_port("batch"))[0] == 200
    finally:
        assert agent.stop() == 0


def test_a_reload_applies_new_connection_limits_at_once(em, pki, tmp_path):
    """max_connections is applied at once, as the reload table says: after a reload to 1, a second client makes
    the idle first one go (the connection that waited longest makes room)."""
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.start()
    try:
        agent.agent["max_connections"] = 1
        agent.write_config()
        assert agent.run("reload", "--socket", agent.socket_path).returncode == 0
        idle = socket.create_connection(("127.0.0.1", agent.imds_port()), timeout=5)
        try:
            assert http_call(agent.imds_port(), "PUT", "/latest/api/token",
                             headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})[0] == 200
            idle.settimeout(5)
            assert idle.recv(1) == b"", "the idle connection was kept beyond max_connections = 1"
        finally:
            idle.close()
    finally:
        assert agent.stop() == 0
