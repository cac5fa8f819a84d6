"""Who reaches the agent's fast path under systemd, with other users' own processes inside the container:
root does (test_activation.py), a user in no allow-list does not, and a user of the socket's group that
config.toml allows (systemd/README.md: SocketGroup= in a drop-in plus allowed_gids) should."""

import json

import pytest

from conftest import FASTPATH, FASTPATH_SOCKET, SERVICE, SOCKETS

NOBODY = 65534
GROUP = "rad-clients"


@pytest.fixture
def client_group(machine):
    machine.run("addgroup", "--system", GROUP)
    yield int(machine.run("getent", "group", GROUP).stdout.split(":")[2])
    machine.run("delgroup", "--system", GROUP, check=False)


def credential_process(machine, user, groups=()):
    return machine.run("rolesanywhere-agent", "credential-process", "--profile", "web", "--socket", FASTPATH,
                       "--no-fallback", user=user, groups=groups, check=False)


def test_a_user_in_no_allow_list_gets_nothing(service, machine):
    service.start()
    service.wait_serving()
    result = credential_process(machine, NOBODY)
    assert result.returncode != 0 and "AccessKeyId" not in result.stdout, result.stdout
    assert json.loads(machine.run("rolesanywhere-agent", "credential-process", "--profile", "web", "--socket",
                                  FASTPATH, "--no-fallback").stdout)["AccessKeyId"]


def test_a_member_of_the_socket_group_allowed_by_gid_gets_credentials(service, machine, client_group):
    service.dropin(FASTPATH_SOCKET, "test-group", f"[Socket]\nSocketGroup={GROUP}\n")
    service.configure(agent={"allowed_gids": [client_group]})
    service.start(*SOCKETS, SERVICE)
    service.wait_serving()
    result = credential_process(machine, NOBODY, groups=[client_group])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["AccessKeyId"]
