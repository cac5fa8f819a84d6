"""Signals and rotation: SIGHUP reloads the configuration (a broken one is refused and the old one kept),
SIGTERM stops cleanly, and a certificate/key pair replaced on disk is picked up at the next refresh (a key that
does not match is refused while the last good credentials stay in service).
"""

import json
import signal

from radtest.agent import AgentProcess, renewable_agent, started_agent
from radtest.clients import imds_credentials, same_credentials
from radtest.emulator import create_sessions
from radtest.environment import free_port, replace_file, wait_until

TIMEOUT = 20


def serials(pki):
    return json.loads((pki / "serials.json").read_text())


def served(agent, name="web"):
    try:
        status, body = imds_credentials(agent.imds_port(name))
    except OSError:
        return None
    return body if status == 200 else None


def test_sighup_adds_a_profile_with_its_own_listener(em, pki, tmp_path):
    agent = started_agent(tmp_path, em, pki)
    try:
        web_before = served(agent, "web")
        assert web_before is not None
        agent.profile("api")
        agent.write_config()
        agent.signal(signal.SIGHUP)
        agent.wait_for_log(r"event=reloaded\b", timeout=TIMEOUT)
        body = wait_until(lambda: served(agent, "api"), TIMEOUT, what="the new profile's IMDS listener")
        assert any(same_credentials(c, body["AccessKeyId"], body["SecretAccessKey"], body["Token"])
                   for c in em.issued())
        assert served(agent, "web") is not None
        names = [p["name"] for p in agent.status()["profiles"]]
        assert names == ["web", "api"]
    finally:
        assert agent.stop() == 0


def test_sighup_with_a_broken_config_keeps_the_old_one(em, pki, tmp_path):
    agent = started_agent(tmp_path, em, pki)
    try:
        before = served(agent, "web")
        assert before is not None
        good = agent.config_path.read_text()
        agent.write_config(good + "\n[profiles.broken\nthis is not TOML\n")
        agent.signal(signal.SIGHUP)
        line = agent.wait_for_log(r"event=reload_failed\b", timeout=TIMEOUT)[0]
        assert str(agent.config_path) in line, line
        assert agent.running()
        assert served(agent, "web")["AccessKeyId"] == before["AccessKeyId"]
        assert [p["name"] for p in agent.status()["profiles"]] == ["web"]
        # The agent still works on the old configuration: a good file is accepted afterwards.
        agent.write_config(good)
        agent.signal(signal.SIGHUP)
        agent.wait_for_log(r"event=reloaded\b", timeout=TIMEOUT)
        assert agent.running()
    finally:
        assert agent.stop() == 0


def test_sigterm_exits_0_and_removes_the_socket(em, pki, tmp_path):
    agent = started_agent(tmp_path, em, pki)
    assert agent.socket_path.exists()
    agent.signal(signal.SIGTERM)
    assert agent.process.wait(timeout=15) == 0, agent.log()
    agent.stop()
    assert not agent.socket_path.exists()
    assert agent.log_lines("stopped"), agent.log()
    result = agent.credential_process("web", "--no-fallback")
    assert result.returncode == 69, result


def test_rotated_certificate_is_used_at_the_next_refresh(em, pki, tmp_path):
    agent, certificate, key = renewable_agent(tmp_path, em, pki)
    try:
        first = em.stats()["recorded"][0]
        assert first["serial"] == serials(pki)["p256"]
        replace_file(pki / "rsa2048.pem", certificate, 0o644)
        replace_file(pki / "rsa2048.key", key, 0o600)
        # No SIGHUP: a fast-path client that needs more life than the cache has makes the agent refresh, and
        # the refresh notices the changed files by itself.
        result = agent.credential_process("web", "--no-fallback", "--min-lifetime", "3650")
        assert result.returncode == 0, result.stderr.decode()
        recorded = em.stats()["recorded"]
        assert len(recorded) == 2
        assert recorded[1]["outcome"] == "accepted", recorded[1]
        assert recorded[1]["serial"] == serials(pki)["rsa2048"]
        assert recorded[1]["algorithm"] == "AWS4-X509-RSA-SHA256"
        assert json.loads(result.stdout)["AccessKeyId"] == recorded[1]["credentials"]["accessKeyId"]
        assert agent.profile_status("web")["certificate"]["serial"] == serials(pki)["rsa2048"]
        assert any(serials(pki)["rsa2048"] in line for line in agent.log_lines("identity_loaded")), agent.log()
    finally:
        assert agent.stop() == 0


def test_mismatched_key_is_refused_and_last_good_credentials_stay(em, pki, tmp_path):
    agent, certificate, key = renewable_agent(tmp_path, em, pki)
    try:
        before = served(agent, "web")
        assert before is not None
        replace_file(pki / "mismatch.key", key, 0o600)
        agent.signal(signal.SIGHUP)
        agent.wait_for_log(r"event=refresh_failed\b", timeout=10)
        status = agent.profile_status("web")
        assert status["last_error"]["code"] == "key_cert_mismatch", status
        assert status["state"] == "stale", status
        assert create_sessions(em) == 1, "a refresh with a mismatched key reached the service"
        after = served(agent, "web")
        assert after is not None and after["AccessKeyId"] == before["AccessKeyId"]
        assert after["Token"] == before["Token"]
        assert agent.running()
    finally:
        assert agent.stop() == 0


def test_serve_with_the_reference_helpers_flags(em, pki, tmp_path):
    """`serve` with the reference helper's flags: one profile on IMDS at 127.0.0.1:PORT; SIGHUP re-reads the
    certificate and key files; SIGTERM exits 0."""
    identity = tmp_path / "identity"
    identity.mkdir()
    certificate, key = identity / "leaf.pem", identity / "leaf.key"
    replace_file(pki / "p256.pem", certificate, 0o644)
    replace_file(pki / "p256.key", key, 0o600)
    agent = AgentProcess(tmp_path / "agent", em, pki)
    port = free_port()
    agent.start("--certificate", certificate, "--private-key", key,
                "--trust-anchor-arn", em.arns["trust_anchor_arn"], "--profile-arn", em.arns["profile_arn"],
                "--role-arn", em.arns["role_arn"], "--endpoint", em.url, "--ca-bundle", em.ca_bundle,
                "--port", port, "--hop-limit", 1)
    try:
        status, body = imds_credentials(port)
        assert status == 200, body
        assert same_credentials(em.issued()[0], body["AccessKeyId"], body["SecretAccessKey"], body["Token"])
        replace_file(pki / "rsa2048.pem", certificate, 0o644)
        replace_file(pki / "rsa2048.key", key, 0o600)
        agent.signal(signal.SIGHUP)
        wait_until(lambda: len(em.issued()) == 2, TIMEOUT, what="a refresh after SIGHUP")
        assert em.stats()["recorded"][-1]["serial"] == serials(pki)["rsa2048"]
        body = wait_until(lambda: (lambda r: r[1] if r[0] == 200 and r[1]["AccessKeyId"] ==
                                   em.issued()[1]["accessKeyId"] else None)(imds_credentials(port)),
                          TIMEOUT, what="the new credentials on IMDS")
        assert body["Token"] == em.issued()[1]["sessionToken"]
    finally:
        assert agent.stop() == 0


def test_sighup_refreshes_only_what_changed(em, pki, tmp_path):
    """Configuration management rewrites files and sends SIGHUP across a fleet: a reload that changes nothing
    costs no CreateSession, and one that changes one profile's CreateSession settings refreshes that profile
    only. A change to how a profile is served (its IMDS port) reopens the listener without a refresh."""
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.profile("api")
    agent.start()
    try:
        assert create_sessions(em) == 2
        web_before, api_before = served(agent, "web"), served(agent, "api")

        agent.write_config()  # the same settings, rewritten
        agent.signal(signal.SIGHUP)
        agent.wait_for_log(r"event=reloaded\b.*refreshed=0", timeout=TIMEOUT)
        assert create_sessions(em) == 2, "an unchanged reload called CreateSession"

        agent.profiles["api"]["session_duration"] = 1800
        agent.profiles["web"]["imds_listen"] = f"127.0.0.1:{free_port()}"
        agent.write_config()
        agent.signal(signal.SIGHUP)
        agent.wait_for_log(r"event=reloaded\b.*refreshed=1", timeout=TIMEOUT)
        agent.wait_for_log(r"event=refresh_ok\b.*profile=api\b.*reason=reload", timeout=TIMEOUT)
        assert create_sessions(em) == 3
        web_after = wait_until(lambda: served(agent, "web"), TIMEOUT, what="web on its new IMDS port")
        assert web_after["AccessKeyId"] == web_before["AccessKeyId"], "web was refreshed by a listener change"
        assert served(agent, "api")["AccessKeyId"] != api_before["AccessKeyId"]
    finally:
        assert agent.stop() == 0


def test_a_profile_removed_while_its_refresh_is_in_flight(em, pki, tmp_path):
    """A reload removes a profile whose CreateSession is still in flight: the profile is
    dropped on the event loop, the late completion is ignored, and the agent serves the other profile and stops
    cleanly. Run under ThreadSanitizer by the test command (scripts/test-all), which reports any race on the
    way."""
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.profile("api")
    agent.start()
    try:
        assert create_sessions(em) == 2
        em.faults({"delay_ms": 3000})
        agent.request_refresh("api")
        wait_until(lambda: create_sessions(em) >= 3, TIMEOUT, what="the delayed CreateSession to arrive")
        del agent.profiles["api"]
        agent.write_config()
        agent.signal(signal.SIGHUP)
        agent.wait_for_log(r"event=profile_removed\b.*profile=api\b", timeout=TIMEOUT)
        wait_until(lambda: em.stats()["accepted"] >= 3, TIMEOUT, what="the delayed CreateSession to end")
        assert served(agent, "web") is not None
        assert [p["name"] for p in agent.status()["profiles"]] == ["web"]
        assert not [line for line in agent.log_lines("refresh_(ok|failed)") if "profile=api" in line
                    and "reason=command" in line], "the removed profile's refresh was still completed"
    finally:
        assert agent.stop() == 0
