"""The credentials-file surface: `update --once` and the agent's credentials_file_profile write one section of
the shared credentials file, atomically (a new file renamed over the old, mode 0600), with exactly what the
emulator issued, and leave every other section and comment alone. botocore then reads it. The continuous
`update` is the agent with that one surface: SIGTERM stops it with exit 0, and nothing but the credentials
file is left in its directory.
"""

import configparser
import json
import os
import signal
import stat
import subprocess
import time

import pytest

from radtest.agent import STOP_TIMEOUT, AgentProcess
from radtest.emulator import create_sessions
from radtest.environment import AGENT, PYTHON, clean_environment

OTHER_SECTIONS = """# keys managed by hand
[default]
aws_access_key_id = AKIAEXAMPLEDEFAULT00
aws_secret_access_key = default-secret
region = eu-west-1

[other]
aws_access_key_id = AKIAEXAMPLEOTHER0000
aws_secret_access_key = other-secret
"""


def read_sections(path):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(path.read_text())
    return {name: dict(parser[name]) for name in parser.sections()}


def assert_written(path, section, issued):
    sections = read_sections(path)
    assert sections[section]["aws_access_key_id"] == issued["accessKeyId"]
    assert sections[section]["aws_secret_access_key"] == issued["secretAccessKey"]
    assert sections[section]["aws_session_token"] == issued["sessionToken"]
    assert sections["default"] == {"aws_access_key_id": "AKIAEXAMPLEDEFAULT00",
                                   "aws_secret_access_key": "default-secret", "region": "eu-west-1"}
    assert sections["other"] == {"aws_access_key_id": "AKIAEXAMPLEOTHER0000", "aws_secret_access_key": "other-secret"}
    assert "# keys managed by hand" in path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # Neither a temporary file nor the writers' lock file may be left behind.
    leftovers = sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))
    assert leftovers == [path.name], leftovers


def botocore_profile(credentials_file, profile, home):
    script = ("import json, botocore.session\n"
              f"c = botocore.session.Session(profile={profile!r}).get_credentials().get_frozen_credentials()\n"
              "print(json.dumps([c.access_key, c.secret_key, c.token]))\n")
    config = home / "config"
    config.write_text("")
    env = clean_environment({"HOME": str(home), "AWS_SHARED_CREDENTIALS_FILE": str(credentials_file),
                             "AWS_CONFIG_FILE": str(config), "AWS_EC2_METADATA_DISABLED": "true"})
    result = subprocess.run([PYTHON, "-c", script], capture_output=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def test_update_once_writes_one_section_atomically(em, agent, tmp_path):
    credentials = tmp_path / "aws" / "credentials"
    credentials.parent.mkdir()
    credentials.write_text(OTHER_SECTIONS)
    os.chmod(credentials, 0o600)
    inode_before = os.stat(credentials).st_ino

    def update():
        return agent.run("update", "--profile", "web", "--once", *agent.identity_args(), *agent.target_args(),
                         env={"AWS_SHARED_CREDENTIALS_FILE": str(credentials)})

    result = update()
    assert result.returncode == 0, result.stderr.decode()
    assert create_sessions(em) == 1
    issued = em.issued()[-1]
    assert_written(credentials, "web", issued)
    assert os.stat(credentials).st_ino != inode_before, "the file was rewritten in place, not replaced"
    assert issued["secretAccessKey"] not in (result.stdout + result.stderr).decode()

    # Again: the section is replaced, not repeated.
    result = update()
    assert result.returncode == 0, result.stderr.decode()
    second = em.issued()[-1]
    assert second["accessKeyId"] != issued["accessKeyId"]
    assert_written(credentials, "web", second)
    assert credentials.read_text().count("[web]") == 1

    home = tmp_path / "home"
    home.mkdir()
    assert botocore_profile(credentials, "web", home) == [second["accessKeyId"], second["secretAccessKey"],
                                                          second["sessionToken"]]
    assert botocore_profile(credentials, "other", home)[0] == "AKIAEXAMPLEOTHER0000"


def test_update_once_creates_a_missing_file(em, agent, tmp_path):
    credentials = tmp_path / "new" / "credentials"
    result = agent.run("update", "--profile", "web", "--once", *agent.identity_args(), *agent.target_args(),
                       env={"AWS_SHARED_CREDENTIALS_FILE": str(credentials)})
    assert result.returncode == 0, result.stderr.decode()
    sections = read_sections(credentials)
    assert list(sections) == ["web"]
    assert sections["web"]["aws_access_key_id"] == em.issued()[-1]["accessKeyId"]
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600


def test_agent_credentials_file_surface(em, pki, tmp_path):
    agent = AgentProcess(tmp_path, em, pki)
    agent.credentials_file.write_text(OTHER_SECTIONS)
    os.chmod(agent.credentials_file, 0o600)
    agent.profile("web", credentials_file_profile="web", credentials_file=str(agent.credentials_file))
    agent.start()
    try:
        agent.wait_for_log(r"event=credentials_file_written\b")
        assert_written(agent.credentials_file, "web", em.issued()[-1])
    finally:
        assert agent.stop() == 0


@pytest.mark.parametrize("identity", ["plain", "passphrase-from-environment"])
def test_update_stops_on_sigterm_with_exit_0_and_leaves_only_the_file(em, agent, tmp_path, identity):
    """The continuous `update` is the agent with the credentials file as its only surface: it writes the file,
    and SIGTERM stops it with exit 0 and nothing but the file left beside it. A passphrase from
    --pkcs8-password-env (read once, then wiped from the environment) reaches the agent."""
    credentials = tmp_path / "aws" / "credentials"
    env = clean_environment({"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "RAD_IT_PASSPHRASE": "test-passphrase"})
    flags = agent.identity_args() if identity == "plain" else [
        *agent.identity_args("p256.pem", "p256-enc-aes256-sha256.key"), "--pkcs8-password-env", "RAD_IT_PASSPHRASE"]
    process = subprocess.Popen([str(AGENT), "update", "--profile", "web", *flags, *agent.target_args()],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 30
        while not (credentials.exists() and "[web]" in credentials.read_text()):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no credentials written within 30 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=STOP_TIMEOUT)
        stderr = process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        process.stderr.close()
    assert returncode == 0, stderr
    assert sorted(p.name for p in credentials.parent.iterdir()) == ["credentials"]
    sections = read_sections(credentials)
    assert list(sections) == ["web"]
    assert sections["web"]["aws_access_key_id"] == em.issued()[-1]["accessKeyId"]
    assert em.issued()[-1]["secretAccessKey"] not in stderr
