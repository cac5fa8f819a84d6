"""The agent against a failing Roles Anywhere: it keeps running, answers 503 while it has nothing, retries with
backoff, never serves a broken or expired answer, and reports a rejection in its status.
"""

import json
import socket
import threading
import time

from radtest.agent import AgentProcess, started_agent
from radtest.clients import ecs_credentials, imds_credentials, same_credentials
from radtest.emulator import create_sessions
from radtest.environment import wait_until

CREDENTIALS_TIMEOUT = 30


def assert_unavailable(status, body):
    """The surfaces' answer when there is nothing to serve: 503 with a JSON {"Code", "Message"}."""
    assert status == 503, (status, body)
    assert isinstance(body, dict), body
    assert body.get("Code") and body.get("Message"), body
    assert "AccessKeyId" not in body and "Token" not in body


def served_credentials(agent):
    status, body = imds_credentials(agent.imds_port("web"))
    return body if status == 200 else None


def test_start_while_the_service_fails_then_recover(em, pki, tmp_path):
    # Three 500s, each after 1.5 s: the 503 window below is at least that long whatever the backoff jitter.
    em.faults({"delay_ms": 1500, "count": 3}, {"status": 500, "count": 3})
    agent = started_agent(tmp_path, em, pki)  # returns after the first refresh_failed
    try:
        assert agent.running()
        assert agent.log_lines("refresh_failed"), agent.log()
        assert_unavailable(*imds_credentials(agent.imds_port("web")))
        token = agent.ecs_token_file("web").read_text()
        assert_unavailable(*ecs_credentials(agent.ecs_url("web"), token))
        assert agent.profile_status("web")["state"] in ("starting", "failing")

        body = wait_until(lambda: served_credentials(agent), CREDENTIALS_TIMEOUT, what="credentials after 3 x 500")
        assert create_sessions(em) == 4
        issued = em.issued()
        assert len(issued) == 1
        assert same_credentials(issued[0], body["AccessKeyId"], body["SecretAccessKey"], body["Token"])
        failures = agent.log_lines("refresh_failed")
        assert len(failures) == 3, failures
        assert all("class=retryable" in line for line in failures), failures
        assert agent.profile_status("web")["state"] == "fresh"
        status, ecs = ecs_credentials(agent.ecs_url("web"), token)
        assert status == 200 and ecs["AccessKeyId"] == issued[0]["accessKeyId"]
    finally:
        assert agent.stop() == 0


def test_broken_answers_are_never_served(em, pki, tmp_path):
    """A truncated JSON answer, an empty credentialSet and an expiration in the past are each refused; what
    the clients see meanwhile is a 503, and the first good answer is what they get."""
    em.faults({"malformed_json": True}, {"empty_credential_set": True}, {"expired": True})
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                seen.append(imds_credentials(agent.imds_port("web")))
            except (OSError, AssertionError):
                pass  # not listening yet
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    agent.start(wait_refresh=False)
    watcher.start()
    try:
        wait_until(lambda: any(status == 200 for status, _ in seen), CREDENTIALS_TIMEOUT,
                   what="credentials after the broken answers")
        stop.set()
        watcher.join(timeout=10)
        outcomes = [r.get("outcome") for r in em.stats()["recorded"]]
        assert outcomes[:3] == ["fault:malformed_json", "fault:empty_credential_set", "accepted"], outcomes
        issued = em.issued()
        expired, good = issued[0], issued[-1]
        assert len(issued) == 2 and expired["expiration"] < good["expiration"], issued
        for status, body in seen:
            if status == 200:
                assert same_credentials(good, body["AccessKeyId"], body["SecretAccessKey"], body["Token"]), body
                assert body["AccessKeyId"] != expired["accessKeyId"]
            else:
                assert_unavailable(status, body)
        assert served_credentials(agent)["AccessKeyId"] == good["accessKeyId"]
    finally:
        stop.set()
        assert agent.stop() == 0


def test_rejected_role_is_reported_and_nothing_is_served(em, pki, tmp_path):
    wrong_role = em.arns["role_arn"].rsplit("/", 1)[0] + "/not-in-the-profile"
    agent = started_agent(tmp_path, em, pki, role_arn=wrong_role)
    try:
        assert agent.running()
        failures = agent.log_lines("refresh_failed")
        assert len(failures) == 1 and "class=rejected" in failures[0], failures
        status = agent.profile_status("web")
        assert status["state"] == "failing", status
        assert status["last_error"]["code"] == "upstream_rejected", status
        assert "not-in-the-profile" in status["last_error"]["message"], status
        assert "access_key_id" not in status
        # A rejection is not retried at once: the next attempt is minutes away.
        assert status.get("next_refresh_in_seconds", 0) >= 250, status
        assert_unavailable(*imds_credentials(agent.imds_port("web")))
        time.sleep(1)
        assert create_sessions(em) == 1
        assert em.stats()["rejected"] == 1
    finally:
        assert agent.stop() == 0


def raw_exchange(port, head):
    """Send one request as bytes and read the answer until the server closes: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head.encode())
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    header_block, _, body = data.partition(b"\r\n\r\n")
    lines = header_block.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers, body


def test_content_type_says_what_the_body_is(em, pki, tmp_path):
    """With nothing to serve, both surfaces answer a JSON error labelled application/json (Go's SDK reads an
    error document only under that type); the IMDS token and role name stay text/plain."""
    wrong_role = em.arns["role_arn"].rsplit("/", 1)[0] + "/not-in-the-profile"
    agent = started_agent(tmp_path, em, pki, role_arn=wrong_role)
    try:
        port = agent.imds_port("web")
        status, headers, token = raw_exchange(
            port, "PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        assert (status, headers["content-type"]) == (200, ["text/plain"]), (status, headers)
        get = ("GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token: " + token.decode() +
               "\r\nConnection: close\r\n\r\n")
        status, headers, role = raw_exchange(port, get.format("/latest/meta-data/iam/security-credentials/"))
        assert (status, headers["content-type"]) == (200, ["text/plain"]), (status, headers)
        status, headers, body = raw_exchange(port, get.format(f"/latest/meta-data/iam/security-credentials/"
                                                              f"{role.decode()}"))
        assert (status, headers["content-type"]) == (503, ["application/json"]), (status, headers, body)
        assert set(json.loads(body)) == {"Code", "Message"}, body

        ecs_token = agent.ecs_token_file("web").read_text()
        path = agent.ecs_url("web").split(str(agent.ecs_port), 1)[1]
        for authorization, expected in ((ecs_token, 503), ("wrong", 403)):
            status, headers, body = raw_exchange(
                agent.ecs_port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n"
                                "Connection: close\r\n\r\n")
            assert (status, headers["content-type"]) == (expected, ["application/json"]), (status, headers)
            assert set(json.loads(body)) == {"Code", "Message"}, body
    finally:
        assert agent.stop() == 0


def test_throttling_honours_retry_after(em, pki, tmp_path):
    em.faults({"status": 429, "retry_after": 2})
    agent = started_agent(tmp_path, em, pki)
    try:
        failed_at = time.monotonic()
        failures = agent.log_lines("refresh_failed")
        assert len(failures) == 1 and "class=retryable" in failures[0], failures
        wait_until(lambda: served_credentials(agent), CREDENTIALS_TIMEOUT, what="credentials after a 429")
        assert time.monotonic() - failed_at >= 1.5, "the retry came before the server's Retry-After"
        assert create_sessions(em) == 2
    finally:
        assert agent.stop() == 0
