"""S2, S3 and S4 (docs/test-plan.md §8): what another process can learn from the agent's /proc entries,
core dumps and ptrace, and what stays in the agent's memory.

S2: /proc/<pid>/cmdline and environ of `serve` (passphrase from a file) and of `credential-process` caught while
    it waits on a slow CreateSession, with the passphrase given by --pkcs8-password-env (wiped from the
    environment in place) and by --pkcs8-password (wiped from argv): 0 hits.
S3: RLIMIT_CORE 0 in /proc/<pid>/limits; not dumpable (as a non-root user, its /proc files belong to root); a
    same-uid, non-root ptrace attach and reads of /proc/<pid>/mem and environ are refused, while the same user
    may attach to an ordinary process of its own (so the refusal is the agent's doing). kill -SEGV is not
    sent: core_pattern is system-wide and is not changed by a test.
S4: VmLck is printed as found. The agent does not mlock its memory or use OpenSSL's secure heap (not
    implemented: see tests/README.md), so there is no VmLck bar; what is checked is that the passphrase is
    not left in the agent's memory once the key is loaded (a scan of every writable mapping, as root).
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from radtest.agent import AgentProcess, agent_for_any_user
from radtest.environment import AGENT, clean_environment, wait_until
from radtest.rawhttp import vm_kib

PASSPHRASE_KEY = "p256-enc-aes256-sha256.key"
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
PTRACE_PROBE = r"""
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
pid = int(sys.argv[1])
result = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
print("attached" if result == 0 else errno.errorcode[ctypes.get_errno()])
if result == 0:
    libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
for name in ("environ", "mem"):
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            f.read(1)
        print(name, "readable")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
"""


def proc_text(pid, name):
    return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def test_s2_proc_cmdline_and_environ_hold_no_passphrase(agent, em, pki, tmp_path):
    passphrase = (pki / "passphrase.txt").read_text().strip()
    process = AgentProcess(tmp_path, em, pki)
    process.profile("web", private_key=str(pki / PASSPHRASE_KEY), passphrase_file=str(pki / "passphrase.txt"))
    process.start()
    try:
        ecs_token = process.ecs_token_file().read_text()
        for name in ("cmdline", "environ"):
            text = proc_text(process.process.pid, name)
            assert passphrase not in text and ecs_token not in text, f"serve: {name} holds a secret"
    finally:
        assert process.stop() == 0

    base = [str(AGENT), "credential-process", "--certificate", str(pki / "p256.pem"),
            "--private-key", str(pki / PASSPHRASE_KEY), *agent.target_args()]
    variants = {"--pkcs8-password-env": (base + ["--pkcs8-password-env", "RAD_S2_PASS"], {"RAD_S2_PASS": passphrase}),
                "--pkcs8-password": (base + ["--pkcs8-password", passphrase], {})}
    figures = []
    for name, (command, env) in variants.items():
        em.reset()  # the serve run above made CreateSession calls: count this child's only
        em.faults({"delay_ms": 2500})  # the process is alive, key loaded, while it waits for the answer
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=clean_environment(env), stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: em.stats()["requests"] >= 1, 15, interval=0.02, what="the CreateSession")
            texts = {n: proc_text(child.pid, n) for n in ("cmdline", "environ")}
        finally:
            out, err = child.communicate(timeout=30)
        assert child.returncode == 0, err.decode()
        for proc_name, text in texts.items():
            assert passphrase not in text, f"{name}: the passphrase is in /proc/<pid>/{proc_name}"
        if name == "--pkcs8-password-env":
            assert "RAD_S2_PASS=" in texts["environ"], "the variable itself should remain (emptied in place)"
        figures.append(f"{name}: cmdline {texts['cmdline'][-60:]!r}")
    print("\nS2 " + "; ".join(figures))


@pytest.fixture
def nobody_agent(emulator, pki):
    """An agent run as `nobody` with its own copies of everything it reads (owned by nobody, mode 0600)."""
    directory = Path(tempfile.mkdtemp(prefix="rad-s3-", dir="/tmp"))
    os.chmod(directory, 0o755)
    emulator.reset()
    for name in ("p256.pem", "p256.key", PASSPHRASE_KEY, "passphrase.txt"):
        shutil.copyfile(pki / name, directory / name)
    shutil.copyfile(emulator.ca_bundle, directory / "ca.pem")
    process = AgentProcess(directory / "agent", emulator, pki)
    process.profile("web", certificate=str(directory / "p256.pem"), private_key=str(directory / PASSPHRASE_KEY),
                    passphrase_file=str(directory / "passphrase.txt"), ca_bundle=str(directory / "ca.pem"))
    process.write_config()
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, 65534, 65534)
        if path.is_file():
            os.chmod(path, 0o600)
    process.start(wrapper=AS_NOBODY, write=False, program=agent_for_any_user())
    yield process
    try:
        assert process.stop() == 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_s3_no_core_dumps_and_no_same_uid_ptrace(nobody_agent):
    pid = nobody_agent.process.pid
    assert Path(f"/proc/{pid}/status").read_text().count("Uid:\t65534") == 1, "the agent is not running as nobody"
    limits = Path(f"/proc/{pid}/limits").read_text()
    core = re.search(r"^Max core file size\s+(\S+)\s+(\S+)", limits, re.M)
    assert core and core.groups() == ("0", "0"), f"RLIMIT_CORE is not 0/0: {core and core.groups()}"
    # A non-dumpable process's /proc/<pid> files belong to root, whatever its uid (proc(5)).
    owner = os.stat(f"/proc/{pid}/environ").st_uid
    assert owner == 0, f"/proc/{pid}/environ belongs to uid {owner}: the agent is dumpable"

    probe = subprocess.run(AS_NOBODY + ["/usr/bin/python3", "-c", PTRACE_PROBE, str(pid)], capture_output=True,
                           text=True, timeout=30)
    lines = probe.stdout.split("\n")
    assert lines[0] == "EPERM", f"ptrace attach by the same uid: {probe.stdout} {probe.stderr}"
    assert "environ readable" not in probe.stdout and "mem readable" not in probe.stdout, probe.stdout

    # Control: the same user may attach to an ordinary process of its own, so the refusal above is the agent's.
    sleeper = subprocess.Popen(AS_NOBODY + ["sleep", "30"])
    try:
        time.sleep(0.2)
        control = subprocess.run(AS_NOBODY + ["/usr/bin/python3", "-c", PTRACE_PROBE, str(sleeper.pid)],
                                 capture_output=True, text=True, timeout=30)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert control.stdout.startswith("attached"), f"control attach failed: {control.stdout} {control.stderr}"
    print(f"\nS3: RLIMIT_CORE {core.groups()}, /proc owner uid {owner}, same-uid ptrace {lines[0]}, "
          f"{lines[1]}, {lines[2]}; control attach: {control.stdout.split()[0]}")


def test_s4_memory_figures_and_no_passphrase_left_in_memory(nobody_agent):
    pid = nobody_agent.process.pid
    passphrase = Path(nobody_agent.profiles["web"]["passphrase_file"]).read_text().strip().encode()
    token_file = nobody_agent.ecs_token_file()
    vm_lck = vm_kib(pid, "VmLck")
    hits = 0
    scanned = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "w" not in fields[1] or (len(fields) > 5 and fields[5].startswith("[v")):
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue
            scanned += len(data)
            hits += data.count(passphrase)
    print(f"\nS4: VmLck {vm_lck} kB (no mlock, no secure heap); {scanned // 1024} KiB of writable memory "
          f"scanned, passphrase found {hits} time(s); ECS token file {token_file.name}")
    assert scanned > 0
    assert hits == 0, f"the passphrase is still in the agent's memory ({hits} copies)"
