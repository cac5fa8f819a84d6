"""Real AWS clients (Debian's botocore and AWS CLI v2) resolving credentials through a credential_process line."""

import json
import subprocess

import pytest

from radtest.environment import PYTHON, SUBPROCESS_TIMEOUT, clean_environment

AWS = "/usr/bin/aws"

BOTOCORE_PROBE = """
import json, botocore.session
session = botocore.session.Session(profile="rad")
credentials = session.get_credentials()
frozen = credentials.get_frozen_credentials()
print(json.dumps({"method": credentials.method, "access_key": frozen.access_key, "secret_key": frozen.secret_key,
                  "token": frozen.token, "expiry": str(getattr(credentials, "_expiry_time", None))}))
"""


@pytest.fixture
def aws_home(tmp_path, agent):
    """A private HOME with an AWS config whose [profile rad] runs the agent; no other AWS settings anywhere."""
    home = tmp_path / "home"
    home.mkdir()
    config = home / "config"

    def write(*extra):
        config.write_text(f"[profile rad]\nregion = us-east-1\ncredential_process = {agent.command_line(*extra)}\n")
        return clean_environment({"HOME": str(home), "AWS_CONFIG_FILE": str(config),
                                  "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_PAGER": "",
                                  "AWS_EC2_METADATA_DISABLED": "true"})

    return write


def run(args, env):
    return subprocess.run(args, capture_output=True, env=env, timeout=SUBPROCESS_TIMEOUT, stdin=subprocess.DEVNULL)


def test_botocore_uses_the_agent(aws_home, em):
    result = run([PYTHON, "-c", BOTOCORE_PROBE], aws_home())
    assert result.returncode == 0, result.stderr.decode()
    got = json.loads(result.stdout)
    issued = em.issued()
    assert len(issued) == 1
    assert got["method"] == "custom-process"
    assert got["access_key"] == issued[0]["accessKeyId"]
    assert got["secret_key"] == issued[0]["secretAccessKey"]
    assert got["token"] == issued[0]["sessionToken"]
    assert got["expiry"].startswith(issued[0]["expiration"][:10])


def test_botocore_with_intermediates(aws_home, em, agent):
    env = aws_home("p256-via-intermediate.pem", "p256-via-intermediate.key", "--intermediates",
                   agent.path("intermediates.pem"))
    result = run([PYTHON, "-c", BOTOCORE_PROBE], env)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["access_key"] == em.issued()[0]["accessKeyId"]
    assert em.stats()["last_request"]["chain_length"] == 2


def test_botocore_reports_the_agent_failure(aws_home, em):
    em.faults({"status": 403, "message": "Not authorized (injected)"})
    result = run([PYTHON, "-c", BOTOCORE_PROBE], aws_home())
    assert result.returncode != 0
    assert b"Not authorized (injected)" in result.stderr, "botocore shows the agent's stderr line"


def test_aws_cli_export_credentials(aws_home, em):
    result = run([AWS, "configure", "export-credentials", "--profile", "rad", "--format", "process"], aws_home())
    assert result.returncode == 0, result.stderr.decode()
    got = json.loads(result.stdout)
    issued = em.issued()
    assert len(issued) == 1
    assert got["Version"] == 1
    assert got["AccessKeyId"] == issued[0]["accessKeyId"]
    assert got["SecretAccessKey"] == issued[0]["secretAccessKey"]
    assert got["SessionToken"] == issued[0]["sessionToken"]
    assert got["Expiration"].startswith(issued[0]["expiration"][:19])


def test_aws_cli_configure_list_shows_the_process_provider(aws_home, em):
    result = run([AWS, "configure", "list", "--profile", "rad"], aws_home())
    assert result.returncode == 0, result.stderr.decode()
    issued = em.issued()
    assert len(issued) == 1
    line = next(l for l in result.stdout.decode().splitlines() if l.strip().startswith("access_key"))
    assert issued[0]["accessKeyId"][-4:] in line and "custom-process" in line
