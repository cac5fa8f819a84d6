"""Peers that are not on this host, and local users that are not allowed (docs/test-plan.md §6, rows B9 and
B10, the parts a test can build by itself).

B9 builds a network namespace joined to the host by a veth pair (`ip netns`, `ip link`; root). From inside it:
  - an agent whose IMDS and ECS listeners are bound to the host's veth address closes the connection unanswered
    (the same-host peer check: the peer is neither loopback nor the address it connected to), and every TCP
    segment it sends carries IP TTL = hop_limit (1), seen by an AF_PACKET capture inside the namespace; while a
    client on the host connecting to that same address (so from it) is answered, as a process on a Kubernetes
    node, or a pod on the host network, is by the node agent listening on the node's address;
  - the default agent (loopback listeners) cannot be reached at the host's veth address at all;
  - the CVE-2020-8558 replay: route_localnet=1 on the veth plus an nftables DNAT to 127.0.0.1 makes the
    loopback listener reachable from the namespace at the TCP level; the agent still closes unanswered.
Nothing here is skipped: without root, `ip netns` or nftables the test fails and says why.

B10 (the SO_PEERCRED half; the nftables owner-match rule of the packaged firewall is not shipped): a user who may
connect to the Unix socket by its mode (group `nogroup`) but is not in allowed_uids/allowed_gids gets nothing.
"""

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from radtest import rawhttp
from radtest.agent import AgentProcess, agent_for_any_user
from radtest.environment import PYTHON, free_port

EX_NOPERM = 77

# Runs inside the namespace: capture (AF_PACKET) the segments the host sends from host:port, connect, send a
# token PUT, read until the agent closes; print what came back and the TTLs seen. RSTs are kept apart: once the
# agent has closed the socket, the kernel answers late segments of the peer with a RST from no socket at all,
# at the system's default TTL (64); they carry no data and no agent could set their TTL.
PROBE = textwrap.dedent(r"""
    import json, socket, struct, sys, time
    iface, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    cap.bind((iface, 0))
    cap.settimeout(0.05)
    result = {"connected": False, "data": "", "error": None}
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port))
        result["connected"] = True
        s.sendall(b"PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        result["data"] = data.decode("latin-1")
    except Exception as e:
        result["error"] = type(e).__name__
    s.close()
    ttls, resets = [], []
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        try:
            packet = cap.recv(65536)
        except socket.timeout:
            continue
        ip = packet[14:]
        if len(ip) < 24 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 15) * 4
        if socket.inet_ntoa(ip[12:16]) == host and struct.unpack("!H", ip[ihl:ihl + 2])[0] == port:
            (resets if ip[ihl + 13] & 0x04 else ttls).append(ip[8])
    result["ttls"] = ttls
    result["reset_ttls"] = resets
    print(json.dumps(result))
""")


def run(*command, check=True):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, command))} failed ({result.returncode}): {result.stderr}")
    return result


class Namespace:
    """A network namespace with a veth pair: host side HOST_IP, namespace side PEER_IP (a /30)."""

    def __init__(self):
        if os.geteuid() != 0:
            pytest.fail("B9 needs root (ip netns, veth, nftables); run the badinput suite as root")
        if shutil.which("ip") is None:
            pytest.fail("B9 needs `ip` (Debian package iproute2)")
        tag = os.getpid() % 100000
        self.name = f"rad-b9-{tag}"
        self.host_if, self.peer_if = f"rb9h{tag}", f"rb9n{tag}"
        self.host_ip, self.peer_ip = f"10.213.{tag % 250}.1", f"10.213.{tag % 250}.2"
        self.nft_table = f"rad_b9_{tag}"
        self.nft = False
        run("ip", "netns", "add", self.name)
        try:
            run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
            run("ip", "link", "set", self.peer_if, "netns", self.name)
            run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            run("ip", "link", "set", self.host_if, "up")
            run("ip", "-n", self.name, "addr", "add", f"{self.peer_ip}/30", "dev", self.peer_if)
            run("ip", "-n", self.name, "link", "set", self.peer_if, "up")
            run("ip", "-n", self.name, "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    def probe(self, port):
        result = run("ip", "netns", "exec", self.name, PYTHON, "-c", PROBE, self.peer_if, self.host_ip, port)
        return json.loads(result.stdout)

    def dnat_to_loopback(self, port, target_port):
        """The CVE-2020-8558 shape: route_localnet on the veth and a DNAT of host_ip:port to 127.0.0.1."""
        if shutil.which("nft") is None:
            pytest.fail("the B9 DNAT replay needs `nft` (Debian package nftables)")
        Path(f"/proc/sys/net/ipv4/conf/{self.host_if}/route_localnet").write_text("1\n")
        run("nft", "add", "table", "ip", self.nft_table)
        self.nft = True
        run("nft", f"add chain ip {self.nft_table} pre {{ type nat hook prerouting priority -100; }}")
        run("nft", f"add rule ip {self.nft_table} pre iifname {self.host_if} tcp dport {port} "
                   f"dnat to 127.0.0.1:{target_port}")

    def close(self):
        if self.nft:
            run("nft", "delete", "table", "ip", self.nft_table, check=False)
        run("ip", "link", "del", self.host_if, check=False)
        run("ip", "netns", "del", self.name, check=False)


@pytest.fixture
def netns():
    namespace = Namespace()
    yield namespace
    namespace.close()


def test_b9_non_loopback_peers_get_nothing_and_replies_have_ttl_1(emulator, pki, live, netns, tmp_path):
    emulator.reset()
    exposed = AgentProcess(tmp_path, emulator, pki)
    exposed.agent["ecs_listen"] = f"{netns.host_ip}:{exposed.ecs_port}"
    exposed.agent["hop_limit"] = 1
    exposed.profile("web", imds_listen=f"{netns.host_ip}:{free_port()}")
    exposed.start()
    try:
        figures = {}
        for name, port in (("imds on the veth address", exposed.imds_port()),
                           ("ecs on the veth address", exposed.ecs_port)):
            result = netns.probe(port)
            figures[name] = result
            assert result["connected"], f"{name}: {result}"
            assert "HTTP/" not in result["data"], f"{name}: a peer in another namespace got an answer: {result}"
            assert result["ttls"], f"{name}: no segment of the agent was captured: {result}"
            assert set(result["ttls"]) == {1}, f"{name}: reply TTLs {result['ttls']}, hop_limit is 1"
            # The same listener, from this host: the peer's address is the one it connected to.
            if "imds" in name:
                asked = rawhttp.request("PUT", rawhttp.TOKEN_PATH, [(rawhttp.TTL_HEADER, "60")])
            else:
                token = exposed.ecs_token_file().read_text()
                asked = rawhttp.request("GET", exposed.profiles["web"]["ecs_path"], [("Authorization", token)])
            reply = rawhttp.exchange(port, asked, host=netns.host_ip, wait_close=False)
            figures[name + ", from this host"] = reply.status
            assert reply.status == 200 and reply.body, f"{name}, from this host: {reply}"

        # The default agent listens on 127.0.0.1 only: the veth address has nothing on its port.
        result = netns.probe(live.imds_port())
        figures["loopback agent at the veth address"] = result
        assert not result["connected"] and result["error"] == "ConnectionRefusedError", result

        # CVE-2020-8558: the loopback listener made reachable from the namespace by route_localnet + DNAT.
        replay_port = free_port()
        netns.dnat_to_loopback(replay_port, live.imds_port())
        result = netns.probe(replay_port)
        figures["DNAT to the loopback agent"] = result
        assert result["connected"], f"the DNAT replay did not reach the agent's listener: {result}"
        assert "HTTP/" not in result["data"], f"the DNAT replay got an answer: {result}"
        assert set(result["ttls"]) == {1}, result
        print("\nB9 " + json.dumps(figures, indent=1))
    finally:
        assert exposed.stop() == 0
    # The loopback agent still serves loopback clients after all this.
    assert live.credential_process("web", "--no-fallback").returncode == 0


def test_b10_socket_peer_outside_the_allow_lists_is_refused(emulator, pki):
    directory = Path(tempfile.mkdtemp(prefix="rad-b10-", dir="/tmp"))
    try:
        os.chmod(directory, 0o711)  # others may traverse: the socket's own mode and SO_PEERCRED decide
        emulator.reset()
        process = AgentProcess(directory, emulator, pki)
        process.agent.update({"socket_group": "nogroup", "socket_mode": "0660"})
        process.agent.pop("ecs_listen")
        process.profile("web", imds_listen=None, ecs_path=None, ecs_token_file=None)
        process.start()
        try:
            as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", str(agent_for_any_user()),
                         "credential-process", "--profile", "web", "--socket", str(process.socket_path),
                         "--no-fallback"]
            refused = subprocess.run(as_nobody, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
            # Both sides say what happened: the client is told it was refused (77, naming its uid and the
            # allow-lists, not "no agent runs"), and the agent logs who it refused.
            assert refused.returncode == EX_NOPERM, refused
            assert refused.stdout == b"" and b"SecretAccessKey" not in refused.stderr
            message = refused.stderr.decode()
            assert message.count("\n") == 1 and "uid 65534" in message and "allowed_uids" in message, message
            assert str(process.config_path) in message, message
            process.wait_for_log(r"event=socket_peer_refused uid=65534 gid=65534 pid=\d+", timeout=10)
            # `refresh` is refused the same way, said once: on stderr, with nothing on stdout.
            for named in ([], ["--profile", "web"]):
                refresh = [*as_nobody[:5], "refresh", "--socket", str(process.socket_path), *named]
                refused = subprocess.run(refresh, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
                assert refused.returncode == EX_NOPERM and refused.stdout == b"", refused
                lines = refused.stderr.decode().splitlines()
                assert len(lines) == 1 and "uid 65534" in lines[0] and "allowed_uids" in lines[0], refused
            # The same user through its group, once the configuration allows it: the refusal above was the
            # peer check, not the file mode.
            allowed = process.run("credential-process", "--profile", "web", "--socket", process.socket_path,
                                  "--no-fallback")
            assert allowed.returncode == 0, allowed
        finally:
            assert process.stop() == 0
        process.agent["allowed_gids"] = [65534]
        process.log_path.unlink()  # start() waits for `event=started` in this log: only the new run's may count
        process.start()
        try:
            granted = subprocess.run(as_nobody, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
            assert granted.returncode == 0 and b"SecretAccessKey" in granted.stdout, granted
            # Reading credentials is not spending CreateSession calls: `refresh` stays root's and the agent's.
            # Said once, on stderr: the refusal is the command's, not a profile's refresh that failed.
            for named in ([], ["--profile", "web"]):
                refresh = [*as_nobody[:5], "refresh", "--socket", str(process.socket_path), *named]
                refused = subprocess.run(refresh, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
                assert refused.returncode == EX_NOPERM and refused.stdout == b"", refused
                lines = refused.stderr.decode().splitlines()
                assert len(lines) == 1 and "may not ask for refreshes" in lines[0], refused
        finally:
            assert process.stop() == 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)
