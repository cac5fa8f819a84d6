"""The agent under test: its one-shot commands (Agent: credential-process against the emulator) and the
long-running `serve` (AgentProcess: configuration, process, log events, the commands that speak to it over its
Unix socket). Every wait here is bounded; every `serve` process is started through radtest.processes, so none
outlives the test that started it.
"""

import atexit
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from radtest import processes
from radtest.clients import HTTP_TIMEOUT
from radtest.environment import AGENT, SUBPROCESS_TIMEOUT, clean_environment, free_port, pki_dir, replace_file

START_TIMEOUT = 20
STOP_TIMEOUT = 15


class Agent:
    """Runs the agent binary with a clean environment and a timeout."""

    def __init__(self, emulator):
        self.emulator = emulator
        self.pki = pki_dir()

    def run(self, *args, env=None, timeout=SUBPROCESS_TIMEOUT):
        return subprocess.run([str(AGENT), *map(str, args)], capture_output=True, env=clean_environment(env),
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def identity_args(self, certificate="p256.pem", key="p256.key"):
        args = ["--certificate", self.path(certificate)]
        if key is not None:
            args += ["--private-key", self.path(key)]
        return args

    def path(self, name):
        return name if os.path.isabs(str(name)) else str(self.pki / name)

    def target_args(self, **arns):
        a = dict(self.emulator.arns, **arns)
        return ["--trust-anchor-arn", a["trust_anchor_arn"], "--profile-arn", a["profile_arn"],
                "--role-arn", a["role_arn"], "--endpoint", self.emulator.url, "--ca-bundle",
                self.emulator.ca_bundle]

    def credential_process(self, certificate="p256.pem", key="p256.key", *extra, env=None, arns=None):
        return self.run("credential-process", *self.identity_args(certificate, key), *self.target_args(**(arns or {})),
                        *extra, env=env)

    def command_line(self, certificate="p256.pem", key="p256.key", *extra):
        """The same invocation as one credential_process config line (absolute paths, no quoting needed)."""
        parts = [str(AGENT), "credential-process", *self.identity_args(certificate, key), *self.target_args(), *extra]
        assert all(" " not in p and '"' not in p for p in parts), parts
        return " ".join(parts)


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string for everything used here


def render_config(agent_settings, profiles):
    """TOML text for an [agent] table and one [profiles.NAME] table per entry of `profiles` (a dict)."""
    lines = ["[agent]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in agent_settings.items()]
    for name, settings in profiles.items():
        lines += ["", f"[profiles.{name}]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


class AgentProcess:
    """One `serve` process with its own directory: config, socket, token files, credentials file, stderr log.

    profile(name, **overrides) describes a profile against the emulator; write_config() puts the file in
    place (mode 0600); start() runs the agent and waits for `event=started` (and, by default, for the first
    refresh of every profile to end, successfully or not)."""

    def __init__(self, directory, emulator, pki):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.emulator = emulator
        self.pki = Path(pki)
        self.config_path = self.dir / "agent.toml"
        self.socket_path = self.dir / "agent.sock"
        self.credentials_file = self.dir / "credentials"
        self.log_path = self.dir / "agent.stderr"
        self.ecs_port = free_port()
        self.agent = {"socket_path": str(self.socket_path), "ecs_listen": f"127.0.0.1:{self.ecs_port}",
                      "log_level": "debug", "hop_limit": 1, "allow_imdsv1": False,
                      "refresh_window": [0.5, 0.6], "retry_cap_seconds": 300}
        self.profiles = {}
        self.process = None
        self._log_file = None

    # --- configuration ---------------------------------------------------------------------------------

    def profile(self, name, **overrides):
        """Add (or replace) a profile served on its own IMDS port, ECS path and token file."""
        settings = {
            "certificate": str(self.pki / "p256.pem"),
            "private_key": str(self.pki / "p256.key"),
            "trust_anchor_arn": self.emulator.arns["trust_anchor_arn"],
            "profile_arn": self.emulator.arns["profile_arn"],
            "role_arn": self.emulator.arns["role_arn"],
            "endpoint": self.emulator.url,
            "ca_bundle": self.emulator.ca_bundle,
            "session_duration": 3600,
            "imds_listen": f"127.0.0.1:{free_port()}",
            "ecs_path": f"/creds/{name}",
            "ecs_token_file": str(self.dir / f"{name}.token"),
        }
        settings.update(overrides)
        self.profiles[name] = {k: v for k, v in settings.items() if v is not None}
        return self.profiles[name]

    def write_config(self, text=None):
        """Write the configuration (or `text` verbatim) atomically, mode 0600."""
        body = text if text is not None else render_config(self.agent, self.profiles)
        temporary = self.config_path.with_suffix(".tmp")
        temporary.write_text(body)
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.config_path)
        return body

    def imds_port(self, name="web"):
        listen = self.profiles[name]["imds_listen"]
        return int((listen[0] if isinstance(listen, list) else listen).rsplit(":", 1)[1])

    def ecs_url(self, name="web"):
        return f"http://127.0.0.1:{self.ecs_port}{self.profiles[name]['ecs_path']}"

    def ecs_token_file(self, name="web"):
        return Path(self.profiles[name]["ecs_token_file"])

    # --- process -----------------------------------------------------------------------------------------

    def start(self, *args, wait_refresh=True, env=None, write=True, wrapper=(), wait_started=True, program=AGENT,
              pass_fds=()):
        """Run `serve --config` (or `serve ARGS` when args are given) and wait until it is ready.

        `wrapper` is a command line put in front of the agent's (systemd-socket-activate ... --); with
        wait_started=False this returns as soon as the process is spawned, waiting for nothing. `program` is
        the executable (agent_for_any_user() for a wrapper that changes the user); `pass_fds` are inherited."""
        if write and not args:
            self.write_config()
        command = [*map(str, wrapper), str(program), "serve",
                   *(map(str, args) if args else ["--config", str(self.config_path)])]
        self._log_file = open(self.log_path, "ab")
        self.process = processes.spawn("agent", command, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                       stderr=self._log_file, env=clean_environment(env), pass_fds=pass_fds)
        if not wait_started:
            return self
        try:
            self.wait_for_log(r"event=started", timeout=START_TIMEOUT)
            if wait_refresh and args:
                self.wait_for_log(r"event=refresh_(ok|failed)\b", timeout=START_TIMEOUT)
            elif wait_refresh:
                for name in self.profiles:
                    self.wait_for_log(rf"event=refresh_(ok|failed)\b.*profile={re.escape(name)}\b",
                                      timeout=START_TIMEOUT)
        except BaseException:
            # A start that fails its wait is the test's failure; the agent must not outlive it.
            processes.end(self.process)
            raise
        return self

    def request_refresh(self, name="web"):
        """Ask the agent to refresh `name` now, as `rolesanywhere-agent refresh` does, without waiting for the
        answer (the caller waits for the refresh's log line)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(HTTP_TIMEOUT)
            s.connect(str(self.socket_path))
            s.sendall(f"refresh {name}\n".encode())

    def signal(self, signum):
        assert self.process is not None and self.process.poll() is None, "the agent is not running"
        self.process.send_signal(signum)

    def stop(self):
        """SIGTERM, then wait; returns the exit status (kills it after STOP_TIMEOUT and fails)."""
        if self.process is None:
            return None
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            processes.end(self.process)
            raise AssertionError(f"the agent did not stop within {STOP_TIMEOUT} s of SIGTERM")
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            # Every agent test is also a redaction test: whatever the emulator issued while this agent ran
            # (secret keys, session tokens, full access key ids) must not be in its log, at debug level.
            leaks = self.secrets_in_log()
            assert not leaks, f"the agent's log holds issued secrets: {leaks}"

    def secrets_in_log(self):
        """Which issued secrets (by kind) appear in the agent's stderr."""
        if not self.log_path.exists():
            return []
        text = self.log_path.read_text(errors="replace")
        try:
            recorded = self.emulator.stats()["recorded"]
        except Exception:  # the emulator was stopped by the test: nothing to compare with
            return []
        leaks = []
        for record in recorded:
            issued = record.get("credentials") or {}
            for kind in ("secretAccessKey", "sessionToken", "accessKeyId"):
                value = issued.get(kind)
                if value and value in text:
                    leaks.append(kind)
        return sorted(set(leaks))

    def running(self):
        return self.process is not None and self.process.poll() is None

    # --- logs ----------------------------------------------------------------------------------------------

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self, event):
        return [line for line in self.log().splitlines() if re.search(rf"\bevent={event}\b", line)]

    def wait_for_log(self, pattern, timeout=START_TIMEOUT, count=1):
        """Wait until `count` lines of the agent's stderr match `pattern`; returns the matching lines."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            lines = [line for line in self.log().splitlines() if regex.search(line)]
            if len(lines) >= count:
                return lines
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the agent exited ({self.process.returncode}) before logging "
                                     f"{pattern!r}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} line(s) matching {pattern!r} within {timeout} s:\n"
                                     f"{self.log()[-4000:]}")
            time.sleep(0.05)

    # --- the agent's commands ----------------------------------------------------------------------------

    def run(self, *args, env=None, timeout=30):
        return subprocess.run([str(AGENT), *map(str, args)], capture_output=True, stdin=subprocess.DEVNULL,
                              env=clean_environment(env), timeout=timeout)

    def status(self):
        """The agent's status JSON (status --json over the socket)."""
        result = self.run("status", "--socket", self.socket_path, "--json")
        assert result.returncode == 0, result.stderr.decode()
        return json.loads(result.stdout)

    def profile_status(self, name="web"):
        for entry in self.status()["profiles"]:
            if entry["name"] == name:
                return entry
        raise AssertionError(f"no profile {name} in the status")

    def credential_process(self, name="web", *extra):
        return self.run("credential-process", "--profile", name, "--socket", self.socket_path, *extra)

    def credential_process_command(self, name="web"):
        return f"{AGENT} credential-process --profile {name} --socket {self.socket_path}"


@functools.lru_cache(maxsize=None)
def agent_for_any_user():
    """The front and the full program copied side by side into a /tmp directory that every user can read (once
    per test process, removed at exit). A user other than root cannot traverse a build tree under a 0700
    directory (a clone in `mktemp -d`): setpriv still execs the front there with root's capabilities, but the
    front's own exec of the full program runs as that user and is refused."""
    directory = Path(tempfile.mkdtemp(prefix="rad-bin-", dir="/tmp"))
    atexit.register(shutil.rmtree, directory, True)
    os.chmod(directory, 0o755)
    for name in ("rolesanywhere-agent", "rolesanywhere-agent-core"):
        shutil.copy2(Path(AGENT).parent / name, directory / name)
        os.chmod(directory / name, 0o755)
    return directory / "rolesanywhere-agent"


def started_agent(directory, emulator, pki, **overrides):
    """An AgentProcess in `directory` serving the one profile `web` (with `overrides`), started and refreshed."""
    agent = AgentProcess(directory, emulator, pki)
    agent.profile("web", **overrides)
    return agent.start()


def renewable_identity(directory, pki):
    """Copies of the P-256 pair in `directory`/identity that a test replaces as a renewal does:
    (certificate path, key path)."""
    identity = Path(directory) / "identity"
    identity.mkdir()
    certificate, key = identity / "leaf.pem", identity / "leaf.key"
    replace_file(Path(pki) / "p256.pem", certificate, 0o644)
    replace_file(Path(pki) / "p256.key", key, 0o600)
    return certificate, key


def renewable_agent(directory, emulator, pki):
    """started_agent in `directory`/agent with a renewable_identity: (agent, certificate path, key path)."""
    certificate, key = renewable_identity(directory, pki)
    agent = started_agent(Path(directory) / "agent", emulator, pki, certificate=str(certificate),
                          private_key=str(key))
    return agent, certificate, key
