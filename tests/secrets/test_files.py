"""S5 and S6 (docs/test-plan.md §8): the key-file permission matrix, and the credentials file and its
directory never wider than 0600/0700, not even for a moment, when the agent runs under umask 0000."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from radtest.agent import AgentProcess, agent_for_any_user
from radtest.environment import AGENT, clean_environment

EX_NOPERM = 77
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def sign(certificate, key, as_user=(), program=AGENT):
    return subprocess.run([*as_user, str(program), "sign-string", "--certificate", str(certificate), "--private-key",
                           str(key)], capture_output=True, timeout=30, env=clean_environment(),
                          stdin=subprocess.DEVNULL)


def key_matrix(pki, base):
    """name -> (key path, expected exit code, regex of the refusal)."""
    cases = {}

    def place(name, mode=0o600, owner=0, dir_mode=0o700):
        directory = base / name
        directory.mkdir()
        key = directory / "p256.key"
        shutil.copyfile(pki / "p256.key", key)
        os.chown(key, owner, owner)
        os.chmod(key, mode)
        os.chmod(directory, dir_mode)
        return key

    for mode, code in ((0o400, 0), (0o600, 0), (0o640, EX_NOPERM), (0o644, EX_NOPERM), (0o660, EX_NOPERM),
                       (0o604, EX_NOPERM), (0o700, 0)):
        cases[f"mode {mode:04o}"] = (place(f"m{mode:o}", mode), code, rf"{mode:04o}" if code else None)
    cases["owned by root (the caller)"] = (place("root", 0o600, 0), 0, None)
    cases["owned by another user"] = (place("other", 0o600, 65534), EX_NOPERM, r"uid 65534")
    # Symbolic links are followed when only root or the caller can change them (a Kubernetes Secret volume's
    # tls.key -> ..data/tls.key), and the file they lead to is judged as if named.
    target = place("link-target")

    def link(name, owner=0, dir_mode=0o700, to=target):
        directory = base / name
        directory.mkdir()
        os.symlink(os.path.relpath(to, directory), directory / "p256.key")
        os.lchown(directory / "p256.key", owner, owner)
        os.chmod(directory, dir_mode)
        return directory / "p256.key"

    cases["a symlink owned by root"] = (link("link-root"), 0, None)
    cases["a symlink owned by another user"] = (link("link-other", owner=65534), EX_NOPERM,
                                                r"symbolic link .*p256\.key is owned by uid 65534")
    cases["a symlink in a directory its group may write"] = (link("link-group-dir", dir_mode=0o770), EX_NOPERM,
                                                             r"on its way \(through a symbolic link\) is writable")
    cases["a symlink to a key of mode 0644"] = (link("link-0644", to=place("link-target-0644", 0o644)), EX_NOPERM,
                                               r"0644")
    cases["parent dir writable by others"] = (place("open-dir", dir_mode=0o777), EX_NOPERM, r"writable by others")
    cases["parent dir writable by others, sticky"] = (place("sticky-dir", dir_mode=0o1777), 0, None)
    cases["parent dir writable by group"] = (place("group-dir", dir_mode=0o770), 0, None)
    return cases


def test_s5_key_file_permission_matrix(pki, tmp_path):
    base = tmp_path / "s5"
    base.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(base, 0o755)
    figures, failures = [], []
    for name, (key, code, pattern) in key_matrix(pki, base).items():
        result = sign(pki / "p256.pem", key)
        stderr = result.stderr.decode(errors="replace").strip()
        figures.append(f"{'accepted' if result.returncode == 0 else 'refused '} ({result.returncode}) {name}")
        if result.returncode != code or (pattern and not re.search(pattern, stderr)):
            failures.append(f"{name}: exit {result.returncode} (expected {code}): {stderr}")
    # A user other than root: its own 0600 key is accepted, root's 0400 copy (LoadCredential) unreadable to it
    # is refused as unreadable, not silently skipped.
    own = Path(tempfile.mkdtemp(prefix="rad-s5-", dir="/tmp"))
    os.chmod(own, 0o755)
    for name in ("p256.key", "p256.pem"):
        shutil.copyfile(pki / name, own / name)
        os.chown(own / name, 65534, 65534)
    os.chmod(own / "p256.key", 0o600)
    result = sign(own / "p256.pem", own / "p256.key", AS_NOBODY, agent_for_any_user())
    figures.append(f"{'accepted' if result.returncode == 0 else 'refused '} ({result.returncode}) nobody's own key")
    if result.returncode != 0:
        failures.append(f"nobody's own 0600 key: {result.stderr.decode()}")
    shutil.rmtree(own, ignore_errors=True)
    print("\nS5:\n" + "\n".join(figures))
    assert not failures, "\n".join(failures)


class ModeWatcher(threading.Thread):
    """Polls (as fast as it can) the modes of a directory and everything in it, recording the widest seen."""

    def __init__(self, directory):
        super().__init__(daemon=True)
        self.directory = directory
        self.stop_event = threading.Event()
        self.samples = 0
        self.too_wide = []
        self.seen = set()

    def run(self):
        while not self.stop_event.is_set():
            self.samples += 1
            try:
                entries = [self.directory, *self.directory.iterdir()]
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    st = entry.lstat()
                except FileNotFoundError:
                    continue
                mode = st.st_mode & 0o7777
                self.seen.add(entry.name)
                if mode & 0o077:
                    self.too_wide.append(f"{entry} {mode:04o}")


def test_s6_credentials_file_and_directory_stay_private_under_umask_0000(em, pki, tmp_path):
    if shutil.which("strace") is None:
        pytest.fail("S6 needs strace (Debian package strace)")
    target_dir = tmp_path / "aws" / "nested"
    credentials = target_dir / "credentials"
    trace = tmp_path / "strace.txt"
    process = AgentProcess(tmp_path / "agent", em, pki)
    process.profile("web", credentials_file_profile="web", credentials_file=str(credentials))
    process.write_config()
    watcher = ModeWatcher(target_dir)
    watcher.start()
    previous = os.umask(0)
    try:
        process.start(wrapper=["strace", "-f", "-qq", "-o", trace, "-e",
                               "trace=mkdir,mkdirat,open,openat,chmod,fchmod,fchmodat", "--"], write=False)
    finally:
        os.umask(previous)
    agent_pid = None
    try:
        process.wait_for_log(r"event=credentials_file_written\b")
        # process.process is strace; the agent is its child, and signals go to it.
        children = Path(f"/proc/{process.process.pid}/task/{process.process.pid}/children").read_text().split()
        assert len(children) == 1, children
        agent_pid = int(children[0])
        for n in range(2, 5):
            process.request_refresh()
            process.wait_for_log(r"event=credentials_file_written\b", count=n)
    finally:
        watcher.stop_event.set()
        watcher.join(timeout=5)
        if agent_pid is not None:
            os.kill(agent_pid, signal.SIGTERM)
        assert process.stop() == 0
    assert (credentials.stat().st_mode & 0o777) == 0o600
    assert (target_dir.stat().st_mode & 0o777) == 0o700 and ((tmp_path / "aws").stat().st_mode & 0o777) == 0o700
    # The syscalls that made them: every mkdir, O_CREAT open and chmod under the credentials directory asks for a
    # private mode itself (under umask 0000 the mode given is the mode the file gets).
    calls = [line for line in trace.read_text().splitlines() if str(tmp_path / "aws") in line
             and re.search(r"\b(mkdir|mkdirat|chmod|fchmodat)\(|O_CREAT", line)]
    wide = []
    for line in calls:
        mode = re.search(r",\s*0?([0-7]{3,4})\)\s*=", line)
        if mode is None or int(mode[1], 8) & 0o077:
            wide.append(line)
    print(f"\nS6: {watcher.samples} polls saw {sorted(watcher.seen)}; {len(calls)} creating syscalls, "
          f"{len(wide)} with a mode wider than 0600/0700; widest seen by the poller: {watcher.too_wide[:3] or 'none'}")
    assert calls, "strace saw no creation in the credentials directory"
    assert not wide, "\n".join(wide)
    assert not watcher.too_wide, watcher.too_wide[:10]
