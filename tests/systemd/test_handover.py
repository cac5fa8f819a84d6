"""A restart under systemd hands the credentials over (FileDescriptorStoreMax=): the test plays the service
manager's file-descriptor store. It receives what the agent sends to $NOTIFY_SOCKET (FDSTORE=1 with a memfd, or
with a listening socket the agent bound itself; FDSTOREREMOVE=1), and starts the next process with the stored
descriptors as systemd does: fds 3 on, $LISTEN_FDS, $LISTEN_FDNAMES, $LISTEN_PID. The next process serves the
same credentials at once, with no CreateSession, on the same listening sockets (a client that connects in
between waits, is not refused), and the IMDS tokens clients hold stay valid; a handover for another role, or
garbage, is not used."""

import os
import socket
import sys

import pytest

from radtest.agent import renewable_identity
from radtest.clients import imds_credentials, imds_token, same_credentials
from radtest.emulator import create_sessions
from radtest.environment import replace_file

from conftest import NotifySocket

HANDOVER_TIMEOUT = 10
# Puts the inherited descriptors at 3, 4, ... (argv[1]: "fd:name,fd:name") and sets the variables with the final
# process's pid, as systemd does.
ACTIVATE = ("import fcntl, os, sys\n"
            "pairs = [p.split(':', 1) for p in sys.argv[1].split(',')]\n"
            "copies = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 100) for fd, _ in pairs]  # clear of 3, 4, ...\n"
            "for i, copy in enumerate(copies):\n"
            "    os.dup2(copy, 3 + i)\n"
            "    os.close(copy)\n"
            "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(pairs)),\n"
            "                  LISTEN_FDNAMES=':'.join(name for _, name in pairs))\n"
            "os.execv(sys.argv[2], sys.argv[2:])\n")


class FdStore(NotifySocket):
    """The receiving end of sd_notify with descriptors: the descriptor last stored under each name."""

    def __init__(self, path):
        super().__init__(path)
        self.stored = {}

    def keep_fds(self, message, fds):
        fields = dict(line.split("=", 1) for line in message.split("\n") if "=" in line)
        name = fields.get("FDNAME", "stored")
        if fields.get("FDSTOREREMOVE") == "1":
            old = self.stored.pop(name, None)
            if old is not None:
                os.close(old)
        if fields.get("FDSTORE") == "1":
            assert len(fds) == 1, fields
            old = self.stored.pop(name, None)
            if old is not None:
                os.close(old)
            self.stored[name] = fds[0]
        else:
            super().keep_fds(message, fds)

    def wait_for_handover(self, timeout=HANDOVER_TIMEOUT):
        if "handover" not in self.stored:
            self.wait_for(lambda _: "handover" in self.stored, timeout, "handover stored")
        return self.stored["handover"]

    def drain(self):
        while self.receive(0.05) is not None:
            pass

    def close(self):
        for fd in self.stored.values():
            os.close(fd)
        super().close()


@pytest.fixture
def store(short_dir):
    receiver = FdStore(short_dir / "notify")
    yield receiver
    receiver.close()


def restart_with(agent, store, stored, wait_refresh=False):
    """Starts the agent's next process with the `stored` descriptors ({name: fd}) passed as systemd passes
    them (its log starts afresh)."""
    agent.log_path.unlink(missing_ok=True)
    pairs = ",".join(f"{fd}:{name}" for name, fd in sorted(stored.items()))
    return agent.start(wrapper=[sys.executable, "-c", ACTIVATE, pairs], pass_fds=tuple(stored.values()),
                       env={"NOTIFY_SOCKET": str(store.path)}, wait_refresh=wait_refresh)


def served(port, token=None):
    status, body = imds_credentials(port, token)
    assert status == 200, body
    return body


def test_a_restart_serves_the_handed_over_credentials_at_once(em, store, agent_process):
    agent = agent_process()
    agent.start(env={"NOTIFY_SOCKET": str(store.path)})
    store.wait_for_handover()
    token = imds_token(agent.imds_port())
    before = served(agent.imds_port(), token)
    assert agent.stop() == 0
    store.drain()

    restart_with(agent, store, store.stored)
    line = agent.wait_for_log(r"event=credentials_adopted\b")[0]
    assert "profile=web" in line and "SecretAccessKey" not in line
    # The token the client got from the previous process still works, and the credentials are the same.
    after = served(agent.imds_port(), token)
    assert same_credentials(em.issued()[0], after["AccessKeyId"], after["SecretAccessKey"], after["Token"])
    assert after["Expiration"] == before["Expiration"]
    assert create_sessions(em) == 1, "the restart called CreateSession"
    status = agent.profile_status("web")
    assert status["state"] == "fresh" and status["next_refresh_in_seconds"] > 600, status
    result = agent.credential_process("web", "--no-fallback")
    assert result.returncode == 0 and after["AccessKeyId"].encode() in result.stdout
    assert not agent.log_lines("refresh_ok")
    assert agent.stop() == 0


def test_credentials_of_another_role_are_not_adopted(em, pki, store, agent_process):
    agent = agent_process()
    agent.start(env={"NOTIFY_SOCKET": str(store.path)})
    store.wait_for_handover()
    assert agent.stop() == 0
    store.drain()
    agent.profiles["web"]["session_duration"] = 1800  # the credentials are for other settings now
    restart_with(agent, store, store.stored, wait_refresh=True)
    assert not agent.log_lines("credentials_adopted")
    assert create_sessions(em) == 2
    assert agent.stop() == 0


def test_a_handover_that_does_not_decode_is_ignored(em, store, agent_process, tmp_path):
    agent = agent_process()
    garbage = tmp_path / "garbage"
    garbage.write_text("rolesanywhere-agent-handover 1\nprofile web\n")
    fd = os.open(garbage, os.O_RDONLY)
    try:
        restart_with(agent, store, {"handover": fd}, wait_refresh=True)
    finally:
        os.close(fd)
    assert agent.log_lines("handover_ignored")
    assert create_sessions(em) == 1
    assert agent.stop() == 0


def test_a_renewal_whose_key_has_not_arrived_keeps_serving(em, pki, store, agent_process, tmp_path):
    """A restart for a renewal can find the new certificate without its key (the pair arrives in two files):
    the handed-over credentials stay in service and the failure shows, instead of exit 78. The next restart,
    with the matching key, picks the pair up."""
    certificate, key = renewable_identity(tmp_path, pki)
    agent = agent_process(certificate=str(certificate), private_key=str(key))
    agent.start(env={"NOTIFY_SOCKET": str(store.path)})
    store.wait_for_handover()
    first = served(agent.imds_port())
    assert agent.stop() == 0
    store.drain()

    replace_file(pki / "rsa2048.pem", certificate, 0o644)  # the renewed certificate, its key not yet
    restart_with(agent, store, store.stored)
    agent.wait_for_log(r"event=refresh_failed\b.*code=key_cert_mismatch")
    assert served(agent.imds_port())["AccessKeyId"] == first["AccessKeyId"]
    assert agent.profile_status("web")["state"] == "stale"
    assert create_sessions(em) == 1
    assert agent.stop() == 0
    store.drain()

    replace_file(pki / "rsa2048.key", key, 0o600)
    restart_with(agent, store, store.stored)
    agent.wait_for_log(r"event=credentials_adopted\b")
    # The credentials handed over were issued for the old certificate: the renewed one is used at once.
    agent.wait_for_log(r"event=refresh_ok\b.*reason=rotation")
    assert agent.profile_status("web")["state"] == "fresh"
    assert agent.profile_status("web")["certificate"]["subject"].startswith("CN=rsa2048")
    assert create_sessions(em) == 2
    assert em.stats()["recorded"][-1]["algorithm"] == "AWS4-X509-RSA-SHA256"
    assert agent.stop() == 0


def test_a_client_that_connects_between_two_processes_waits_and_is_answered(em, store, agent_process):
    """The listeners the agent bound itself are kept in the store: while no process runs, a client's
    connection waits in the backlog of the same socket, and the next process answers it."""
    agent = agent_process()
    agent.start(env={"NOTIFY_SOCKET": str(store.path)})
    store.wait_for_handover()
    port = agent.imds_port()
    store.wait_for(lambda _: any(name.startswith("kept-imds-web") for name in store.stored), HANDOVER_TIMEOUT,
                   "the IMDS listener kept")
    assert agent.stop() == 0
    store.drain()
    client = socket.create_connection(("127.0.0.1", port), timeout=5)  # no process: accepted by the backlog
    try:
        client.sendall(b"PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\n\r\n")
        restart_with(agent, store, store.stored)
        client.settimeout(10)
        assert client.recv(4096).startswith(b"HTTP/1.1 200"), "the waiting client was not answered"
    finally:
        client.close()
    assert agent.imds_port() == port
    assert not agent.log_lines("activated_socket_unused")
    assert create_sessions(em) == 1, "the restart called CreateSession"
    assert agent.stop() == 0
