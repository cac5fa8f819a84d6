"""LoadCredential= as the service sees it: `credential:NAME` paths resolve against $CREDENTIALS_DIRECTORY,
where systemd puts 0400 copies of the key material; without $CREDENTIALS_DIRECTORY the configuration is
refused with exit 78 and a line naming the key."""

import os
import shutil
import subprocess

from conftest import AGENT, AgentConfig, clean_environment, imds_credentials, last_issued


def credentials_directory(parent, pki):
    """What systemd builds for LoadCredential=agent.pem:... and LoadCredential=agent.key:...: 0400 copies
    in a directory only the service can read."""
    directory = parent / "credentials"
    directory.mkdir()
    for source, name in (("p256.pem", "agent.pem"), ("p256.key", "agent.key")):
        shutil.copyfile(pki / source, directory / name)
        os.chmod(directory / name, 0o400)
    os.chmod(directory, 0o500)
    return directory


def test_identity_from_credentials_directory(em, pki, tmp_path, agent_process):
    directory = credentials_directory(tmp_path, pki)
    config = AgentConfig(tmp_path, em, pki, certificate="credential:agent.pem", private_key="credential:agent.key")
    agent_process.start(config.write(), env={"CREDENTIALS_DIRECTORY": str(directory)})
    agent_process.wait_for_log(r"event=refresh_ok\b")
    status, credentials = imds_credentials(config.imds_port)
    assert status == 200, credentials
    assert credentials["AccessKeyId"] == last_issued(em)["accessKeyId"]
    # The leaf the emulator saw is the one from the credentials directory.
    assert "CN=p256.test" in agent_process.log()
    assert agent_process.stop() == 0


def test_missing_credentials_directory_is_a_configuration_error(em, pki, tmp_path):
    config = AgentConfig(tmp_path, em, pki, certificate="credential:agent.pem", private_key="credential:agent.key")
    result = subprocess.run([str(AGENT), "serve", "--config", str(config.write())], capture_output=True,
                            stdin=subprocess.DEVNULL, env=clean_environment(), timeout=30)
    assert result.returncode == 78, result.stderr.decode()
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert str(config.path) in lines[0]
    assert "credential:agent.pem" in lines[0] and "$CREDENTIALS_DIRECTORY" in lines[0], lines[0]
    assert result.stdout == b""


def test_missing_credential_is_named(em, pki, tmp_path):
    """LoadCredential= for the key forgotten: the line names the missing file, exit 78."""
    directory = credentials_directory(tmp_path, pki)
    config = AgentConfig(tmp_path, em, pki, certificate="credential:agent.pem", private_key="credential:web.key")
    result = subprocess.run([str(AGENT), "serve", "--config", str(config.write())], capture_output=True,
                            stdin=subprocess.DEVNULL, env=clean_environment({"CREDENTIALS_DIRECTORY": str(directory)}),
                            timeout=30)
    assert result.returncode == 78, result.stderr.decode()
    assert str(directory / "web.key") in result.stderr.decode()
