"""/healthz and /metrics of `health_listen`, as a monitoring system reaches them: 503 naming the profile while
it has no credentials, 200 once it has; Prometheus lines per profile; and none of the emulator's canary
secrets in either answer nor in the agent's debug log."""

import re

from radtest.clients import http_call, imds_credentials
from radtest.environment import free_port, wait_until

REFRESH_TIMEOUT = 20


def health_agent(agent_process):
    """The `web` agent with health_listen on a port of its own (agent.health_port), logging at debug level."""
    agent = agent_process()
    agent.health_port = free_port()
    agent.agent["health_listen"] = f"127.0.0.1:{agent.health_port}"
    agent.agent["log_level"] = "debug"
    return agent


def health_request(agent, path, method="GET"):
    """(status, body) of one request to the health listener."""
    status, _, body = http_call(agent.health_port, method, path)
    return status, body


def test_healthz_503_until_credentials_then_200(em, agent_process):
    # The first CreateSession gets a 503 with Retry-After: 2, so there is a known window without credentials.
    em.faults({"status": 503, "retry_after": 2})
    agent = health_agent(agent_process)
    agent.start()
    agent.wait_for_log(r"event=refresh_failed\b.*profile=web")

    status, body = health_request(agent, "/healthz")
    assert status == 503, body
    assert re.match(rb"web: \S+", body), body
    status, metrics = health_request(agent, "/metrics")
    assert status == 200
    assert b'rolesanywhere_agent_credentials_servable{profile="web"} 0' in metrics, metrics

    wait_until(lambda: health_request(agent, "/healthz") == (200, b"ok\n"), REFRESH_TIMEOUT,
               what="/healthz answering 200 ok")
    status, metrics = health_request(agent, "/metrics")
    assert status == 200
    text = metrics.decode()
    assert 'rolesanywhere_agent_credentials_servable{profile="web"} 1' in text, text
    assert re.search(r'^rolesanywhere_agent_credentials_expiry_seconds\{profile="web"\} \d', text, re.M), text
    assert re.search(r'^rolesanywhere_agent_refresh_total\{profile="web",outcome="ok"\} 1$', text, re.M), text
    assert re.search(r'^rolesanywhere_agent_refresh_total\{profile="web",outcome="retryable"\} 1$', text, re.M), text
    # Every sample line is NAME{labels} VALUE or NAME VALUE (text exposition format 0.0.4).
    for line in text.splitlines():
        if not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{[^}]*\})? [0-9.e+-]+|[a-z_]+(\{[^}]*\})? \+Inf', line), line
    assert agent.stop() == 0


def test_health_listener_refuses_other_paths_and_methods(agent_process):
    agent = health_agent(agent_process)
    agent.start()
    assert health_request(agent, "/latest/api/token")[0] == 404
    assert health_request(agent, "/healthz", "POST")[0] == 405
    assert agent.stop() == 0


def test_canary_secrets_never_leave_through_health_or_logs(em, agent_process):
    em.faults({"canary": True})
    agent = health_agent(agent_process)
    agent.start()
    agent.wait_for_log(r"event=refresh_ok\b")

    # The canary credentials are what the agent holds and serves...
    status, credentials = imds_credentials(agent.imds_port())
    assert status == 200, credentials
    assert credentials["AccessKeyId"].startswith("ASIACANARY")
    assert credentials["SecretAccessKey"].startswith("CANARY-SECRET-")
    assert credentials["Token"].startswith("CANARY-TOKEN-")

    # ...and they appear nowhere else.
    _, healthz = health_request(agent, "/healthz")
    _, metrics = health_request(agent, "/metrics")
    assert agent.stop() == 0
    for where, text in (("/healthz", healthz.decode()), ("/metrics", metrics.decode()),
                        ("the debug log", agent.log())):
        for secret in (credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["Token"],
                       "CANARY-SECRET", "CANARY-TOKEN", "ASIACANARY"):
            assert secret not in text, f"{secret} in {where}"
    assert "<7>" in agent.log(), "the agent did not log at debug level"
