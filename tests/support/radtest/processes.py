"""The long-running processes that tests start through this package (agents, emulators).

Each one runs in a process group of its own (a new session) and is recorded with what it is, so that whatever
a test leaves running, the process itself or anything it started (the agent under an `strace -f` wrapper), is
found and ended by its group id: after every test by the plugin (pytest_plugin.nothing_left_running, for what
the test started), and at exit for everything still recorded (what a fixture of a wider scope or an
interrupted run left behind; end_everything_on(SIGTERM) covers a run stopped by `timeout` or a supervisor,
which would otherwise end pytest without its exit handlers).
"""

import atexit
import os
import signal
import subprocess
import time

# How long the rest of a group gets to exit after the process that leads it has (a wrapper's child).
GROUP_EXIT_GRACE = 5
REAP_TIMEOUT = 15

_started = []  # (what, subprocess.Popen), oldest first


def spawn(what, command, **popen_arguments):
    """subprocess.Popen(command) in a new session, recorded as `what` ("agent", "emulator")."""
    process = subprocess.Popen(command, start_new_session=True, **popen_arguments)
    _started.append((what, process))
    return process


def mark():
    """A point in the record: end_left_running(mark) looks only at what was started after it."""
    return len(_started)


def group_members(pgid):
    """The pids of the processes of group `pgid` that still run (zombies excluded)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # it has just exited
        state, _ppid, group = stat[stat.rindex(b")") + 2:].split()[:3]
        if int(group) == pgid and state != b"Z":
            members.append(int(entry.name))
    return members


def end(process):
    """SIGKILL to the process's whole group, then reap the process. Nothing is sent once the group is gone: its
    id could since have been given to another group."""
    if process.poll() is not None and not group_members(process.pid):
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=REAP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass


def end_left_running(since=0):
    """Ends every process recorded after `since` that still runs or left something running in its group, and
    forgets them all; returns a description of each one ended."""
    ended = []
    for what, process in _started[since:]:
        if process.poll() is None:
            ended.append(f"{what} (pid {process.pid}: {' '.join(map(str, process.args))[:200]})")
            end(process)
            continue
        deadline = time.monotonic() + GROUP_EXIT_GRACE
        while group_members(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        members = group_members(process.pid)
        if members:
            ended.append(f"{what} (pid {process.pid} exited, its group still had pids {members})")
            end(process)
    del _started[since:]
    return ended


@atexit.register
def _end_everything_left():
    end_left_running(0)


def end_everything_on(signum):
    """On `signum`, end every recorded process, then die of the signal as without this handler."""

    def handler(received, _frame):
        end_left_running(0)
        signal.signal(received, signal.SIG_DFL)
        os.kill(os.getpid(), received)

    signal.signal(signum, handler)
