"""Socket activation as systemd does it, through systemd-socket-activate (systemd 252): the listening sockets
arrive as fds 3.. with $LISTEN_FDS/$LISTEN_PID/$LISTEN_FDNAMES, and the agent serves on them instead of binding
the addresses of its configuration. Like systemd, systemd-socket-activate starts the agent on the first
connection, which then waits in the listen backlog until the agent accepts it."""

import json
import socket

from radtest.clients import http_call, imds_credentials
from radtest.emulator import last_issued
from radtest.environment import free_port

from conftest import port_is_closed

STATUS_TIMEOUT = 20


def activate(*listen, names):
    """The systemd-socket-activate wrapper for `listen` addresses named `names` (FileDescriptorName=)."""
    command = ["systemd-socket-activate"]
    for address in listen:
        command += ["-l", str(address)]
    return command + ["--fdname=" + ":".join(names), "--"]


def start_activated(agent, *listen, names):
    """Write the agent's configuration and run it behind systemd-socket-activate; returns once every socket
    listens (the agent itself starts on the first connection)."""
    agent.start(wrapper=activate(*listen, names=names), wait_started=False)
    agent.wait_for_log(rf"^Listening on .* as {2 + len(listen)}\.$")


def status_over(agent, socket_path):
    return agent.run("status", "--socket", socket_path, "--json", timeout=STATUS_TIMEOUT)


def test_imds_and_ecs_on_activated_sockets(em, agent_process):
    agent = agent_process()
    imds_port, ecs_port = free_port(), free_port()
    start_activated(agent, f"127.0.0.1:{imds_port}", f"127.0.0.1:{ecs_port}", names=["imds", "ecs"])
    # The first connection starts the agent; IMDS answers it once the agent has taken the socket.
    status, _, token = http_call(imds_port, "PUT", "/latest/api/token",
                                 {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert status == 200, token
    agent.wait_for_log(r"event=refresh_ok\b")

    status, credentials = imds_credentials(imds_port)
    assert status == 200, credentials
    issued = last_issued(em)
    assert credentials["AccessKeyId"] == issued["accessKeyId"]
    assert credentials["SecretAccessKey"] == issued["secretAccessKey"]

    token = agent.ecs_token_file().read_text().strip()
    status, _, body = http_call(ecs_port, "GET", "/creds/web", {"Authorization": token})
    assert status == 200, body
    assert json.loads(body)["AccessKeyId"] == issued["accessKeyId"]

    # The configured addresses were not bound: the agent used what it was given.
    assert port_is_closed(agent.imds_port()) and port_is_closed(agent.ecs_port)
    assert "activated_socket_unused" not in agent.log()
    assert agent.stop() == 0


def test_unused_activated_socket_is_reported(agent_process):
    """A socket whose name the agent does not know is logged (a unit/config mismatch), not silently used."""
    agent = agent_process()
    port = free_port()
    start_activated(agent, f"127.0.0.1:{port}", names=["imds-other"])
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        agent.wait_for_log(r"event=activated_socket_unused\b.*name=imds-other")
    # It bound its own IMDS address instead.
    agent.wait_for_log(r"event=refresh_ok\b")
    status, credentials = imds_credentials(agent.imds_port())
    assert status == 200, credentials
    assert agent.stop() == 0


def test_fast_path_socket_at_another_path(short_dir, agent_process):
    """The Unix socket named "socket" is used as passed; the configured path is not bound."""
    agent = agent_process(short_dir)
    agent.agent["socket_path"] = str(short_dir / "configured.sock")
    activated = short_dir / "activated.sock"
    start_activated(agent, activated, names=["socket"])
    first = status_over(agent, activated)  # starts the agent
    assert first.returncode == 0, first.stderr.decode() + agent.log()
    agent.wait_for_log(r"event=refresh_ok\b")
    second = status_over(agent, activated)
    assert second.returncode == 0, second.stderr.decode()
    assert [p["name"] for p in json.loads(second.stdout)["profiles"]] == ["web"]
    assert not (short_dir / "configured.sock").exists()
    assert agent.stop() == 0


def test_fast_path_socket_at_the_configured_path(short_dir, agent_process):
    """The shipped layout: rolesanywhere-agent-fastpath.socket listens on the config's socket_path. The socket
    stays reachable at that path while the agent runs and after it stops (systemd owns it, not the agent)."""
    agent = agent_process(short_dir)
    socket_path = short_dir / "agent.sock"
    agent.agent["socket_path"] = str(socket_path)
    start_activated(agent, socket_path, names=["socket"])
    first = status_over(agent, socket_path)  # starts the agent; accepted from the backlog
    assert first.returncode == 0, first.stderr.decode() + agent.log()
    agent.wait_for_log(r"event=listening\b.*surface=socket.*activated=yes")
    assert socket_path.exists(), "the agent removed the path of the socket systemd passed it"
    second = status_over(agent, socket_path)
    assert second.returncode == 0, second.stderr.decode()
    assert agent.stop() == 0
    assert socket_path.exists(), "the agent removed the activated socket's path when it stopped"


def test_activated_address_differing_from_the_configuration_is_served_and_reported(em, agent_process):
    """The socket unit decides where clients connect: the agent serves on the activated socket, logs the
    address it actually serves (not the configured one), warns naming both, and `status` shows what is
    served. A socket at the configured address draws no warning."""
    agent = agent_process()
    activated_port, ecs_port = free_port(), agent.ecs_port
    configured = f"127.0.0.1:{agent.imds_port()}"
    start_activated(agent, f"127.0.0.1:{activated_port}", f"127.0.0.1:{ecs_port}", names=["imds", "ecs"])
    status, _, _ = http_call(activated_port, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert status == 200
    agent.wait_for_log(r"event=refresh_ok\b")
    warning = agent.wait_for_log(r"event=activated_socket_mismatch\b")[0]
    assert "surface=imds" in warning and f"configured={configured}" in warning, warning
    assert f"served=127.0.0.1:{activated_port}" in warning, warning
    assert len(agent.log_lines("activated_socket_mismatch")) == 1, "the ECS socket matched its configuration"
    listening = [line for line in agent.log_lines("listening") if "surface=imds" in line]
    assert len(listening) == 1 and f"address=127.0.0.1:{activated_port}" in listening[0], listening
    served = agent.profile_status("web")["surfaces"]
    assert f"imds http://127.0.0.1:{activated_port}/" in served and not any(configured in s for s in served), served
    assert agent.stop() == 0


def test_a_service_that_fails_behind_its_socket_is_no_agent_and_no_refusal(short_dir, agent_process):
    """The Unix socket of a socket-activated service whose start fails (here: a certificate that is not
    there, exit 78). The first client's connection starts it and is then closed without a word. That is not
    a refusal (a refused peer gets a refusal line): root's `status`, and the fast path with --no-fallback,
    say that no agent answered and where to look, exit 69."""
    for command in (["status"], ["credential-process", "--profile", "web", "--no-fallback"]):
        directory = short_dir / command[0]
        directory.mkdir()
        agent = agent_process(directory, certificate=str(directory / "absent.pem"))
        socket_path = directory / "agent.sock"
        agent.agent["socket_path"] = str(socket_path)
        start_activated(agent, socket_path, names=["socket"])
        result = agent.run(*command, "--socket", socket_path, timeout=STATUS_TIMEOUT)
        assert result.returncode == 69 and result.stdout == b"", (result, agent.log())
        assert result.stderr.decode().splitlines() == [
            f"rolesanywhere-agent: no agent answered on {socket_path}: the connection was closed without an "
            f"answer; the service is not running or failed to start (systemctl status rolesanywhere-agent)"]
        assert agent.stop() == 78, agent.log()
