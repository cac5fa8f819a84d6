"""Single flight and the credential_process fast path of a running agent.

- However many clients ask at once, one refresh means one CreateSession: 100 fast-path runs that all need
  fresher credentials (--min-lifetime above what the cache holds) while 100 IMDS clients read, during a
  refresh slowed down by the emulator, cost exactly one CreateSession after the agent's first.
- The fast path answers from the agent's cache: 200 runs cost no CreateSession.
- With no agent: --no-fallback exits 69 with one line on stderr; without it, the command signs by itself from
  the configuration (one CreateSession).
- The front executable answers every fast-path command line by itself, with or without --socket and
  whatever the configuration file holds; only signing with no agent needs the full program.
- An edited configuration that no longer loads does not take the running agent away: the fast path and
  `status` still find its socket in the file; only with no agent is the file's error the answer (exit 78).
"""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from radtest.agent import AgentProcess, started_agent
from radtest.clients import imds_credentials, same_credentials
from radtest.emulator import create_sessions
from radtest.environment import AGENT, clean_environment, replace_file

CLIENTS = 100
SLOW_REFRESH_MS = 10000


def parse_process_output(result):
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)
    assert document["Version"] == 1
    return document


def matches(issued, document):
    return same_credentials(issued, document["AccessKeyId"], document["SecretAccessKey"], document["SessionToken"])


def test_single_flight_under_100_fast_path_and_100_imds_clients(em, pki, tmp_path):
    agent = started_agent(tmp_path, em, pki)
    try:
        assert create_sessions(em) == 1
        first = em.issued()[0]
        # The next CreateSession takes SLOW_REFRESH_MS: every client below arrives while it is in flight.
        em.faults({"delay_ms": SLOW_REFRESH_MS})

        command = [str(AGENT), "credential-process", "--profile", "web", "--socket", str(agent.socket_path),
                   "--no-fallback", "--min-lifetime", "3650"]  # more than the cached 3600 s session has left
        env = clean_environment()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=4) as pool:
            processes = list(pool.map(lambda _: subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env),
                range(CLIENTS)))
        launched = time.monotonic() - started

        barrier = threading.Barrier(CLIENTS)

        def imds_client(_):
            barrier.wait(timeout=30)
            return imds_credentials(agent.imds_port("web"))

        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            imds_answers = list(pool.map(imds_client, range(CLIENTS)))
        outputs = []
        for p in processes:
            stdout, stderr = p.communicate(timeout=60)
            outputs.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
        # The test proves something only if every client connected while the slowed refresh was in flight.
        assert launched < SLOW_REFRESH_MS / 1000 * 0.6, f"launching the clients took {launched:.1f} s"

        assert create_sessions(em) == 2, em.stats()["recorded"][1:]
        issued = em.issued()
        assert len(issued) == 2
        second = issued[1]
        for result in outputs:
            assert matches(second, parse_process_output(result)), "a fast-path client got other credentials"
        for status, body in imds_answers:
            assert status == 200, body
            assert any(same_credentials(c, body["AccessKeyId"], body["SecretAccessKey"], body["Token"])
                       for c in (first, second))
    finally:
        assert agent.stop() == 0


def test_fast_path_200_runs_cost_no_create_session(em, pki, tmp_path):
    agent = started_agent(tmp_path, em, pki)
    try:
        assert create_sessions(em) == 1
        issued = em.issued()[0]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda _: agent.credential_process("web", "--no-fallback"), range(200)))
        for result in results:
            document = parse_process_output(result)
            assert matches(issued, document)
            assert document["Expiration"] == issued["expiration"]
            assert result.stderr == b""
        assert create_sessions(em) == 1
    finally:
        assert agent.stop() == 0


def test_no_agent_no_fallback_exits_69_with_one_line(em, pki, tmp_path):
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.write_config()
    result = agent.credential_process("web", "--config", agent.config_path, "--no-fallback")
    assert result.returncode == 69, result
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stderr
    assert str(agent.socket_path) in lines[0]
    assert create_sessions(em) == 0


def test_no_agent_falls_back_to_signing_from_the_config(em, pki, tmp_path):
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.write_config()
    result = agent.credential_process("web", "--config", agent.config_path)
    document = parse_process_output(result)
    assert create_sessions(em) == 1
    assert matches(em.issued()[0], document)


def test_fast_path_with_a_900_second_session_does_not_sign_every_time(em, pki, tmp_path):
    """A profile with the shortest session (900 s) must still be served from the cache by the fast path.

    The fast path asks for 900 s of life by default, which a 900 s session never has once it has arrived; the
    agent must not answer that by calling CreateSession for every credential_process run."""
    agent = started_agent(tmp_path, em, pki, session_duration=900)
    try:
        assert create_sessions(em) == 1
        for _ in range(5):
            parse_process_output(agent.credential_process("web", "--no-fallback"))
        assert create_sessions(em) <= 2, f"{create_sessions(em)} CreateSession calls for 5 fast-path runs"
    finally:
        assert agent.stop() == 0


def test_startup_jitter_delays_the_first_create_session(tmp_path, em, pki):
    """With startup_jitter_seconds the first CreateSession waits (a random 0..N s; N = 1 h here, so the chance
    that it falls inside this test's first two seconds is 1 in 1800); a client that needs credentials now
    still gets them at once, through the fast path's refresh."""
    agent = AgentProcess(tmp_path, em, pki)
    agent.agent["startup_jitter_seconds"] = 3600
    agent.profile("web")
    agent.start(wait_refresh=False)
    try:
        time.sleep(2)
        assert create_sessions(em) == 0
        status = agent.profile_status("web")
        assert status["state"] == "starting", status
        assert status["next_refresh_in_seconds"] >= 0
        credentials = parse_process_output(agent.credential_process("web", "--no-fallback"))
        assert credentials["AccessKeyId"].startswith("ASIA")
        assert create_sessions(em) == 1
    finally:
        assert agent.stop() == 0, agent.log()


def lone_front(tmp_path):
    """A copy of the front executable with no full program beside it (nor at ../libexec): whatever it cannot
    answer alone fails with "cannot run", so a success proves the front answered by itself."""
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    front = directory / "rolesanywhere-agent"
    shutil.copy(AGENT, front)
    return front


def fast_path(program, config, *extra):
    return subprocess.run([str(program), "credential-process", "--profile", "web", "--config", str(config),
                           *extra], capture_output=True, stdin=subprocess.DEVNULL, env=clean_environment(None),
                          timeout=30)


def test_fast_path_through_the_configuration_file(em, pki, tmp_path):
    """Without --socket the front loads the configuration as the full program does, and asks the agent on
    the socket it names. An edited file is read anew at every call: the front answers alone whatever the
    file holds, exactly as the full program does for the same file (a typo still reaches the running agent;
    a file that cannot tell its socket, or one writable by others, is reported, exit 78)."""
    agent = started_agent(tmp_path, em, pki)
    front = lone_front(tmp_path)
    try:
        issued = em.issued()[0]
        assert matches(issued, parse_process_output(fast_path(front, agent.config_path, "--no-fallback")))

        os.chmod(agent.config_path, 0o640)  # same bytes, new inode metadata
        assert matches(issued, parse_process_output(fast_path(front, agent.config_path, "--no-fallback")))

        good = agent.config_path.read_text()
        agent.config_path.write_text(good + "# edited\n")  # other bytes, the same settings
        for program in (front, AGENT):
            assert matches(issued, parse_process_output(fast_path(program, agent.config_path, "--no-fallback")))
        assert matches(issued, parse_process_output(fast_path(front, agent.config_path)))  # fallback allowed

        agent.config_path.write_text(good + "sesion_duration = 900\n")  # a typo: the file no longer loads
        for program in (front, AGENT):
            assert matches(issued, parse_process_output(fast_path(program, agent.config_path, "--no-fallback")))
        # Not even TOML (a second [agent] table): the file cannot tell the socket, and no agent at the default
        # socket runs with this file, so its error is the answer.
        agent.config_path.write_text(good + "[agent]\n")
        for program in (front, AGENT):
            result = fast_path(program, agent.config_path, "--no-fallback")
            assert result.returncode == 78 and result.stdout == b"", result
            assert str(agent.config_path) in result.stderr.decode(), result.stderr

        agent.write_config(good)  # the original bytes again, in a new file
        assert matches(issued, parse_process_output(fast_path(front, agent.config_path, "--no-fallback")))
        os.chmod(agent.config_path, 0o620)  # group-writable: refused, and both say why
        for program in (front, AGENT):
            result = fast_path(program, agent.config_path, "--no-fallback")
            assert result.returncode == 78 and b"writable by group" in result.stderr, result
        assert create_sessions(em) == 1
    finally:
        assert agent.stop() == 0


def test_front_hands_signing_without_an_agent_to_the_full_program(em, pki, tmp_path):
    """No agent, fallback allowed: the front runs the full program, which signs from the configuration; a
    front with no full program to run says so (exit 69) and prints nothing on stdout."""
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.write_config()
    front = lone_front(tmp_path)
    result = fast_path(front, agent.config_path)
    assert result.returncode == 69 and b"cannot run" in result.stderr and result.stdout == b"", result
    assert create_sessions(em) == 0
    parse_process_output(fast_path(AGENT, agent.config_path))
    assert create_sessions(em) == 1


def test_shorter_issued_sessions_than_configured_cost_no_create_session(em, pki, tmp_path):
    """The service may issue less than the configured session_duration: with 240 s credentials for a profile
    that asks for 900 s, the fast path's default minimum is 40 % of what was issued (96 s), not of the 900 s
    configured (360 s, more than the 240 s credentials ever have): 20 calls are served from the cache."""
    em.faults({"lifetime_seconds": 240, "count": 5})
    agent = started_agent(tmp_path, em, pki, session_duration=900)
    try:
        assert create_sessions(em) == 1
        first = em.issued()[0]
        for _ in range(20):
            document = parse_process_output(agent.credential_process("web", "--no-fallback"))
            assert matches(first, document)
        assert create_sessions(em) == 1, "the fast path called CreateSession for credentials the cache holds"
    finally:
        assert agent.stop() == 0


def with_a_typo(agent):
    """Appends an unknown key to the agent's configuration (as an edit not yet reloaded); returns the error
    line the file now gives."""
    good = agent.config_path.read_text()
    agent.config_path.write_text(good + "sesion_duration = 900\n")
    return f"{agent.config_path}:{len(good.splitlines()) + 1}: profiles.web.sesion_duration: unknown key"


def test_a_configuration_with_a_typo_still_reaches_the_running_agent(em, pki, tmp_path):
    """The configuration is edited and has a typo, and the agent has not been reloaded: it still holds good
    credentials, and the fast path gets them. Once no agent answers, the fast path reports the file's error
    with exit 78: there is nothing to sign with."""
    agent = started_agent(tmp_path, em, pki)
    try:
        issued = em.issued()[0]
        error = with_a_typo(agent)
        for extra in ([], ["--no-fallback"]):
            result = agent.run("credential-process", "--profile", "web", "--config", agent.config_path, *extra)
            assert matches(issued, parse_process_output(result)), result
            assert result.stderr == b"", result
    finally:
        assert agent.stop() == 0
    for extra in ([], ["--no-fallback"]):
        result = agent.run("credential-process", "--profile", "web", "--config", agent.config_path, *extra)
        assert result.returncode == 78 and result.stdout == b"", result
        assert result.stderr.decode().splitlines() == [f"rolesanywhere-agent: {error}"]
    assert create_sessions(em) == 1


def test_status_warns_about_a_configuration_with_a_typo_and_asks_the_agent(em, pki, tmp_path):
    """`status --config` with a file that no longer loads: one warning line naming the file's line, then the
    running agent's status, exit 0; with no agent, the warning and exit 69."""
    agent = started_agent(tmp_path, em, pki)
    try:
        error = with_a_typo(agent)
        warning = f"rolesanywhere-agent: warning: {error} (the running agent uses the configuration it loaded)"
        status = agent.run("status", "--config", agent.config_path)
        assert status.returncode == 0, status
        assert status.stderr.decode().splitlines() == [warning]
        assert "profile web: fresh" in status.stdout.decode(), status.stdout
        status = agent.run("status", "--config", agent.config_path, "--json")
        assert status.returncode == 0 and status.stderr.decode().splitlines() == [warning], status
        assert [p["name"] for p in json.loads(status.stdout)["profiles"]] == ["web"]
    finally:
        assert agent.stop() == 0
    status = agent.run("status", "--config", agent.config_path)
    assert status.returncode == 69, status
    assert status.stderr.decode().splitlines() == [warning, f"rolesanywhere-agent: no agent answers on "
                                                             f"{agent.socket_path}: no such socket (systemctl "
                                                             f"status rolesanywhere-agent)"]


def identity_as_credentials(directory, pki):
    """A $CREDENTIALS_DIRECTORY holding the P-256 pair under the names the service's LoadCredential= gives
    them."""
    credentials = Path(directory) / "credentials"
    credentials.mkdir()
    replace_file(Path(pki) / "p256.pem", credentials / "agent.pem", 0o644)
    replace_file(Path(pki) / "p256.key", credentials / "agent.key", 0o600)
    return credentials


def test_the_agents_clients_need_no_credentials_directory(em, pki, tmp_path):
    """The agent runs as under systemd, its identity given as credential: paths into $CREDENTIALS_DIRECTORY.
    `status`, `refresh` and the fast path run outside the service, where that variable is unset: they need
    no identity file, and say nothing about those paths. A real mistake later in the file is the one
    `status` reports, at its own line."""
    credentials = identity_as_credentials(tmp_path, pki)
    agent = AgentProcess(tmp_path / "agent", em, pki)
    agent.profile("web", certificate="credential:agent.pem", private_key="credential:agent.key")
    agent.start(env={"CREDENTIALS_DIRECTORY": str(credentials)})
    try:
        status = agent.run("status", "--config", agent.config_path)
        assert status.returncode == 0 and status.stderr == b"", status
        assert "profile web: fresh" in status.stdout.decode(), status.stdout
        refresh = agent.run("refresh", "--config", agent.config_path)
        assert refresh.returncode == 0 and refresh.stderr == b"", refresh
        served = agent.run("credential-process", "--profile", "web", "--config", agent.config_path, "--no-fallback")
        assert served.returncode == 0 and served.stderr == b"", served
        error = with_a_typo(agent)
        status = agent.run("status", "--config", agent.config_path)
        assert status.returncode == 0, status
        assert status.stderr.decode().splitlines() == [
            f"rolesanywhere-agent: warning: {error} (the running agent uses the configuration it loaded)"]
        assert create_sessions(em) == 2
    finally:
        assert agent.stop() == 0


class SilentSocket:
    """A Unix socket that accepts every connection, reads the request line and closes without a word, as the
    socket systemd holds for a service that fails to start does. Closed (and its thread joined) on exit."""

    def __init__(self, path):
        self.path = Path(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen(8)
        self.listener.settimeout(0.1)
        self.accepted = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve)

    def _serve(self):
        while not self.stopping.is_set():
            try:
                peer, _ = self.listener.accept()
            except socket.timeout:
                continue
            with peer:
                peer.settimeout(5)
                try:
                    peer.recv(4096)
                except OSError:
                    pass
            self.accepted += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stopping.set()
        self.thread.join(timeout=10)
        self.listener.close()
        self.path.unlink(missing_ok=True)


def test_a_socket_that_closes_without_an_answer_is_no_agent(em, pki, tmp_path):
    """Root's `status` and the fast path meet a socket that accepts and closes without a reply (a refused
    peer always gets a refusal line, so this is no refusal): exit 69, saying that no agent answered and where
    to look. Allowed to sign by itself, the fast path then signs with the profile asked for, and talks about
    that profile only, even though another profile's identity is a credential: path it cannot resolve."""
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web", certificate="credential:agent.pem", private_key="credential:agent.key")
    agent.profile("batch")
    agent.write_config()
    expected = (f"rolesanywhere-agent: no agent answered on {agent.socket_path}: the connection was closed "
                f"without an answer; the service is not running or failed to start (systemctl status "
                f"rolesanywhere-agent)")
    with SilentSocket(agent.socket_path) as silent:
        status = agent.run("status", "--config", agent.config_path)
        assert status.returncode == 69 and status.stdout == b"", status
        assert status.stderr.decode().splitlines() == [expected]
        refused = agent.run("credential-process", "--profile", "batch", "--config", agent.config_path,
                            "--no-fallback")
        assert refused.returncode == 69 and refused.stdout == b"", refused
        assert refused.stderr.decode().splitlines() == [expected]
        assert create_sessions(em) == 0

        signed = agent.run("credential-process", "--profile", "batch", "--config", agent.config_path)
        assert signed.stderr == b"", signed
        assert matches(em.issued()[0], parse_process_output(signed))
        assert create_sessions(em) == 1

        # A profile that cannot sign here is reported as such, after saying that no agent answered.
        agent.profile("batch", certificate=str(tmp_path / "absent.pem"))
        agent.write_config()
        failed = agent.run("credential-process", "--profile", "batch", "--config", agent.config_path)
        assert failed.returncode == 78 and failed.stdout == b"", failed
        lines = failed.stderr.decode().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"rolesanywhere-agent: no agent answered on {agent.socket_path}"), lines
        assert f"profiles.batch.certificate: {tmp_path / 'absent.pem'}: no such file" in lines[0], lines
        assert "web" not in lines[0].replace(str(tmp_path), ""), lines
        assert create_sessions(em) == 1
        assert silent.accepted >= 4
