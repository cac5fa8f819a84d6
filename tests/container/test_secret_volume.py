"""The agent (`serve` with plain paths, no container) on a directory laid out as the kubelet lays out a Secret
volume, run as the image's user (uid and gid 65532, as the manifests' runAsUser and runAsGroup; the files'
group is 65532 as fsGroup makes it): it starts from the layout, uses a renewed certificate that the kubelet's
atomic update brings, and ends on SIGTERM with exit 0 while a client polls the container endpoint throughout.
The kubelet's default layout, and the near misses, are refused with what to set."""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from radtest.agent import AgentProcess, agent_for_any_user
from radtest.emulator import last_issued
from radtest.environment import clean_environment, wait_until

from container_support import AGENT_GID, AGENT_UID, Poller, SecretVolume, emulator_ca, failures, identity_files

# The pod's runAsUser, runAsGroup and fsGroup (a supplementary group).
AS_AGENT = ["setpriv", f"--reuid={AGENT_UID}", f"--regid={AGENT_GID}", f"--groups={AGENT_GID}"]
EX_NOINPUT, EX_NOPERM = 66, 77
# A renewed certificate must be in use for a CreateSession within this time of the kubelet's update.
ROTATION_DEADLINE = 60


def serial_of(pem_bytes):
    return str(x509.load_pem_x509_certificate(pem_bytes).serial_number)


def accepted_serials(emulator):
    return [r["serial"] for r in emulator.stats()["recorded"] if r.get("outcome") == "accepted"]


@pytest.fixture(scope="module")
def served(module_emulator, pki, workdir):
    """The agent as uid/gid 65532 on a Secret volume holding the P-256 pair (tls.crt with the CA after the leaf,
    as cert-manager writes it), serving the container endpoint; a poller fetching it from the start."""
    volume = SecretVolume(workdir / "tls", identity_files(pki, "p256"))
    home = workdir / "agent"
    home.mkdir()
    os.chown(home, AGENT_UID, AGENT_GID)
    agent = AgentProcess(home, module_emulator, pki)
    agent.profile("web", certificate=str(volume.root / "tls.crt"), private_key=str(volume.root / "tls.key"),
                  ca_bundle=str(emulator_ca(module_emulator, workdir) / "ca.pem"), imds_listen=None)
    agent.write_config()
    os.chown(agent.config_path, AGENT_UID, AGENT_GID)
    agent.start(write=False, wrapper=AS_AGENT, program=agent_for_any_user())
    poller = None
    try:
        token_file = wait_until(lambda: agent.ecs_token_file().exists() and agent.ecs_token_file(),
                                timeout=10, what="the token file")
        poller = Poller(agent.ecs_port, agent.profiles["web"]["ecs_path"], token_file)
        poller.start()
        yield agent, volume, poller
    finally:
        if poller is not None:
            poller.stop()
        agent.stop()


def test_the_agent_reads_a_secret_volume_as_its_own_user(served, pki, module_emulator):
    agent, volume, poller = served
    # What the agent read: a key reached through tls.key -> ..data/tls.key, ..data -> ..TIMESTAMP, root-owned,
    # group 65532, mode 0440, by a process of uid and gid 65532.
    key = (volume.root / volume.current / "tls.key").stat()
    assert (key.st_uid, key.st_gid, key.st_mode & 0o7777) == (0, AGENT_GID, 0o440)
    assert (volume.root / "tls.key").is_symlink() and (volume.root / "..data").is_symlink()
    status = Path(f"/proc/{agent.process.pid}/status").read_text()
    assert re.search(rf"^Uid:\s+{AGENT_UID}\s", status, re.M) and re.search(rf"^Gid:\s+{AGENT_GID}\s", status, re.M)
    assert accepted_serials(module_emulator) == [serial_of((pki / "p256.pem").read_bytes())]
    wait_until(lambda: poller.records, timeout=10, what="a first poll")
    assert poller.records[0]["key"] == last_issued(module_emulator)["accessKeyId"], poller.records[0]
    assert "unsafe_permissions" not in agent.log_path.read_text()


BOTOCORE = ("import json, botocore.session; c = botocore.session.get_session().get_credentials()"
            ".get_frozen_credentials(); print(json.dumps([c.access_key, c.secret_key, c.token]))")


def test_debian_12_clients_read_the_token_from_the_variable_only(served, module_emulator, workdir):
    """Which form of the token Debian 12's AWS clients read: the reason for the manifest's command."""
    agent, _, _ = served
    token_file = agent.ecs_token_file()
    for name in ("config", "credentials"):
        (workdir / f"aws-{name}").write_text("")
    base = clean_environment({"HOME": str(workdir), "AWS_CONFIG_FILE": str(workdir / "aws-config"),
                              "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "aws-credentials"),
                              "AWS_CONTAINER_CREDENTIALS_FULL_URI": agent.ecs_url()})
    issued = last_issued(module_emulator)
    expected = [issued["accessKeyId"], issued["secretAccessKey"], issued["sessionToken"]]
    clients = {"botocore 1.29": ["/usr/bin/python3", "-c", BOTOCORE],
               "AWS CLI 2.9": ["/usr/bin/aws", "configure", "export-credentials", "--format", "process"]}
    for client, command in clients.items():
        with_file = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                                   env={**base, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file)})
        assert with_file.returncode != 0, f"{client} now reads the token file: {with_file.stdout}"
        with_variable = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                       stdin=subprocess.DEVNULL,
                                       env={**base, "AWS_CONTAINER_AUTHORIZATION_TOKEN": token_file.read_text()})
        assert with_variable.returncode == 0, (client, with_variable.stderr)
        got = json.loads(with_variable.stdout)
        if isinstance(got, dict):
            got = [got["AccessKeyId"], got["SecretAccessKey"], got["SessionToken"]]
        assert got == expected, client
        print(f"\n{client}: the file alone: exit {with_file.returncode} "
              f"({with_file.stderr.strip().splitlines()[-1][:150] if with_file.stderr.strip() else ''}); "
              f"the variable: the issued credentials")


def test_a_kubelet_update_is_used_within_60_s_and_no_request_fails(served, pki, module_emulator):
    agent, volume, poller = served
    renewed = identity_files(pki, "p384")
    updated_at = time.time()
    volume.update(renewed)
    new_serial = serial_of(renewed["tls.crt"])
    try:
        wait_until(lambda: new_serial in accepted_serials(module_emulator), timeout=ROTATION_DEADLINE, interval=0.2,
                   what=f"a CreateSession signed by the renewed certificate (serial {new_serial})")
        print(f"\nrenewed certificate used {time.time() - updated_at:.1f} s after the kubelet's update")
    finally:
        failed = failures(poller.records, since=updated_at)
        print(f"{len([r for r in poller.records if r['start'] >= updated_at])} requests since the update, "
              f"{len(failed)} failed")
    assert not failed, failed[:5]


def test_sigterm_ends_the_agent_with_0_and_clients_are_served_until_then(served):
    agent, _, poller = served
    wait_until(lambda: len(poller.records) >= 5, timeout=10, what="five polls")
    signalled = time.time()
    assert agent.stop() == 0
    stopped = time.time()
    poller.stop()
    before = [r for r in poller.records if r["start"] < signalled]
    assert before and not failures(before), failures(before)[:5]
    print(f"\nexit 0 {stopped - signalled:.2f} s after SIGTERM; {len(before)} requests before it, all served")


@pytest.mark.parametrize("layout, mode, fs_group, code, pattern", [
    # The kubelet's default: defaultMode 0644, no fsGroup.
    ("default", 0o644, None, EX_NOPERM,
     r"tls\.key: permissions 0644 with group 0 are too open .*set defaultMode: 0440 and fsGroup: 65532"),
    # fsGroup set, defaultMode left alone: 0644, to which fsGroup adds 0440.
    ("fsGroup only", 0o644, AGENT_GID, EX_NOPERM, r"permissions 0644 with group 65532 .*defaultMode: 0440"),
    # defaultMode 0440 without fsGroup: root's file, which the agent cannot even open.
    ("defaultMode only", 0o440, None, EX_NOINPUT,
     r"tls\.key: cannot be read: Permission denied \(owned by root with group 0 and permissions 0440; this "
     r"process runs as uid 65532, gid 65532: for a Kubernetes Secret volume set defaultMode: 0440 and "
     r"fsGroup: 65532\)"),
    # An fsGroup other than the agent's own group: readable, but by a group that others may be in.
    ("fsGroup not runAsGroup", 0o440, 2000, EX_NOPERM,
     r"permissions 0440 with group 2000 are too open .*fsGroup: 65532"),
    ("as the manifests set it", 0o440, AGENT_GID, 0, None),
])
def test_what_the_layout_must_be(pki, workdir, layout, mode, fs_group, code, pattern):
    volume = SecretVolume(workdir / f"layout-{layout.replace(' ', '-')}", identity_files(pki, "p256"),
                          gid=fs_group or 0, mode=mode)
    # As in a pod: runAsUser, runAsGroup, and the fsGroup as a supplementary group.
    as_pod = [*AS_AGENT[:-1], f"--groups={fs_group}" if fs_group else "--clear-groups"]
    result = subprocess.run([*as_pod, str(agent_for_any_user()), "sign-string", "--private-key",
                             str(volume.root / "tls.key")], capture_output=True, text=True, timeout=30,
                            env=clean_environment(), stdin=subprocess.DEVNULL)
    assert result.returncode == code, result
    if pattern:
        assert result.stderr.count("\n") == 1 and re.search(pattern, result.stderr), result.stderr
        print(f"\n{layout}: {result.stderr.strip()}")
