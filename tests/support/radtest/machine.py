"""A systemd booted as PID 1 in a container, commands run in it, and a record of every process the tests start
so that nothing outlives them (the systemd-boot and operator suites).

Machine boots either this host's own systemd (`systemd-nspawn --volatile=yes -D /`: the host's /usr read-only,
an empty /etc and /var) or a Debian root of its own (`systemd-nspawn -D ROOT`), in the host's network namespace
either way, and runs commands in it through `nsenter -t PID1 -a`, as root or, through setpriv, as any user.
Poller calls a client in a background thread and counts what failed. Leftovers records the PIDs (and start
times) of the processes the tests start, and the directories they made, in a state file, so that the suites'
cleanup programs end and remove them even when pytest itself was killed. Every wait is bounded.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from radtest.emulator import Emulator
from radtest.environment import wait_until

COMMAND_TIMEOUT = 60
BOOT_TIMEOUT = 90
SHUTDOWN_TIMEOUT = 30
# What a command inside the container sees: no variable of the test's environment leaks in.
CONTAINER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                 "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "SYSTEMD_LOG_COLOR": "0"}


def process_start_time(pid):
    """The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])



class Leftovers:
    """A JSON state file naming the processes the tests started (pid, start time, what), whether they installed
    the package, and the directories they made. The tests remove what they end; tests/support/end-leftovers ends
    the rest."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    def read(self):
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            state = {}
        return {"processes": [], "package": None, "directories": [], **state}

    def _write(self, state):
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=1))
        os.replace(temporary, self.path)

    def add_process(self, pid, what):
        with self.lock:
            state = self.read()
            state["processes"].append({"pid": pid, "start": process_start_time(pid), "what": what})
            self._write(state)

    def remove_process(self, pid):
        with self.lock:
            state = self.read()
            state["processes"] = [p for p in state["processes"] if p["pid"] != pid]
            self._write(state)

    def set_package(self, name):
        with self.lock:
            state = self.read()
            state["package"] = name
            self._write(state)

    def add_directory(self, path):
        """A directory the tests made (a machine's root), removed by remove_directory or by the cleanup."""
        with self.lock:
            state = self.read()
            state["directories"].append(str(path))
            self._write(state)

    def remove_directory(self, path):
        """Remove `path` (never crossing into another file system) and forget it."""
        remove_tree(path)
        with self.lock:
            state = self.read()
            state["directories"] = [d for d in state["directories"] if d != str(path)]
            self._write(state)

    @contextlib.contextmanager
    def emulator(self, directory):
        """The bundled emulator serving from `directory`, recorded while it runs and stopped afterwards."""
        instance = Emulator(directory)
        self.add_process(instance.process.pid, "ra_emulator.py")
        try:
            yield instance
        finally:
            instance.stop()
            self.remove_process(instance.process.pid)

    @staticmethod
    def alive(entry):
        """True while the recorded process still runs (same pid and the same start time: not a reused pid)."""
        return entry["start"] is not None and process_start_time(entry["pid"]) == entry["start"]


def remove_tree(path):
    """rm -rf --one-file-system: a machine's root may hold mount points while its container still runs."""
    if Path(path).exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True, timeout=300)


def end_process(pid, start, term_timeout=SHUTDOWN_TIMEOUT):
    """SIGTERM `pid` (if it is still the process that started at `start`), wait, then SIGKILL. True if it ran."""
    if start is None or process_start_time(pid) != start:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + term_timeout
    while process_start_time(pid) == start and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_start_time(pid) == start:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True


class Machine:
    """A systemd booted as PID 1 by systemd-nspawn (this host's, or that of the root `image`); `run` executes a
    command inside it."""

    def __init__(self, name, directory, leftovers, binds_ro=(), kernel_args=(), image=None):
        self.name = name
        self.dir = Path(directory)
        self.leftovers = leftovers
        self.binds_ro = list(binds_ro)
        self.kernel_args = list(kernel_args)
        self.image = image
        self.log_path = self.dir / "nspawn.log"
        self.process = None
        self.pid1 = None

    def boot(self, timeout=BOOT_TIMEOUT):
        root = ["--volatile=yes", "--directory=/"] if self.image is None else [f"--directory={self.image}"]
        command = ["systemd-nspawn", "--quiet", *root, "--boot", "--register=no", "--keep-unit",
                   f"--machine={self.name}",
                   *[f"--bind-ro={source}:{target}" for source, target in self.binds_ro],
                   "--", "systemd.firstboot=off", *self.kernel_args]
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        self.leftovers.add_process(self.process.pid, "systemd-nspawn")
        deadline = time.monotonic() + timeout
        self.pid1 = wait_until(self._find_pid1, timeout, what="the container's PID 1 to appear")
        # "offline" until PID 1 answers on its bus; then --wait returns once the boot has ended. "degraded" is
        # fine: units of this host that cannot run in a container (no CAP_NET_ADMIN) fail.
        state = wait_until(lambda: self.run("systemctl", "is-system-running", check=False).stdout.strip()
                           not in ("offline", "") and "up", max(1, deadline - time.monotonic()), what="PID 1's bus")
        result = self.run("systemctl", "is-system-running", "--wait", check=False,
                          timeout=max(1, deadline - time.monotonic()))
        state = result.stdout.strip()
        assert state in ("running", "degraded"), f"the container did not boot: {state}\n{self.boot_log()}"
        return self

    def _find_pid1(self):
        if self.process.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited ({self.process.returncode}):\n{self.boot_log()}")
        own_namespace = os.readlink("/proc/self/ns/pid")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                namespace = os.readlink(entry / "ns" / "pid")
            except (OSError, ValueError):
                continue
            if ppid == self.process.pid and namespace != own_namespace:
                return int(entry.name)
        return None

    def boot_log(self):
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def shutdown(self, timeout=SHUTDOWN_TIMEOUT):
        """SIGTERM to systemd-nspawn (it asks PID 1 to power off), bounded; SIGKILL to PID 1 and nspawn after."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # Killing the container's PID 1 ends every process of its PID namespace.
                if self.pid1 is not None:
                    try:
                        os.kill(self.pid1, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.process.kill()
                self.process.wait(timeout=timeout)
        self.leftovers.remove_process(self.process.pid)

    def command(self, *args, user=None, groups=()):
        """The host command line that runs `args` in the container (as `user`, with supplementary `groups`)."""
        prefix = ["nsenter", "-t", str(self.pid1), "-a"]
        if user is not None:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}",
                       f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups", "--"]
        return prefix + [str(a) for a in args]

    def run(self, *args, check=True, timeout=COMMAND_TIMEOUT, input=None, user=None, groups=()):
        """Run `args` in the container; returns the CompletedProcess (text). check: assert exit status 0."""
        # errors="replace": journalctl -o export may carry binary fields.
        result = subprocess.run(self.command(*args, user=user, groups=groups), capture_output=True, text=True,
                                errors="replace", timeout=timeout, env=CONTAINER_ENV,
                                input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check:
            assert result.returncode == 0, (f"{' '.join(map(str, args))}: exit {result.returncode}\n"
                                            f"{result.stdout}\n{result.stderr}")
        return result

    def write(self, path, text, mode=0o644):
        """Create or replace a file inside the container (its parents made as needed)."""
        self.run("sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1.new" && chmod "$2" "$1.new" && mv "$1.new" "$1"',
                 "sh", path, format(mode, "o"), input=text)

    def read(self, path):
        return self.run("cat", path).stdout

    def host_pid(self, pid):
        """The host's PID of the container's process `pid` (NSpid: host first, container last)."""
        namespace = os.readlink(f"/proc/{self.pid1}/ns/pid")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "ns" / "pid") != namespace:
                    continue
                nspid = re.search(r"^NSpid:\s+(.*)$", (entry / "status").read_text(), re.M)[1].split()
            except (OSError, TypeError):
                continue
            if int(nspid[-1]) == pid:
                return int(nspid[0])
        raise AssertionError(f"no process {pid} in the container")


def parse_show(text):
    """`systemctl show` output (KEY=VALUE lines) as a dict."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class Poller:
    """Calls `probe()` every `interval` s in a background thread between __enter__ and __exit__, and records
    each answer: `probe` returns a true value for a success, a false one or an exception for a failure."""

    def __init__(self, probe, interval=0.05):
        self.probe = probe
        self.interval = interval
        self.results = []  # (monotonic time, ok, detail)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            try:
                ok, detail = bool(self.probe()), ""
            except Exception as e:  # noqa: BLE001 - every failure of the client counts, whatever it is
                ok, detail = False, f"{type(e).__name__}: {e}"
            self.results.append((time.monotonic(), ok, detail))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the poller's client did not return within 30 s"

    @property
    def failures(self):
        return [(t, detail) for t, ok, detail in self.results if not ok]

    def wait_for_answers(self, count, timeout):
        wait_until(lambda: len(self.results) >= count, timeout, what=f"{count} answers of the poller")
