"""The operator suite's machinery: README.md's operator blocks, the release's build environment, a fresh Debian
root booted with its own systemd, the emulator standing in for AWS, and the stand-ins for what an operator does
by hand (the host's certificate and key, the editor).

RAD_OPERATOR_RELEASE says which release: debian12 (bookworm; the package block runs in this build tree) or
debian13 (trixie; the package block runs in scripts/test-debian13's build container, build-debian13/root with
build-debian13/src at /src and build-debian13/build at /build). The pristine root is made once by
scripts/debian-root and kept (build/operator/roots/bookworm, build-debian13/pristine); each run boots a copy of
it, removed at the end. CTest passes RAD_TEST_PKI, RAD_EMULATOR, RAD_PYTHON, RAD_SOURCE_DIR, RAD_BUILD_DIR,
RAD_OPERATOR_RELEASE and RAD_OPERATOR_STATE (tests/operator/CMakeLists.txt); RAD_DEBIAN13_DIR moves
build-debian13/.
"""

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from radtest.environment import pki_dir, wait_until
from radtest.machine import Leftovers, Machine, end_process, parse_show, process_start_time

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("RAD_SOURCE_DIR") or HERE.parents[1])
BUILD = Path(os.environ.get("RAD_BUILD_DIR") or ROOT / "build")
RELEASE = os.environ.get("RAD_OPERATOR_RELEASE", "debian12")
CODENAMES = {"debian12": "bookworm", "debian13": "trixie"}
assert RELEASE in CODENAMES, f"RAD_OPERATOR_RELEASE={RELEASE!r}: debian12 or debian13"
DEBIAN13_DIR = Path(os.environ.get("RAD_DEBIAN13_DIR") or ROOT / "build-debian13")
PRISTINE = {"debian12": BUILD / "operator" / "roots" / "bookworm", "debian13": DEBIAN13_DIR / "pristine"}[RELEASE]
STATE = Path(os.environ.get("RAD_OPERATOR_STATE") or BUILD / "operator" / f"state-{RELEASE}.json")
RUNS = BUILD / "operator" / "runs"

README = ROOT / "README.md"
BLOCK_NAMES = ("package", "install", "configure", "start", "status", "renew", "upgrade", "uninstall")
# The addresses of config.toml.example and the shipped sockets (IMDS web, ECS, health, IMDS batch): the machine
# shares the host's network, so they must be free on the host.
SHIPPED_PORTS = {"imds_web": 9911, "ecs": 9912, "health": 9913, "imds_batch": 9921}
PROFILES = ("web", "batch")
CONFIG_DIR = "/etc/rolesanywhere-agent"
# Where the blocks run in the machine: a checkout's top directory, as the README's relative paths expect.
CHECKOUT = "/root/checkout"
EDITED_CONFIG = "/root/operator-edit/config.toml"
EDITOR = "/root/operator-edit/editor"
CA_BUNDLE = f"{CONFIG_DIR}/endpoint-ca.pem"
SERVICE = "rolesanywhere-agent.service"
START_TIMEOUT = 60
BLOCK_TIMEOUT = 600


def readme_blocks(text):
    """{name: shell text} of README.md's ```sh operator:NAME blocks (GitHub shows them as plain sh)."""
    blocks = {}
    for match in re.finditer(r"^```sh operator:([a-z]+)\n(.*?)^```\s*$", text, re.M | re.S):
        assert match[1] not in blocks, f"README.md has two operator:{match[1]} blocks"
        blocks[match[1]] = match[2]
    return blocks


def run(*command, timeout=BLOCK_TIMEOUT, check=True, **kwargs):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, **kwargs)
    if check:
        assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def listening(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def blocks():
    found = readme_blocks(README.read_text())
    missing = [name for name in BLOCK_NAMES if name not in found]
    assert not missing, f"README.md has no ```sh operator:NAME block for {missing}"
    return found


@pytest.fixture(scope="session")
def deb_name(blocks):
    """The file the install block installs (./build/NAME.deb)."""
    match = re.search(r"\./build/(\S+\.deb)", blocks["install"])
    assert match, f"the install block names no ./build/*.deb:\n{blocks['install']}"
    return match[1]


@pytest.fixture(scope="session")
def leftovers():
    assert os.geteuid() == 0, "the operator suite needs root (debootstrap, systemd-nspawn, nsenter)"
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "cmake"):
        assert shutil.which(tool), f"{tool} is not installed (scripts/install-deps)"
    state = Leftovers(STATE)
    record = state.read()
    alive = [p for p in record["processes"] if Leftovers.alive(p)]
    assert not alive and not record["directories"], (
        f"an earlier run left {alive} / {record['directories']}: run tests/support/end-leftovers {STATE}")
    return state


@pytest.fixture(scope="session")
def ports_free(leftovers):
    taken = sorted(port for port in SHIPPED_PORTS.values() if listening(port))
    assert not taken, (f"127.0.0.1 port(s) {taken} are in use on this host; the README's configuration listens "
                       "there and the machine shares the host's network. Stop what listens there and rerun.")


@pytest.fixture(scope="session")
def pristine_root(leftovers):
    """The release's pristine root, made by scripts/debian-root unless an earlier run left it."""
    run("bash", ROOT / "scripts" / "debian-root", CODENAMES[RELEASE], PRISTINE, timeout=1200)
    return PRISTINE


def package_in_build_environment(block, leftovers):
    """Run the package block where this release builds; returns the directory that the block's `build` is."""
    if RELEASE == "debian12":
        # The block says `build`: a directory whose `build` is this build tree.
        workdir = BUILD / "operator" / "package-cwd"
        workdir.mkdir(parents=True, exist_ok=True)
        link = workdir / "build"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(BUILD)
        run("bash", "-e", "-x", "-c", block, cwd=workdir)
        return BUILD
    build_root, build_dir = DEBIAN13_DIR / "root", DEBIAN13_DIR / "build"
    assert (build_dir / "CMakeCache.txt").exists(), (
        f"{build_dir} holds no Debian 13 build: run scripts/test-debian13 first (scripts/test-all does)")
    # The build container of scripts/test-debian13, its build directory at /build: from /, `build` is /build.
    command = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--pipe", "--as-pid2",
               f"--directory={build_root}", f"--bind={DEBIAN13_DIR / 'src'}:/src", f"--bind={build_dir}:/build",
               "--chdir=/", "/bin/bash", "-e", "-x", "-c", block]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    leftovers.add_process(process.pid, "systemd-nspawn (Debian 13 build container)")
    try:
        output, _ = process.communicate(timeout=BLOCK_TIMEOUT)
    finally:
        if process.poll() is None:
            end_process(process.pid, process_start_time(process.pid))
            process.wait()
        leftovers.remove_process(process.pid)
    assert process.returncode == 0, f"the package block failed in the Debian 13 build container:\n{output[-4000:]}"
    return build_dir


@pytest.fixture(scope="session")
def deb(blocks, deb_name, leftovers):
    """The .deb the README's package block made, at the path the install block names (B2: a .deb at all)."""
    build_dir = package_in_build_environment(blocks["package"], leftovers)
    made = build_dir / deb_name
    others = sorted(p.name for p in build_dir.glob("*.deb") if p.name != deb_name)
    assert made.is_file(), (f"the package block made no {deb_name} in {build_dir} (found {others}): the install "
                            "block would not find its file")
    return made


@pytest.fixture(scope="session")
def emulator(leftovers, tmp_path_factory):
    with leftovers.emulator(tmp_path_factory.mktemp("emulator")) as instance:
        yield instance


@pytest.fixture(scope="session")
def machine(pristine_root, leftovers, ports_free, tmp_path_factory):
    """A copy of the pristine root, booted with its own systemd as PID 1; removed afterwards."""
    name = f"operator-{RELEASE}-{os.getpid()}"
    copy = RUNS / name
    RUNS.mkdir(parents=True, exist_ok=True)
    leftovers.add_directory(copy)
    run("cp", "-a", "--reflink=auto", pristine_root, copy, timeout=600)
    box = Machine(name, tmp_path_factory.mktemp("machine"), leftovers, image=copy)
    try:
        box.boot()
        yield box
    finally:
        box.shutdown()
        leftovers.remove_directory(copy)


class Operator:
    """What the operator does in the machine: the README's blocks, systemctl, and the files an operator provides."""

    def __init__(self, machine, blocks, emulator):
        self.machine = machine
        self.blocks = blocks
        self.emulator = emulator

    def block(self, name, check=True, env=None):
        """Run the README's block `name` as written: bash -e, from the checkout, as root."""
        variables = [f"{k}={v}" for k, v in {"HOME": "/root", "EDITOR": EDITOR, **(env or {})}.items()]
        result = self.machine.run("env", f"--chdir={CHECKOUT}", *variables, "bash", "-e", "-x", "-c",
                                  self.blocks[name], check=False, timeout=BLOCK_TIMEOUT)
        if check:
            assert result.returncode == 0, (f"the README's operator:{name} block failed (exit {result.returncode}):"
                                            f"\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n"
                                            f"the agent's journal:\n{self.journal()}")
        return result

    def systemctl(self, *args, check=True, timeout=120):
        return self.machine.run("systemctl", "--no-pager", "--no-ask-password", *args, check=check, timeout=timeout)

    def show(self, *properties, unit=SERVICE):
        return parse_show(self.systemctl("show", *[f"--property={p}" for p in properties], unit).stdout)

    def journal(self, unit=SERVICE, lines=60):
        """The unit's last journal lines, and `systemctl status` (which says which process failed how)."""
        journal = self.machine.run("journalctl", "--no-pager", "-q", "-u", unit, "-n", str(lines), check=False)
        status = self.machine.run("systemctl", "--no-pager", "status", unit, check=False)
        return f"{journal.stdout}{journal.stderr}\n{status.stdout}"

    def wait_active(self, what="the service to be active", timeout=START_TIMEOUT):
        last = {}

        def active():
            last.update(self.show("ActiveState", "SubState", "MainPID", "Result"))
            return dict(last) if last["ActiveState"] == "active" else None

        try:
            return wait_until(active, timeout, interval=0.2, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}; last {last}\n{self.journal()}") from None

    def forget_starts(self):
        """The start rate limit (5 starts in 10 s) counts the restarts a check made at machine speed, which an
        operator's own would not reach: a check resets it when it has put everything back."""
        self.systemctl("reset-failed", SERVICE)

    def main_pid(self):
        return int(self.show("MainPID")["MainPID"])

    def put(self, path, data, mode=0o644):
        """A file of the operator's in the machine (its parents made as needed)."""
        self.machine.write(path, data if isinstance(data, str) else data.decode(), mode=mode)

    def status_json(self, user=None):
        result = self.machine.run("rolesanywhere-agent", "status", "--json", check=False, user=user)
        assert result.returncode == 0, f"status --json: exit {result.returncode}\n{result.stderr}\n{self.journal()}"
        return json.loads(result.stdout)


@pytest.fixture(scope="session")
def operator(machine, blocks, emulator, deb, deb_name):
    """The machine with the checkout an operator would have: build/NAME.deb, the host's certificate and key
    (host.pem, host.key), the renewed pair (new.pem, new.key), and the stand-in editor."""
    pki = pki_dir()
    op = Operator(machine, blocks, emulator)
    machine.run("mkdir", "-p", f"{CHECKOUT}/build", "/root/operator-edit")
    target = Path(f"/proc/{machine.pid1}/root") / CHECKOUT.lstrip("/") / "build" / deb_name
    shutil.copyfile(deb, target)
    for source, name in (("p256.pem", "host.pem"), ("p256.key", "host.key"), ("p384.pem", "new.pem"),
                         ("p384.key", "new.key")):
        op.put(f"{CHECKOUT}/{name}", (pki / source).read_text(), mode=0o600)
    # The stand-in editor writes the edit the test prepared (operator.edit_config) over the file it is given.
    op.put(EDITOR, f'#!/bin/sh\nexec cp "{EDITED_CONFIG}" "$1"\n', mode=0o755)
    return op


# The steps follow each other like an operator's session (install before configure, ...): once one has failed,
# each later one fails at once, naming it, rather than running against a machine in an unknown state. A check
# marked `independent` puts back what it changed whatever its outcome, so its failure stops nothing.
_failed_step = []


def independent(test):
    test.operator_independent = True
    return test


def pytest_runtest_makereport(item, call):
    if (call.excinfo is not None and call.when in ("setup", "call") and not _failed_step
            and not getattr(item.function, "operator_independent", False)):
        _failed_step.append(item.name)


def pytest_runtest_setup(item):
    if _failed_step:
        pytest.fail(f"not run: the earlier step {_failed_step[0]} failed")


def edit_config(example, emulator):
    """What the operator writes with $EDITOR into config.toml (a copy of config.toml.example): the emulator's
    ARNs in every profile, its endpoint and CA bundle (a private endpoint's settings), and /healthz on."""
    arns = emulator.arns
    replacements = [
        (r'^trust_anchor_arn = "[^"]*"', f'trust_anchor_arn = "{arns["trust_anchor_arn"]}"'),
        (r'^profile_arn = "[^"]*"', f'profile_arn = "{arns["profile_arn"]}"'),
        (r'^role_arn = "[^"]*"', f'role_arn = "{arns["role_arn"]}"'),
        (r'^# endpoint = "[^"]*"', f'endpoint = "{emulator.url}"'),
        (r'^# ca_bundle = "[^"]*"', f'ca_bundle = "{CA_BUNDLE}"'),
    ]
    text = example
    for pattern, value in replacements:
        text, count = re.subn(pattern, value, text, flags=re.M)
        assert count == len(PROFILES), (f"config.toml.example has {count} lines matching {pattern!r}, one per "
                                        f"profile {PROFILES} expected: the stand-in editor cannot fill it in")
    text, count = re.subn(r'^# health_listen = "127\.0\.0\.1:9913"', 'health_listen = "127.0.0.1:9913"', text,
                          flags=re.M)
    assert count == 1, "config.toml.example has no commented health_listen = \"127.0.0.1:9913\""
    return text
