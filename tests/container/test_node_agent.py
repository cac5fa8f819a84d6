"""The node agent of deploy/kubernetes (node-agent.yaml), run for real with `podman kube play`.

A network namespace stands for the node: loopback, prepared as node-setup/rolesanywhere-imds.service prepares a
node (169.254.169.254 on the loopback interface, node-setup/rolesanywhere-imds.nft loaded), and the emulator
reached through a relay. The
DaemonSet's pod template is played as a Pod (podman 4.3 plays no DaemonSet) with podman running in that
namespace, so hostNetwork puts the agent on the node's network. Then the AWS CLI, run on the node, gets
credentials through IMDS at the link-local address, at loopback, and with no setting at all (169.254.169.254:80,
sent to the agent by the nftables rule); a pod with a network of its own, joined to the node by a veth pair as
a CNI would, is closed unanswered; SIGTERM ends the agent with exit 0."""

import json
import os
import socket
import subprocess

import pytest

from radtest.emulator import last_issued
from radtest.environment import ROOT, clean_environment, wait_until

from container_support import (NetworkNamespace, PlayedPod, Relay, SecretVolume, container_state, emulator_ca,
                               entered, identity_files, load_manifest, playable_pod, podman, run)

STARTUP_TIMEOUT = 90
GRACE_PERIOD = 30
LINK_LOCAL = "169.254.169.254"


@pytest.fixture(scope="module")
def node(images, module_emulator, pki, workdir):
    name = f"container-node-{os.getpid()}"
    netns = NetworkNamespace(name)
    relay = played = None
    try:
        # The node's preparation: the ExecStart= lines of node-setup/rolesanywhere-imds.service, as shipped,
        # with its nftables file where the unit expects it.
        setup = ROOT / "deploy" / "kubernetes" / "node-setup"
        for line in (setup / "rolesanywhere-imds.service").read_text().splitlines():
            if line.startswith("ExecStart="):
                command = line.removeprefix("ExecStart=").split()
                netns.run(*[str(setup / "rolesanywhere-imds.nft") if part.endswith(".nft") else part
                            for part in command])
        relay = Relay(netns.path, module_emulator.port)
        volume = SecretVolume(workdir / "tls", identity_files(pki, "p256"))
        documents, volumes = playable_pod(load_manifest("node-agent.yaml"), name, images["agent"],
                                          {"rolesanywhere-agent-node-tls": volume.root},
                                          emulator_ca(module_emulator, workdir), module_emulator, relay.port)
        played = PlayedPod(documents, volumes, workdir, netns)
        wait_until(lambda: healthy(netns) or exited(played), timeout=STARTUP_TIMEOUT, interval=0.2,
                   what="/readyz 200 on the node")
        assert healthy(netns), played.logs("rolesanywhere-agent")
        yield played
    finally:
        if played is not None:
            print(f"\n--- agent's log ---\n{played.logs('rolesanywhere-agent')[-4000:]}")
            played.down()
        if relay is not None:
            relay.close()
        netns.close()


def healthy(netns):
    try:
        return netns.http_get(9913, "/readyz")[0] == 200
    except OSError:
        return False


def exited(pod):
    return container_state(pod.container("rolesanywhere-agent"))["Status"] == "exited"


def aws_cli_on_the_node(pod, workdir, endpoint):
    """`aws configure export-credentials` on the node, with nothing configured but the IMDS endpoint."""
    for name in ("config", "credentials"):
        (workdir / f"aws-{name}").write_text("")
    env = clean_environment({"HOME": str(workdir), "AWS_CONFIG_FILE": str(workdir / "aws-config"),
                             "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "aws-credentials")})
    if endpoint is not None:
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = endpoint
    result = subprocess.run(["nsenter", f"--net={pod.netns.path}", "/usr/bin/aws", "configure",
                             "export-credentials", "--format", "process"], capture_output=True, text=True,
                            env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (endpoint, result.stderr)
    return json.loads(result.stdout)


@pytest.mark.parametrize("endpoint", [f"http://{LINK_LOCAL}:9911/", "http://127.0.0.1:9911/", None],
                         ids=["link-local", "loopback", "default IMDS address, no setting"])
def test_the_aws_cli_on_the_node_gets_credentials_over_imds(node, module_emulator, workdir, endpoint):
    got = aws_cli_on_the_node(node, workdir, endpoint)
    issued = last_issued(module_emulator)
    assert (got["AccessKeyId"], got["SecretAccessKey"], got["SessionToken"]) == (
        issued["accessKeyId"], issued["secretAccessKey"], issued["sessionToken"])
    assert module_emulator.stats()["requests"] == 1


def test_a_pod_with_a_network_of_its_own_is_closed_unanswered(node, workdir):
    tag = os.getpid() % 100000
    pod_netns = NetworkNamespace(f"container-podnet-{tag}")
    node_if, pod_if = f"rcn{tag}", f"rcp{tag}"
    try:
        # As a CNI plugin joins a pod to its node: a veth pair, the node as the pod's gateway.
        run("ip", "link", "add", node_if, "netns", node.netns.name, "type", "veth", "peer", "name", pod_if,
            "netns", pod_netns.name)
        node.netns.run("ip", "address", "add", "10.215.0.1/30", "dev", node_if)
        node.netns.run("ip", "link", "set", node_if, "up")
        pod_netns.run("ip", "address", "add", "10.215.0.2/30", "dev", pod_if)
        pod_netns.run("ip", "link", "set", pod_if, "up")
        pod_netns.run("ip", "route", "add", "default", "via", "10.215.0.1")
        with entered(pod_netns.path):
            sock = socket.create_connection((LINK_LOCAL, 9911), timeout=5)
        answer = b""
        with sock:
            try:
                sock.sendall(b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                             b"X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n")
                while chunk := sock.recv(65536):
                    answer += chunk
            except (ConnectionResetError, BrokenPipeError):
                pass  # closed with the request unread: the kernel resets the connection
        # The TCP connection reaches the agent (the address is the node's), which closes it unanswered.
        assert answer == b"", answer
    finally:
        pod_netns.close()


def test_sigterm_ends_the_node_agent_with_0(node):
    podman("stop", "--time", GRACE_PERIOD, node.container("rolesanywhere-agent"), timeout=GRACE_PERIOD + 30)
    state = container_state(node.container("rolesanywhere-agent"))
    assert state["ExitCode"] == 0 and not state["OOMKilled"], state
