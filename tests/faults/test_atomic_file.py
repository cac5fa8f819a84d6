"""F13 and N3: the credentials file under SIGKILL.

F13: `update --profile web --once` is killed with SIGKILL at a random moment of its run, 1000 times (no
slow-I/O hook: the kill time is uniform over the measured length of a whole run, so a share of the kills land
in the write itself; the test counts how many left a temporary file behind, i.e. landed between the temporary
file's creation and the rename). After every kill the file must parse as the complete old or new version, mode
0600; at most one stale temporary file may exist, and the next completed write removes it. Then two writers
(sections web and other) run at once, 40 rounds: neither loses the other's section (flock).

N3: one write under strace: the temporary file is opened O_CREAT|O_EXCL mode 0600, written, fsynced, renamed
over the file, then the directory is fsynced.

RAD_F13_ITERATIONS changes the number of kills (default 1000).
"""

import configparser
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import time

import pytest

from radtest.environment import AGENT, clean_environment

ITERATIONS = int(os.environ.get("RAD_F13_ITERATIONS", "1000"))
OTHER = "# kept by hand\n[default]\naws_access_key_id = AKIAEXAMPLEDEFAULT00\naws_secret_access_key = d\n"


def update_command(agent, profile):
    return [str(AGENT), "update", "--profile", profile, "--once", *agent.identity_args(), *agent.target_args()]


def sections(text):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return {name: dict(parser[name]) for name in parser.sections()}


def temporaries(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + ".tmp."))


def check_version(text, previous, issued):
    """The file is `previous` unchanged or a complete new version: [default] kept, [web] one issued set."""
    if text == previous:
        return "old"
    parsed = sections(text)
    assert parsed.get("default") == {"aws_access_key_id": "AKIAEXAMPLEDEFAULT00", "aws_secret_access_key": "d"}
    assert text.startswith("# kept by hand\n")
    web = parsed["web"]
    key = web["aws_access_key_id"]
    assert key in issued, f"unknown key {key}"
    assert (web["aws_secret_access_key"], web["aws_session_token"]) == issued[key]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", web["x_expiration"])
    return "new"


def test_f13_sigkill_during_credentials_file_writes(em, agent, tmp_path, figure):
    path = tmp_path / "aws" / "credentials"
    path.parent.mkdir(mode=0o700)
    path.write_text(OTHER)
    os.chmod(path, 0o600)
    env = clean_environment({"AWS_SHARED_CREDENTIALS_FILE": str(path)})
    command = update_command(agent, "web")

    # The length of one whole run (sign, CreateSession, write), to spread the kills over it.
    runs = []
    for _ in range(5):
        began = time.monotonic()
        subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=30)
        runs.append(time.monotonic() - began)
    span = sorted(runs)[len(runs) // 2]

    rng = random.Random(20240613)
    issued = {}
    outcomes = {"old": 0, "new": 0}
    landed_mid_write = 0
    max_temporaries = 0
    previous = path.read_text()
    for i in range(ITERATIONS):
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, span * 1.1))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        text = path.read_text()
        if text != previous:
            if sections(text)["web"]["aws_access_key_id"] not in issued:
                for c in em.issued():
                    issued[c["accessKeyId"]] = (c["secretAccessKey"], c["sessionToken"])
        outcomes[check_version(text, previous, issued)] += 1
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.stat(path).st_uid == os.getuid()
        leftovers = temporaries(path)
        if leftovers:
            landed_mid_write += 1
            max_temporaries = max(max_temporaries, len(leftovers))
        previous = text
        if i % 150 == 149:
            em.reset()  # keeps the emulator's record of issued sets (the last 200) in reach

    stale_before = temporaries(path)
    subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=30)
    stale_after = temporaries(path)
    figure(f"F13: {ITERATIONS} SIGKILLs over a {span * 1000:.0f} ms run: file kept old {outcomes['old']}, "
           f"complete new {outcomes['new']}, torn 0; kills that left a temporary file (mid-write) "
           f"{landed_mid_write}; most temporaries at once {max_temporaries}; stale before/after the next "
           f"write {len(stale_before)}/{len(stale_after)}")
    assert outcomes["old"] + outcomes["new"] == ITERATIONS
    assert outcomes["new"] > 0 and outcomes["old"] > 0, "the kills never (or always) landed before the write"
    assert max_temporaries <= 1, f"{max_temporaries} stale temporary files at once"
    assert stale_after == []


def test_f13_two_writers_at_once(em, agent, tmp_path, figure):
    path = tmp_path / "aws" / "credentials"
    path.parent.mkdir(mode=0o700)
    path.write_text(OTHER)
    os.chmod(path, 0o600)
    env = clean_environment({"AWS_SHARED_CREDENTIALS_FILE": str(path)})
    lost = 0
    rounds = 40
    for _ in range(rounds):
        writers = [subprocess.Popen(update_command(agent, name), env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for name in ("web", "other")]
        for w in writers:
            assert w.wait(timeout=30) == 0, w.stderr.read().decode()
            w.stderr.close()
        parsed = sections(path.read_text())
        last = {c["accessKeyId"] for c in em.issued()[-2:]}
        got = {parsed.get(name, {}).get("aws_access_key_id") for name in ("web", "other")}
        lost += got != last
        em.reset()
    figure(f"F13 (two writers): {rounds} rounds, rounds where a section lost the latest write {lost}; "
           f"temporary files left {len(temporaries(path))}")
    assert lost == 0
    assert temporaries(path) == []
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace missing (apt-get install strace)")
def test_n3_syscall_order_of_one_write(em, agent, tmp_path, figure):
    path = tmp_path / "aws" / "credentials"
    path.parent.mkdir(mode=0o700)
    path.write_text(OTHER)
    os.chmod(path, 0o600)
    trace = tmp_path / "strace.txt"
    env = clean_environment({"AWS_SHARED_CREDENTIALS_FILE": str(path)})
    result = subprocess.run(["strace", "-f", "-o", str(trace), "-e",
                             "trace=openat,write,fsync,fdatasync,rename,renameat,renameat2,close",
                             *update_command(agent, "web")], env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    lines = trace.read_text().splitlines()
    name = re.escape(str(path))
    opened = [i for i, l in enumerate(lines) if re.search(rf'openat\(.*"{name}\.tmp\.[^"]+"', l)]
    assert opened, "no temporary file was opened"
    o = lines[opened[-1]]
    fd = re.search(r"= (\d+)$", o)[1]
    after = lines[opened[-1]:]
    steps = []
    for line in after:
        m = re.search(r"(\w+)\((.*)\) += (-?\d+)", line)
        if not m:
            continue
        call, args = m[1], m[2]
        if call == "write" and args.startswith(f"{fd},"):
            steps.append("write(tmp)") if not steps or steps[-1] != "write(tmp)" else None
        elif call == "fsync" and args == fd and "rename" not in steps:
            steps.append("fsync(tmp)")
        elif call.startswith("rename") and f'"{path}"' in args:
            steps.append("rename")
        elif call == "openat" and "O_DIRECTORY" in args and str(path.parent) in args:
            steps.append("open(dir)")
        elif call == "fsync" and "rename" in steps:
            steps.append("fsync(dir)")
    figure(f"N3: {o.split(' ', 1)[1][:120]} → {' → '.join(steps)}")
    assert "O_CREAT" in o and "O_EXCL" in o and "0600" in o, o
    assert steps[:5] == ["write(tmp)", "fsync(tmp)", "rename", "open(dir)", "fsync(dir)"], steps
