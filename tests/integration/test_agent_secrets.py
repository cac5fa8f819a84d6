"""Secret hygiene of the running agent: with canary credentials from the emulator and every surface used at
debug level, its stderr never holds a secret key, a session token, an IMDS token or the container token, and
the status output holds no secret either.
"""

import re

from radtest.agent import AgentProcess
from radtest.clients import ecs_credentials, http_call, imds_credentials, imds_token

CANARIES = ("CANARY-SECRET", "CANARY-TOKEN")


def test_debug_log_and_status_hold_no_secret(em, pki, tmp_path):
    em.faults({"canary": True, "count": 20})
    agent = AgentProcess(tmp_path, em, pki)
    agent.agent["log_level"] = "debug"
    agent.profile("web", credentials_file_profile="web", credentials_file=str(agent.credentials_file))
    agent.start()
    try:
        port = agent.imds_port("web")
        token = imds_token(port)
        status, body = imds_credentials(port, token)
        assert status == 200 and body["SecretAccessKey"].startswith("CANARY-SECRET-"), body
        access_key = body["AccessKeyId"]
        assert access_key.startswith("ASIACANARY")
        # Wrong and forged tokens are refused without being echoed into the log.
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        assert http_call(port, "GET", "/latest/meta-data/iam/security-credentials/",
                         {"X-aws-ec2-metadata-token": forged})[0] == 401

        ecs_token = agent.ecs_token_file("web").read_text()
        status, body = ecs_credentials(agent.ecs_url("web"), ecs_token)
        assert status == 200 and body["Token"].startswith("CANARY-TOKEN-"), body
        assert ecs_credentials(agent.ecs_url("web"), ecs_token + "x")[0] == 403

        result = agent.credential_process("web", "--no-fallback")
        assert result.returncode == 0 and b"CANARY-SECRET" in result.stdout, result
        assert not any(c.encode() in result.stderr for c in CANARIES)

        status_json = agent.run("status", "--socket", agent.socket_path, "--json")
        status_text = agent.run("status", "--socket", agent.socket_path)
        for output in (status_json, status_text):
            assert output.returncode == 0, output
            text = (output.stdout + output.stderr).decode()
            assert not any(c in text for c in CANARIES), text
            assert access_key not in text, "the status shows the full access key id"

        # A refresh (new canary credentials) and a rotation of the credentials file at debug level: a client
        # that needs more lifetime than the cache holds makes the agent refresh.
        assert agent.credential_process("web", "--no-fallback", "--min-lifetime", "3650").returncode == 0
        agent.wait_for_log(r"event=refresh_ok\b", count=2)
        agent.wait_for_log(r"event=credentials_file_written\b", count=2)
        assert "CANARY-SECRET" in agent.credentials_file.read_text()
    finally:
        assert agent.stop() == 0

    log = agent.log()
    assert "event=create_session" in log, "the agent did not log at debug level"
    for canary in CANARIES:
        assert canary not in log, f"{canary} in the agent's stderr"
    for value in (token, forged, ecs_token):
        assert value not in log, "a token is in the agent's stderr"
    for issued in em.issued():
        assert issued["accessKeyId"] not in log, "a full access key id is in the agent's stderr"
    assert not re.search(r"ASIACANARY\d{10}", log)
