"""Starting under a real systemd: socket activation by FileDescriptorName= on the shipped units exactly,
the DynamicUser= the agent runs as, the LoadCredential= copies it reads its key material from, and Type=notify
(READY=1 before the first CreateSession, STATUS= after it)."""

import json
import re
from pathlib import Path

from radtest.clients import ecs_credentials, imds_credentials
from radtest.emulator import last_issued
from radtest.environment import wait_until

from conftest import (CONFIG_DIR, FASTPATH, READY_STATUS, ROOT, SERVICE, SHIPPED_PORTS, SOCKETS, START_TIMEOUT,
                      TOKEN_FILE)

CREDENTIALS_DIRECTORY = "/run/credentials/rolesanywhere-agent.service"
# systemd's range for dynamic users (systemd.exec(5), DynamicUser=).
DYNAMIC_UIDS = range(61184, 65519 + 1)


def socket_inodes(pid):
    """The inodes of the sockets host process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            match = re.fullmatch(r"socket:\[(\d+)\]", str(Path.readlink(fd)))
        except OSError:
            continue
        if match:
            inodes.add(int(match[1]))
    return inodes


def tcp_listeners(port):
    """Inodes of the sockets listening on 127.0.0.1:port (the container shares the host's network)."""
    local = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return {int(f[9]) for f in (line.split() for line in lines) if f[1] == local and f[3] == "0A"}


def unix_listeners(path):
    lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    return {int(f[6]) for f in (line.split() for line in lines) if len(f) == 8 and f[7] == path and f[5] == "01"}


def served(answer):
    """The (status, document) of a credentials request if it was a 200, else None."""
    return answer if answer[0] == 200 else None


def test_socket_activation_by_name_on_the_shipped_units(shipped_service, machine, em):
    service = shipped_service
    # The units systemd loaded are the package's, byte for byte the source tree's, with no drop-in.
    for unit in (SERVICE, *SOCKETS):
        props = service.show("FragmentPath", "DropInPaths", unit=unit)
        assert props["DropInPaths"] == "", props
        assert machine.read(props["FragmentPath"]) == (ROOT / "systemd" / unit).read_text(), unit
    service.start(*SOCKETS)
    assert service.show("ActiveState")["ActiveState"] == "inactive", "the service started before any client"

    # The first IMDS client starts the service (its own answer: test_the_client_that_starts_the_agent_is_served).
    imds_credentials(SHIPPED_PORTS["imds"])
    status, document = wait_until(lambda: served(imds_credentials(SHIPPED_PORTS["imds"])), START_TIMEOUT,
                                  what="IMDS credentials")
    issued = last_issued(em)
    assert document["AccessKeyId"] == issued["accessKeyId"]
    props = service.wait_serving()
    assert set(service.show("TriggeredBy")["TriggeredBy"].split()) == set(SOCKETS)

    # The agent serves on the very sockets systemd bound (no listener of its own): each address has one
    # listening socket, held by PID 1 and by the agent.
    agent = machine.host_pid(int(props["MainPID"]))
    held_by_agent, held_by_systemd = socket_inodes(agent), socket_inodes(machine.pid1)
    for what, listeners in (("imds", tcp_listeners(SHIPPED_PORTS["imds"])),
                            ("ecs", tcp_listeners(SHIPPED_PORTS["ecs"])), ("socket", unix_listeners(FASTPATH))):
        assert len(listeners) == 1, (what, listeners)
        assert listeners <= held_by_agent and listeners <= held_by_systemd, what

    # Each name reached the surface it names: ECS on 9912 with the token file the agent wrote, the
    # credential_process fast path on the Unix socket.
    token = machine.read(TOKEN_FILE).strip()
    status, document = ecs_credentials(f"http://127.0.0.1:{SHIPPED_PORTS['ecs']}/credentials/web", token)
    assert status == 200 and document["AccessKeyId"] == issued["accessKeyId"], document
    result = machine.run("rolesanywhere-agent", "credential-process", "--profile", "web", "--no-fallback")
    assert json.loads(result.stdout)["AccessKeyId"] == issued["accessKeyId"]
    assert em.stats()["requests"] == 1, "every surface was served from the one CreateSession"
    journal = service.journal()
    assert "activated_socket_unused" not in journal, journal
    assert service.show("NRestarts")["NRestarts"] == "0"


def test_dynamic_user_and_load_credential(service, machine, config_dir):
    service.start()
    props = service.wait_serving()
    pid = int(props["MainPID"])
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", machine.read(f"/proc/{pid}/status"), re.M)
    uid = int(uids[1])
    assert {int(u) for u in uids.groups()} == {uid} and uid in DYNAMIC_UIDS, uids.groups()
    assert service.show("UID")["UID"] == str(uid)
    assert f":{uid}:" not in machine.read("/etc/passwd"), "a dynamic user is not written to /etc/passwd"

    # LoadCredential=: 0400 copies owned by the dynamic user on a ramfs only this service sees, byte for byte
    # the root-only files of /etc/rolesanywhere-agent; the agent is told where by $CREDENTIALS_DIRECTORY.
    environ = machine.read(f"/proc/{pid}/environ").split("\0")
    assert f"CREDENTIALS_DIRECTORY={CREDENTIALS_DIRECTORY}" in environ, environ
    assert machine.run("findmnt", "-n", "-o", "FSTYPE", CREDENTIALS_DIRECTORY).stdout.strip() == "ramfs"
    listing = machine.run("stat", "-c", "%n %a %u", f"{CREDENTIALS_DIRECTORY}/agent.pem",
                          f"{CREDENTIALS_DIRECTORY}/agent.key").stdout.split("\n")
    assert listing[:2] == [f"{CREDENTIALS_DIRECTORY}/agent.pem 400 {uid}",
                           f"{CREDENTIALS_DIRECTORY}/agent.key 400 {uid}"], listing
    for name in ("agent.pem", "agent.key"):
        assert machine.read(f"{CREDENTIALS_DIRECTORY}/{name}") == (config_dir / name).read_text(), name
    # The originals stay root's 0600: the agent's user could not read them itself.
    refused = machine.run("cat", f"{CONFIG_DIR}/agent.key", user=uid, check=False)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused

    # Once the service is gone, so are the copies.
    service.systemctl("stop", SERVICE)
    assert machine.run("test", "-e", CREDENTIALS_DIRECTORY, check=False).returncode != 0


def test_ready_before_the_first_create_session_then_status(service, em):
    # READY=1 comes once the listeners are open and the keys loaded: `systemctl start` returns (the unit is
    # active) while the first CreateSession is still held by the emulator; STATUS= follows when it ends.
    em.faults({"delay_ms": 4000})
    service.start()
    props = service.show("ActiveState", "StatusText")
    assert props["ActiveState"] == "active", props
    assert props["StatusText"] != READY_STATUS, props
    assert em.stats()["accepted"] == 0
    service.wait_serving(timeout=START_TIMEOUT)
    assert em.stats()["accepted"] == 1


def test_the_client_that_starts_the_agent_is_served(service, em):
    # The first CreateSession takes 2 s, so the client's request surely arrives while it is in flight: the
    # agent leaves it in the listen backlog until that refresh has completed, then answers it.
    em.faults({"delay_ms": 2000})
    service.start(*SOCKETS)
    assert service.show("ActiveState")["ActiveState"] == "inactive"
    status, document = imds_credentials(service.ports["imds"])
    assert status == 200, document


def test_config_installed_as_the_readme_says(service, em):
    # systemd/README.md: `install -m 0644 config.toml.example config.toml`: root's, readable by the dynamic
    # user (it holds no secret: keys, passphrases and PINs are files of their own).
    service.configure(mode=0o644)
    cursor = service.cursor()
    assert service.systemctl("start", *SOCKETS, SERVICE, check=False).returncode == 0, service.journal(after=cursor)
    service.wait_serving()
