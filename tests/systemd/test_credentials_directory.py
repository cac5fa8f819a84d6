"""LoadCredential= as the service sees it: `credential:NAME` paths resolve against $CREDENTIALS_DIRECTORY,
where systemd puts 0400 copies of the key material; without $CREDENTIALS_DIRECTORY the configuration is
refused with exit 78 and a line naming the key."""

import os
import shutil

from radtest.clients import imds_credentials
from radtest.emulator import last_issued

FROM_CREDENTIALS = {"certificate": "credential:agent.pem", "private_key": "credential:agent.key"}


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


def serve(agent, env=None):
    """`serve --config` run to its end (it is expected to refuse the configuration)."""
    agent.write_config()
    return agent.run("serve", "--config", agent.config_path, env=env)


def test_identity_from_credentials_directory(em, pki, tmp_path, agent_process):
    directory = credentials_directory(tmp_path, pki)
    agent = agent_process(**FROM_CREDENTIALS)
    agent.start(env={"CREDENTIALS_DIRECTORY": str(directory)})
    agent.wait_for_log(r"event=refresh_ok\b")
    status, credentials = imds_credentials(agent.imds_port())
    assert status == 200, credentials
    assert credentials["AccessKeyId"] == last_issued(em)["accessKeyId"]
    # The leaf the emulator saw is the one from the credentials directory.
    assert "CN=p256.test" in agent.log()
    assert agent.stop() == 0


def test_missing_credentials_directory_is_a_configuration_error(agent_process):
    agent = agent_process(**FROM_CREDENTIALS)
    result = serve(agent)
    assert result.returncode == 78, result.stderr.decode()
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert str(agent.config_path) in lines[0]
    assert "credential:agent.pem" in lines[0] and "$CREDENTIALS_DIRECTORY" in lines[0], lines[0]
    assert result.stdout == b""


def test_missing_credential_is_named(pki, tmp_path, agent_process):
    """LoadCredential= for the key forgotten: the line names the missing file, exit 78."""
    directory = credentials_directory(tmp_path, pki)
    agent = agent_process(**dict(FROM_CREDENTIALS, private_key="credential:web.key"))
    result = serve(agent, env={"CREDENTIALS_DIRECTORY": str(directory)})
    assert result.returncode == 78, result.stderr.decode()
    assert str(directory / "web.key") in result.stderr.decode()
