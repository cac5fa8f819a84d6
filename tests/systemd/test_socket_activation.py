"""Socket activation as systemd does it, through systemd-socket-activate (systemd 252): the listening sockets
arrive as fds 3.. with $LISTEN_FDS/$LISTEN_PID/$LISTEN_FDNAMES, and the agent serves on them instead of binding
the addresses of its configuration. Like systemd, systemd-socket-activate starts the agent on the first
connection, which then waits in the listen backlog until the agent accepts it."""

import json
import socket
import subprocess

from conftest import AGENT, AgentConfig, free_port, http_call, imds_credentials, last_issued, port_is_closed

STATUS_TIMEOUT = 20


def activate(*listen, names):
    """The systemd-socket-activate wrapper for `listen` addresses named `names` (FileDescriptorName=)."""
    command = ["systemd-socket-activate"]
    for address in listen:
        command += ["-l", str(address)]
    return command + ["--fdname=" + ":".join(names), "--"]


def start_activated(agent_process, config_path, *listen, names):
    """Run the agent behind systemd-socket-activate; returns once every socket listens (the agent itself
    starts on the first connection)."""
    agent_process.start(config_path, wrapper=activate(*listen, names=names), wait_started=False)
    agent_process.wait_for_log(rf"^Listening on .* as {2 + len(listen)}\.$")


def status_over(socket_path):
    return subprocess.run([str(AGENT), "status", "--socket", str(socket_path), "--json"], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=STATUS_TIMEOUT)


def test_imds_and_ecs_on_activated_sockets(em, pki, tmp_path, agent_process):
    config = AgentConfig(tmp_path, em, pki)
    config.write()
    imds_port, ecs_port = free_port(), free_port()
    start_activated(agent_process, config.path, f"127.0.0.1:{imds_port}", f"127.0.0.1:{ecs_port}",
                    names=["imds", "ecs"])
    # The first connection starts the agent; IMDS answers it once the agent has taken the socket.
    status, token = http_call(imds_port, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert status == 200, token
    agent_process.wait_for_log(r"event=refresh_ok\b")

    status, credentials = imds_credentials(imds_port)
    assert status == 200, credentials
    issued = last_issued(em)
    assert credentials["AccessKeyId"] == issued["accessKeyId"]
    assert credentials["SecretAccessKey"] == issued["secretAccessKey"]

    token = (tmp_path / "web.token").read_text().strip()
    status, body = http_call(ecs_port, "GET", "/creds/web", {"Authorization": token})
    assert status == 200, body
    assert json.loads(body)["AccessKeyId"] == issued["accessKeyId"]

    # The configured addresses were not bound: the agent used what it was given.
    assert port_is_closed(config.imds_port) and port_is_closed(config.ecs_port)
    assert "activated_socket_unused" not in agent_process.log()
    assert agent_process.stop() == 0


def test_unused_activated_socket_is_reported(em, pki, tmp_path, agent_process):
    """A socket whose name the agent does not know is logged (a unit/config mismatch), not silently used."""
    config = AgentConfig(tmp_path, em, pki)
    config.write()
    port = free_port()
    start_activated(agent_process, config.path, f"127.0.0.1:{port}", names=["imds-other"])
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        agent_process.wait_for_log(r"event=activated_socket_unused\b.*name=imds-other")
    # It bound its own IMDS address instead.
    agent_process.wait_for_log(r"event=refresh_ok\b")
    status, credentials = imds_credentials(config.imds_port)
    assert status == 200, credentials
    assert agent_process.stop() == 0


def test_fast_path_socket_at_another_path(em, pki, tmp_path, short_dir, agent_process):
    """The Unix socket named "socket" is used as passed; the configured path is not bound."""
    config = AgentConfig(short_dir, em, pki)
    config.agent["socket_path"] = str(short_dir / "configured.sock")
    config.write()
    activated = short_dir / "activated.sock"
    start_activated(agent_process, config.path, activated, names=["socket"])
    first = status_over(activated)  # starts the agent
    assert first.returncode == 0, first.stderr.decode() + agent_process.log()
    agent_process.wait_for_log(r"event=refresh_ok\b")
    second = status_over(activated)
    assert second.returncode == 0, second.stderr.decode()
    assert [p["name"] for p in json.loads(second.stdout)["profiles"]] == ["web"]
    assert not (short_dir / "configured.sock").exists()
    assert agent_process.stop() == 0


def test_fast_path_socket_at_the_configured_path(em, pki, tmp_path, short_dir, agent_process):
    """The shipped layout: rolesanywhere-agent-fastpath.socket listens on the config's socket_path. The socket
    stays reachable at that path while the agent runs and after it stops (systemd owns it, not the agent)."""
    config = AgentConfig(short_dir, em, pki)
    socket_path = short_dir / "agent.sock"
    config.agent["socket_path"] = str(socket_path)
    config.write()
    start_activated(agent_process, config.path, socket_path, names=["socket"])
    first = status_over(socket_path)  # starts the agent; accepted from the backlog
    assert first.returncode == 0, first.stderr.decode() + agent_process.log()
    agent_process.wait_for_log(r"event=listening\b.*surface=socket.*activated=yes")
    assert socket_path.exists(), "the agent removed the path of the socket systemd passed it"
    second = status_over(socket_path)
    assert second.returncode == 0, second.stderr.decode()
    assert agent_process.stop() == 0
    assert socket_path.exists(), "the agent removed the activated socket's path when it stopped"
