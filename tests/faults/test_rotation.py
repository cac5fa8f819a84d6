"""F9 (a-c): certificate and key rotation under a running agent, with N2 checked on every answer.

(a) an atomic rename of a new certificate and key: the next scheduled refresh signs with the new certificate
    (the first credentials are issued with 125 s of life, so that the scheduled refresh comes 5 s later);
(b) a non-atomic overwrite caught half-written: the refresh fails to parse it, the agent keeps running and
    serving, and the next attempt after the write completes succeeds;
(c) a new certificate with a mismatched key: refused before signing (no CreateSession), the old credentials
    stay in service, the error is in STATUS=.
(d) (LoadCredential through the .path unit, under load) needs systemd as PID 1: see tests/README.md.
"""

import os
import re
import shutil
import signal
import time

from cryptography import x509

from radtest.agent import AgentProcess
from radtest.emulator import create_sessions
from radtest.environment import wait_until

from fault_support import NotifySocket, SurfaceWatcher


def serial_of(path):
    return str(x509.load_pem_x509_certificate(path.read_bytes()).serial_number)


def field(line, name):
    m = re.search(rf"\b{name}=(\"[^\"]*\"|\S+)", line)
    return m[1].strip('"') if m else None


def replace_atomically(source, target):
    temporary = target.with_name(target.name + ".new")
    shutil.copyfile(source, temporary)
    os.chmod(temporary, 0o600)
    os.replace(temporary, target)


def test_f9_rotation(em, pki, tmp_path, figure):
    identity = tmp_path / "identity"
    identity.mkdir(mode=0o700)
    cert, key = identity / "leaf.pem", identity / "leaf.key"
    replace_atomically(pki / "p256.pem", cert)
    replace_atomically(pki / "p256.key", key)
    notify = NotifySocket(tmp_path)
    em.faults({"lifetime_seconds": 125})
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web", certificate=str(cert), private_key=str(key))
    agent.start(env={"NOTIFY_SOCKET": notify.path})
    watcher = SurfaceWatcher(agent).start()
    try:
        recorded = lambda: em.stats()["recorded"]  # noqa: E731
        assert recorded()[-1]["serial"] == serial_of(pki / "p256.pem")

        # (a) key first, then certificate, each by rename; the next scheduled refresh (the 125 s lifetime puts
        # it about 5 s after the first) picks them up.
        pattern = r"\bevent=refresh_(ok|failed)\b"
        seen = len(agent.wait_for_log(pattern, timeout=30, count=1))
        replace_atomically(pki / "p384.key", key)
        replace_atomically(pki / "p384.pem", cert)
        # The next refresh that starts after the renames must sign with the new pair. One already running at
        # the rename (or, on a slow start, the scheduled one already past) signs with the old one; then ask
        # for another (`refresh`), at most twice.
        new_serial = serial_of(pki / "p384.pem")
        last_serial = lambda: ([r.get("serial") for r in recorded() if r.get("serial")] or [None])[-1]  # noqa: E731
        for _ in range(3):
            seen = len(agent.wait_for_log(pattern, timeout=30, count=seen + 1))
            if last_serial() == new_serial:
                break
            agent.request_refresh()
        a_serial = last_serial()
        lines = agent.wait_for_log(pattern, timeout=30, count=seen)
        a_line = lines[-1] if field(lines[-1], "event") == "refresh_ok" else ""

        # (b) the certificate caught half-written.
        pem = (pki / "p256.pem").read_bytes()
        replace_atomically(pki / "p256.key", key)
        calls = create_sessions(em)
        with open(cert, "r+b") as f:
            f.truncate(0)
            f.write(pem[: len(pem) // 2])
        agent.signal(signal.SIGHUP)
        b_line = agent.wait_for_log(pattern, timeout=30, count=seen + 1)[seen]
        seen += 1
        b_calls = create_sessions(em) - calls
        with open(cert, "r+b") as f:
            f.seek(len(pem) // 2)
            f.write(pem[len(pem) // 2:])
        agent.signal(signal.SIGHUP)
        b_after = agent.wait_for_log(pattern, timeout=30, count=seen + 1)[seen]
        seen += 1
        b_serial = recorded()[-1]["serial"]

        # (c) a certificate whose key is not the one on disk. The credentials in service are those of (b)'s
        # refresh; wait until the watcher has seen them (a slow, e.g. sanitized, agent may not have served them
        # yet), so that "still served after (c)" compares the right set.
        calls = create_sessions(em)
        served_before = em.issued()[-1]["accessKeyId"]
        wait_until(lambda: watcher.served_keys("imds")[-1:] == [served_before], 10,
                   what="the watcher to see the credentials of (b)")
        replace_atomically(pki / "p384.pem", cert)
        sent = time.monotonic()
        agent.signal(signal.SIGHUP)
        c_line = agent.wait_for_log(pattern, timeout=30, count=seen + 1)[seen]
        time.sleep(1)
        c_calls = create_sessions(em) - calls
        c_status = [s for t, s in notify.statuses() if t >= sent]
        watcher.stop()
        figure(f"F9: (a) signed with serial {'new' if a_serial == serial_of(pki / 'p384.pem') else 'OLD'}; "
               f"(b) half-written: {field(b_line, 'event')} {field(b_line, 'code')} (retry_in "
               f"{field(b_line, 'retry_in')} s, CreateSession calls {b_calls}), after the write "
               f"{field(b_after, 'event')}; (c) mismatched key: {field(c_line, 'event')} {field(c_line, 'code')}, "
               f"CreateSession calls {c_calls}, STATUS= {c_status[-1] if c_status else None!r}; "
               f"{watcher.summary()}")
        watcher.assert_n2()
        assert a_serial == serial_of(pki / "p384.pem") and a_line, "the refresh did not use the new certificate"
        assert field(b_line, "event") == "refresh_failed" and b_calls == 0 and agent.running()
        assert field(b_line, "retry_in") is not None
        assert field(b_after, "event") == "refresh_ok" and b_serial == serial_of(pki / "p256.pem")
        assert field(c_line, "event") == "refresh_failed" and c_calls == 0
        assert re.search(r"match|key", field(c_line, "error") or "", re.I), c_line
        assert c_status and "failing: web" in c_status[-1], c_status
        assert watcher.served_keys("imds")[-1] == served_before, "the old credentials were dropped"
        assert all(s[3] for s in watcher.samples if s[1] == "imds"), "a client went without credentials"
    finally:
        watcher.stop()
        assert agent.stop() == 0
        notify.close()
