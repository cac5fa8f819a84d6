"""Fixtures for the systemd-boot tests: the .deb installed on this host, this host's systemd booted as PID 1 in
a container (radtest.machine.Machine), and the agent's shipped units driven there (Service).

Once per session: `package` installs the .deb with dpkg -i (and purges it at the end), `emulator` runs the
Roles Anywhere emulator on the host's 127.0.0.1 (the container shares the host's network namespace),
`config_dir` is the host directory bound read-only at /etc/rolesanywhere-agent (the host can rewrite its
files while the agent runs), and `machine` boots the container. Per test, `service` stops every agent unit,
removes the test drop-ins and writes a fresh config.toml, so that a test starts from the shipped units.

The emulator, the test PKI and the HTTP clients are the shared ones (tests/support/radtest). CTest passes
RAD_TEST_PKI, RAD_EMULATOR, RAD_PYTHON, RAD_SOURCE_DIR, RAD_BUILD_DIR, RAD_DEB_DIR and RAD_SYSTEMD_BOOT_STATE
(tests/systemd_boot/CMakeLists.txt).
Root is required; RAD_SKIP_SYSTEMD_BOOT=1 leaves every test out on purpose.
"""

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from radtest.agent import render_config
from radtest.environment import PYTHON, free_port, wait_until

from radtest.machine import Leftovers, Machine, parse_show

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("RAD_SOURCE_DIR") or HERE.parents[1])
BUILD = Path(os.environ.get("RAD_BUILD_DIR") or ROOT / "build")

PACKAGE = "rolesanywhere-agent"
DEB_DIR = Path(os.environ.get("RAD_DEB_DIR") or BUILD / "deb")
STATE = Path(os.environ.get("RAD_SYSTEMD_BOOT_STATE") or BUILD / "systemd-boot" / "state.json")
SKIP = os.environ.get("RAD_SKIP_SYSTEMD_BOOT") == "1"

SERVICE = "rolesanywhere-agent.service"
IMDS_SOCKET = "rolesanywhere-agent.socket"
ECS_SOCKET = "rolesanywhere-agent-ecs.socket"
FASTPATH_SOCKET = "rolesanywhere-agent-fastpath.socket"
SOCKETS = (IMDS_SOCKET, ECS_SOCKET, FASTPATH_SOCKET)
UNITS = (SERVICE, *SOCKETS, "rolesanywhere-agent-reload.path", "rolesanywhere-agent-reload.service",
         "rolesanywhere-agent-renew.path", "rolesanywhere-agent-renew.service")
SHIPPED_PORTS = {"imds": 9911, "ecs": 9912}
CONFIG_DIR = "/etc/rolesanywhere-agent"
RUNTIME_DIR = "/run/rolesanywhere-agent"
FASTPATH = f"{RUNTIME_DIR}/agent.sock"
TOKEN_FILE = f"{RUNTIME_DIR}/tokens/web.token"
READY_STATUS = "1/1 profiles serving credentials"
START_TIMEOUT = 30


def pytest_collection_modifyitems(config, items):
    if SKIP:
        for item in items:
            item.add_marker(pytest.mark.skip(reason="RAD_SKIP_SYSTEMD_BOOT=1"))


def run(*command, timeout=300, check=True):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if check:
        assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


def listening(port):
    """True when something accepts connections on the host's 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def package_installed():
    result = run("dpkg-query", "-W", "-f=${Status}", PACKAGE, check=False)
    return result.returncode == 0 and "not-installed" not in result.stdout


@pytest.fixture(scope="session")
def leftovers():
    """The state file that names what this session started; the cleanup test ends what a killed run left."""
    assert os.geteuid() == 0, ("the systemd-boot tests need root (dpkg -i, systemd-nspawn); "
                               "set RAD_SKIP_SYSTEMD_BOOT=1 to leave them out")
    for tool in ("systemd-nspawn", "nsenter", "setpriv", "dpkg"):
        assert shutil.which(tool), f"{tool} is not installed (scripts/install-deps)"
    state = Leftovers(STATE)
    alive = [p for p in state.read()["processes"] if Leftovers.alive(p)]
    assert not alive and not state.read()["package"], (
        f"an earlier run left {alive} / package {state.read()['package']}: run tests/support/end-leftovers {STATE}")
    return state


@pytest.fixture(scope="session")
def shipped_ports_taken(leftovers):
    """The shipped addresses (127.0.0.1:9911 and :9912) already in use on the host before the tests began."""
    return sorted(port for port in SHIPPED_PORTS.values() if listening(port))


@pytest.fixture(scope="session")
def package(leftovers):
    """The .deb installed on the host (dpkg -i) for the session, purged afterwards: the host as it was."""
    if not os.environ.get("RAD_DEB_DIR"):
        # Run by hand: build it here. Under CTest the fixture test package_deb has just built it.
        run(PYTHON, ROOT / "tests" / "support" / "build-deb", BUILD, DEB_DIR, timeout=600)
    debs = sorted(DEB_DIR.glob(f"{PACKAGE}_*.deb"))
    assert len(debs) == 1, f"expected one {PACKAGE} .deb in {DEB_DIR}, found {[p.name for p in debs]}"
    assert not package_installed(), f"{PACKAGE} is already installed on this host; not touching it"
    assert not Path(CONFIG_DIR).exists(), f"{CONFIG_DIR} exists on this host; not touching it"
    leftovers.set_package(PACKAGE)
    try:
        run("dpkg", "-i", debs[0])
        yield debs[0]
    finally:
        run("dpkg", "-P", PACKAGE)
        # dpkg removes config.toml.example; the directory goes once it is empty, as it was before.
        if Path(CONFIG_DIR).is_dir() and not any(Path(CONFIG_DIR).iterdir()):
            Path(CONFIG_DIR).rmdir()
        leftovers.set_package(None)
    assert not package_installed()


@pytest.fixture(scope="session")
def emulator(leftovers, tmp_path_factory):
    with leftovers.emulator(tmp_path_factory.mktemp("emulator")) as instance:
        yield instance


@pytest.fixture(scope="session")
def issued_so_far():
    """Every credential set the emulator issued in the tests that ended so far (`em` collects them)."""
    return []


@pytest.fixture
def em(emulator, issued_so_far):
    """The session's emulator, with faults and statistics reset for this test."""
    emulator.reset()
    yield emulator
    issued_so_far.extend(emulator.issued())


@pytest.fixture(scope="session")
def config_dir(tmp_path_factory, pki, emulator):
    """The host directory bound read-only at /etc/rolesanywhere-agent: the certificate and key (read by
    LoadCredential=, as root), the emulator's CA (read by the agent itself) and config.toml (Service)."""
    directory = tmp_path_factory.mktemp("etc-rolesanywhere-agent")
    os.chmod(directory, 0o755)
    for source, name, mode in ((pki / "p256.pem", "agent.pem", 0o644), (pki / "p256.key", "agent.key", 0o600),
                               (Path(emulator.ca_bundle), "ca.pem", 0o644)):
        shutil.copyfile(source, directory / name)
        os.chmod(directory / name, mode)
    return directory


@pytest.fixture(scope="session")
def machine(package, config_dir, leftovers, shipped_ports_taken, tmp_path_factory):
    """This host's systemd booted in a container, with config_dir at /etc/rolesanywhere-agent. On this first
    boot the presets enable the installed units; `service` stops them before each test."""
    box = Machine(f"rad-boot-{os.getpid()}", tmp_path_factory.mktemp("machine"), leftovers,
                  binds_ro=[(config_dir, CONFIG_DIR)])
    try:
        box.boot()
        yield box
    finally:
        box.shutdown()


class Service:
    """The agent's units in the booted container: test drop-ins, config.toml, systemctl and the journal."""

    def __init__(self, machine, config_dir, emulator):
        self.machine = machine
        self.config_dir = Path(config_dir)
        self.emulator = emulator
        self.ports = dict(SHIPPED_PORTS)

    # --- units -------------------------------------------------------------------------------------------

    def systemctl(self, *args, check=True, timeout=60):
        return self.machine.run("systemctl", "--no-pager", "--no-ask-password", *args, check=check, timeout=timeout)

    def reset(self):
        """Every agent unit stopped and its failure forgotten, the test drop-ins gone: the shipped units."""
        self.systemctl("stop", *UNITS)
        self.machine.run("sh", "-c", "rm -rf /etc/systemd/system/rolesanywhere-agent*.d")
        self.systemctl("daemon-reload")
        self.systemctl("reset-failed", *UNITS, check=False)

    def dropin(self, unit, name, text):
        """/etc/systemd/system/UNIT.d/NAME.conf (daemon-reload is the caller's, or start()'s)."""
        self.machine.write(f"/etc/systemd/system/{unit}.d/{name}.conf", text)

    def use_ports(self, imds, ecs):
        """Move the two TCP sockets to other ports (test drop-ins) and name the same ports in config.toml."""
        self.ports = {"imds": imds, "ecs": ecs}
        for unit, port in ((IMDS_SOCKET, imds), (ECS_SOCKET, ecs)):
            self.dropin(unit, "test-port", f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\n")
        self.systemctl("daemon-reload")

    def show(self, *properties, unit=SERVICE):
        return parse_show(self.systemctl("show", *[f"--property={p}" for p in properties], unit).stdout)

    def main_pid(self):
        pid = int(self.show("MainPID")["MainPID"])
        assert pid > 0, "the service has no main process"
        return pid

    def wait_for(self, condition, what, timeout=START_TIMEOUT, properties=("ActiveState", "SubState", "MainPID",
                                                                              "NRestarts", "StatusText", "Result")):
        """Poll `systemctl show` until condition(properties) holds; returns those properties."""
        last = {}

        def check():
            last.update(self.show(*properties))
            return dict(last) if condition(last) else None

        try:
            return wait_until(check, timeout, interval=0.2, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}; last {last}\n{self.journal()[-3000:]}") from None

    def wait_serving(self, timeout=START_TIMEOUT):
        """Active with the STATUS= of a refreshed profile."""
        return self.wait_for(lambda p: p["ActiveState"] == "active" and p["StatusText"] == READY_STATUS,
                             f"the service to report {READY_STATUS!r}", timeout)

    def start(self, *units):
        self.systemctl("daemon-reload")
        self.systemctl("start", *(units or (*SOCKETS, SERVICE)))

    # --- configuration -------------------------------------------------------------------------------------

    def write_file(self, name, data, mode=0o600):
        """Replace /etc/rolesanywhere-agent/NAME from the host (rename: readers see the old or the new file)."""
        temporary = self.config_dir / f".{name}.new"
        temporary.write_bytes(data if isinstance(data, bytes) else data.encode())
        os.chmod(temporary, mode)
        os.replace(temporary, self.config_dir / name)

    def config_text(self, agent=None, profile=None):
        arns = self.emulator.arns
        settings = {"log_level": "info", "socket_path": FASTPATH, "ecs_listen": f"127.0.0.1:{self.ports['ecs']}",
                    "refresh_window": [0.5, 0.6], "retry_cap_seconds": 300}
        settings.update(agent or {})
        web = {"certificate": "credential:agent.pem", "private_key": "credential:agent.key",
               "trust_anchor_arn": arns["trust_anchor_arn"], "profile_arn": arns["profile_arn"],
               "role_arn": arns["role_arn"], "endpoint": self.emulator.url, "ca_bundle": f"{CONFIG_DIR}/ca.pem",
               "session_duration": 3600, "imds_listen": f"127.0.0.1:{self.ports['imds']}",
               "ecs_path": "/credentials/web", "ecs_token_file": TOKEN_FILE}
        web.update(profile or {})
        return render_config(settings, {"web": {k: v for k, v in web.items() if v is not None}})

    def configure(self, agent=None, profile=None, mode=0o644):
        """Write config.toml: one profile `web` against the emulator, key material by credential:NAME."""
        self.write_file("config.toml", self.config_text(agent, profile), mode)

    # --- the journal ---------------------------------------------------------------------------------------

    def cursor(self):
        """The journal's current position, for journal(after=...)."""
        text = self.machine.run("journalctl", "--quiet", "-n", "1", "--show-cursor").stdout
        return text.rsplit("-- cursor: ", 1)[1].strip()

    def journal_entries(self, *args, unit=SERVICE, after=None):
        """The journal entries (dicts of fields) of `unit`, after the cursor `after`, with extra journalctl args.

        --cursor, not --after-cursor: journalctl 252 with --after-cursor drops the first entry that matches the
        other filters (-p) when the cursor's own entry does not; the entry at the cursor is dropped here."""
        command = ["journalctl", "--quiet", "--no-pager", "-o", "json", *args]
        if unit:
            command += ["-u", unit]
        if after:
            command += [f"--cursor={after}"]
        entries = [json.loads(line) for line in self.machine.run(*command).stdout.splitlines() if line.strip()]
        return [e for e in entries if e.get("__CURSOR") != after]

    def journal(self, *args, unit=SERVICE, after=None):
        """The MESSAGE of each entry of journal_entries, one per line."""
        return "".join(f"{e['MESSAGE']}\n" for e in self.journal_entries(*args, unit=unit, after=after)
                       if isinstance(e.get("MESSAGE"), str))

    def wait_for_journal(self, pattern, after, timeout=START_TIMEOUT, unit=SERVICE):
        regex = re.compile(pattern)
        return wait_until(lambda: [line for line in self.journal(unit=unit, after=after).splitlines()
                                   if regex.search(line)],
                          timeout, what=f"a journal line matching {pattern!r}")


@pytest.fixture
def service(machine, config_dir, em):
    """The shipped units with every agent unit stopped, the TCP sockets moved to free ports by test drop-ins
    (so that a process of the host on 9911/9912 does not matter), and config.toml written for those ports."""
    unit = Service(machine, config_dir, em)
    unit.reset()
    unit.use_ports(free_port(), free_port())
    unit.configure()
    yield unit
    unit.systemctl("stop", *UNITS, check=False)


@pytest.fixture
def shipped_service(service, shipped_ports_taken):
    """`service` on the shipped units exactly: no drop-in at all, the shipped addresses 127.0.0.1:9911/9912."""
    assert not shipped_ports_taken, (
        f"127.0.0.1 port(s) {shipped_ports_taken} were in use on this host before the tests began; the shipped "
        "sockets listen there (the container shares the host's network). Stop what listens there and rerun.")
    service.reset()
    service.ports = dict(SHIPPED_PORTS)
    service.configure()
    return service
