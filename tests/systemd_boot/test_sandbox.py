"""The shipped unit's sandbox, read from the running agent itself: its /proc status (capabilities,
no_new_privs, the seccomp filter, umask), its limits, and its own mount namespace (the OS read-only, the
runtime directory writable, /proc hidden). Proven about the agent's process, not about a copy of the unit."""

import os
import re
import subprocess

from conftest import RUNTIME_DIR

NO_CAPABILITIES = "0000000000000000"


def in_namespace_of(pid, *command):
    """Run `command` (as root) in the mount namespace of host process `pid`."""
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "--", *command], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def test_credentials_of_the_process(service, machine):
    service.start()
    pid = int(service.wait_serving()["MainPID"])
    status = dict(re.findall(r"^(\w+):\s*(.*)$", machine.read(f"/proc/{pid}/status"), re.M))
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert status[field] == NO_CAPABILITIES, (field, status[field])
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2", "no seccomp filter"  # SECCOMP_MODE_FILTER
    assert int(status["Seccomp_filters"]) >= 1
    assert status["Umask"] == "0077"
    limits = machine.read(f"/proc/{pid}/limits")
    assert re.search(r"^Max core file size\s+0\s+0\s", limits, re.M), limits


def test_the_agent_sees_a_read_only_system(service, machine):
    service.start()
    pid = machine.host_pid(int(service.wait_serving()["MainPID"]))
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink(f"/proc/{machine.pid1}/ns/mnt"), \
        "the agent shares PID 1's mount namespace"

    # Even root, in the agent's mount namespace, cannot write outside what the unit makes writable.
    for path in ("/etc/rad-probe", "/etc/rolesanywhere-agent/rad-probe", "/usr/rad-probe", "/var/lib/rad-probe"):
        result = in_namespace_of(pid, "touch", path)
        assert result.returncode != 0 and "Read-only file system" in result.stderr, (path, result.stderr)
    # The control: the runtime directory (RuntimeDirectory=) is writable there, and so is its /tmp, which is
    # its own (PrivateTmp=yes): what it holds is not in the container's /tmp.
    result = in_namespace_of(pid, "sh", "-c", 'touch "$1" && rm "$1"', "sh", f"{RUNTIME_DIR}/tokens/.rad-probe")
    assert result.returncode == 0, result.stderr
    assert in_namespace_of(pid, "touch", "/tmp/.rad-probe").returncode == 0
    try:
        assert machine.run("test", "-e", "/tmp/.rad-probe", check=False).returncode != 0
    finally:
        in_namespace_of(pid, "rm", "-f", "/tmp/.rad-probe")

    # ProtectProc=invisible, ProcSubset=pid: its /proc hides other users' processes and the kernel's files.
    mounts = [line.split() for line in open(f"/proc/{pid}/mountinfo").read().splitlines()]
    proc = [m for m in mounts if m[4] == "/proc"]
    assert proc and "hidepid=invisible" in proc[-1][-1] and "subset=pid" in proc[-1][-1], proc
    # PrivateDevices=yes: a /dev of its own without the host's block devices.
    dev = in_namespace_of(pid, "ls", "/dev").stdout.split()
    assert "null" in dev and not any(re.fullmatch(r"(sd|vd|nvme|xvd)\w*", name) for name in dev), dev
