"""L5 and L6 of the load plan (docs/test-plan.md §4): the connection cap and slowloris.

- L5: 10 000 idle TCP connections to the IMDS listener (the test raises its RLIMIT_NOFILE for them), then a
  real client. The agent keeps at most max_connections (256, config key agent.max_connections) and closes the
  rest at once; its descriptors stay within cap + 32; the real client is answered.
- L6: slowhttptest -H (slow headers) against IMDS, with a probe client once a second. The agent closes a
  connection whose request header is not complete within its header timeout (HttpServerLimits::read_timeout,
  5 s, not configurable); every probe is answered. The plan's -l 120 is shortened to 30 s in CI: with a 5 s
  header timeout a slow connection lives at most ~6 s, so 30 s is five full lifetimes (RAD_LOAD_SLOWLORIS_SECONDS
  sets it).
"""

import os
import re
import resource
import selectors
import socket
import subprocess
import threading
import time

from radtest.clients import http_call, imds_token

from load_support import load_agent, open_fds, wait_for_fds

IDLE_CONNECTIONS = 10_000
CAP = 256
HEADER_TIMEOUT = 5.0
CONNECT_DEADLINE = 30.0
REAL_REQUEST_BAR = 0.100


def raise_nofile(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        assert hard == resource.RLIM_INFINITY or hard >= needed, \
            f"RLIMIT_NOFILE hard limit {hard} < {needed}: raise it (ulimit -Hn) to run L5"
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return soft, hard


def collect(selector, timeout, pending, established):
    """Moves the connections whose connect() completed from `pending` to `established`; returns how many were
    refused."""
    refused = 0
    for key, _ in selector.select(timeout=timeout):
        sock = key.fileobj
        selector.unregister(sock)
        pending.pop(sock.fileno(), None)
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            established.append(sock)
        else:
            refused += 1
            sock.close()
    return refused


def open_idle_connections(port, count, deadline_s):
    """Open `count` non-blocking connections; returns (established sockets, refused count, pending count)."""
    selector = selectors.DefaultSelector()
    pending = {}
    established, refused = [], 0
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        code = s.connect_ex(("127.0.0.1", port))
        if code in (0,):
            established.append(s)
        elif code in (115, 11):  # EINPROGRESS, EAGAIN
            selector.register(s, selectors.EVENT_WRITE)
            pending[s.fileno()] = s
        else:
            refused += 1
            s.close()
        # Drain completions as we go so that the selector never holds all 10 000 at once.
        refused += collect(selector, 0, pending, established)
    end = time.monotonic() + deadline_s
    while pending and time.monotonic() < end:
        refused += collect(selector, 0.5, pending, established)
    left = len(pending)
    for sock in pending.values():
        selector.unregister(sock)
        sock.close()
    selector.close()
    return established, refused, left


def closed_by_peer(sock):
    """True when the agent closed (or reset) this connection: a read returns EOF or an error at once."""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_l5_ten_thousand_idle_connections(em, pki, tmp_path, report):
    raise_nofile(IDLE_CONNECTIONS + 512)
    agent = load_agent(tmp_path, em, pki)
    established = []
    try:
        pid = agent.process.pid
        port = agent.imds_port("web")
        fds_baseline = open_fds(pid)
        started = time.monotonic()
        established, refused, left = open_idle_connections(port, IDLE_CONNECTIONS, CONNECT_DEADLINE)
        open_seconds = time.monotonic() - started
        time.sleep(0.5)  # the agent accepts and closes the excess asynchronously
        agent_fds = open_fds(pid)
        still_open = sum(1 for s in established if not closed_by_peer(s))

        start = time.monotonic()
        try:
            status, _, body = http_call(port, "PUT", "/latest/api/token",
                                        {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        except OSError as e:  # closed unanswered: reported with the figures below
            status, body = f"no answer ({type(e).__name__})", b""
        real_latency = time.monotonic() - start
        figures = {"connections_tried": IDLE_CONNECTIONS, "established": len(established), "refused": refused,
                   "never_completed": left, "open_after_0.5s": still_open, "agent_fds": agent_fds,
                   "agent_fds_baseline": fds_baseline, "open_seconds": f"{open_seconds:.1f}",
                   "real_request_status": status, "real_request_ms": f"{real_latency * 1000:.1f}"}
        report("L5 10000 idle connections", figures)
        assert agent.running(), figures
        assert still_open <= CAP, figures  # the excess was closed at once
        assert agent_fds <= CAP + 32, figures
        assert status == 200, (figures, body)
        assert real_latency < REAL_REQUEST_BAR, figures
    finally:
        for s in established:
            s.close()
        if agent.running():
            wait_for_fds(agent.process.pid, 64)
        assert agent.stop() == 0


SLOW_CONNECTIONS = 1000
SLOW_RATE = 200
OWN_SLOW_CLIENTS = 20


def probe_loop(port, stop, outcomes):
    """Once a second, the IMDSv2 flow of an SDK (token PUT, credentials GET); records (ok, seconds, detail)."""
    while not stop.is_set():
        start = time.monotonic()
        try:
            token = imds_token(port, ttl=60)
            status, _, body = http_call(port, "GET", "/latest/meta-data/iam/security-credentials/",
                                        {"X-aws-ec2-metadata-token": token})
            outcomes.append((status == 200, time.monotonic() - start, status))
        except (OSError, AssertionError) as e:
            outcomes.append((False, time.monotonic() - start, type(e).__name__))
        stop.wait(max(0.0, 1.0 - (time.monotonic() - start)))


def own_slow_client(port, lifetimes):
    """A slowloris of our own: a request line, then one header line a second, never the blank line. Records
    how long the agent kept the connection after the first byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=HEADER_TIMEOUT * 4) as s:
        start = time.monotonic()
        try:
            s.sendall(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            s.settimeout(1.0)
            for i in range(int(HEADER_TIMEOUT * 4)):
                try:
                    if s.recv(4096) == b"":
                        break
                except socket.timeout:
                    pass
                s.sendall(f"X-Slow-{i}: {i}\r\n".encode())
        except OSError:
            pass  # reset by the agent: closed
        lifetimes.append(time.monotonic() - start)


def test_l6_slowloris_keeps_the_endpoint_available(em, pki, tmp_path, report):
    seconds = int(os.environ.get("RAD_LOAD_SLOWLORIS_SECONDS") or 30)
    raise_nofile(SLOW_CONNECTIONS + 512)
    agent = load_agent(tmp_path, em, pki)
    try:
        port = agent.imds_port("web")
        fds_baseline = open_fds(agent.process.pid)
        stop, outcomes, lifetimes = threading.Event(), [], []
        probe = threading.Thread(target=probe_loop, args=(port, stop, outcomes))
        probe.start()
        try:
            # 1. Slow clients of our own, below the cap: each is closed by the header timeout, not before.
            slow_clients = [threading.Thread(target=own_slow_client, args=(port, lifetimes))
                            for _ in range(OWN_SLOW_CLIENTS)]
            for t in slow_clients:
                t.start()
            for t in slow_clients:
                t.join(timeout=HEADER_TIMEOUT * 5)
            # 2. slowhttptest's 1000 slow connections at 200/s. It exits once the agent has closed them all;
            #    the probe goes on for the whole `seconds`.
            attack_started = time.monotonic()
            attack = subprocess.run(
                ["slowhttptest", "-H", "-c", str(SLOW_CONNECTIONS), "-i", "10", "-r", str(SLOW_RATE),
                 "-l", str(seconds), "-p", "3", "-u",
                 f"http://127.0.0.1:{port}/latest/meta-data/iam/security-credentials/"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=seconds + 60)
            attack_seconds = time.monotonic() - attack_started
            stop.wait(max(0.0, seconds - attack_seconds))
        finally:
            stop.set()
            probe.join(timeout=30)
        ok = sum(1 for o in outcomes if o[0])
        failures = [o for o in outcomes if not o[0]]
        fds_after = wait_for_fds(agent.process.pid, fds_baseline + 2)
        output = re.sub(r"\x1b\[[0-9;]*m", "", attack.stdout)
        closed = re.findall(r"closed:\s+(\d+)", output)
        figures = {"probes": len(outcomes), "probes_ok": ok,
                   "availability": f"{100.0 * ok / max(len(outcomes), 1):.1f}%",
                   "probe_max_ms": f"{max((o[1] for o in outcomes), default=0) * 1000:.0f}",
                   "failed_probes": [(f"{o[1] * 1000:.1f}ms", o[2]) for o in failures[:5]],
                   "own_slow_lifetimes_s": f"{min(lifetimes, default=0):.2f}..{max(lifetimes, default=0):.2f}",
                   "slowhttptest_seconds": f"{attack_seconds:.1f}",
                   "slowhttptest_closed": closed[-1] if closed else "?",
                   "fds_baseline": fds_baseline, "fds_after": fds_after}
        report(f"L6 slowhttptest -H -c {SLOW_CONNECTIONS} -i 10 -r {SLOW_RATE} -l {seconds}", figures)
        assert attack.returncode == 0, output[-2000:]
        assert agent.running(), figures
        assert len(lifetimes) == OWN_SLOW_CLIENTS, figures
        assert all(HEADER_TIMEOUT - 0.5 <= t <= HEADER_TIMEOUT + 1.0 for t in lifetimes), (lifetimes, figures)
        assert len(outcomes) >= seconds, figures
        assert not failures, figures
        assert fds_after <= fds_baseline + 2, figures
    finally:
        assert agent.stop() == 0
