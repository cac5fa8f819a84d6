"""What every fault test shares: a watcher of the agent's surfaces that enforces N2 on every answer, the
emulator's attempt timeline, a notify socket that records STATUS= lines, and a TCP forwarder that can play a
refused or recovered upstream.

N2 (never serve empty) and the served half of N1 (never serve near expiry) are checked on EVERY answer the
watcher sees: a 200 (or a credential-process exit 0) must carry non-empty AccessKeyId, SecretAccessKey and
Token/SessionToken, and an Expiration that parses and is at least 60 s in the future by the host's clock;
anything else must be an error that says no "Success" and carries no key.
"""

import datetime
import json
import os
import re
import socket
import statistics
import threading
import time

from radtest.clients import http_call, imds_token

SERVE_MARGIN_SECONDS = 60
ROLE_PATH = "/latest/meta-data/iam/security-credentials/"


def parse_expiration(text):
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


class SurfaceWatcher:
    """Polls IMDS, ECS and credential-process of one profile in a thread and checks N2 on every answer.

    samples: (monotonic time, surface, status, access key id or None, seconds left or None, latency s)."""

    def __init__(self, agent, profile="web", interval=0.05, process_every=0.5, surfaces=("imds", "ecs", "process"),
                 clock=utcnow):
        self.agent = agent
        self.profile = profile
        self.interval = interval
        self.process_every = process_every
        self.surfaces = surfaces
        self.clock = clock
        self.samples = []
        self.violations = []
        self._stop = threading.Event()
        self._thread = None
        self._token = None
        self._role = None
        self.started = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self

    def _run(self):
        last_process = 0.0
        while not self._stop.is_set():
            if "imds" in self.surfaces:
                self._sample("imds", self._imds)
            if "ecs" in self.surfaces:
                self._sample("ecs", self._ecs)
            if "process" in self.surfaces and time.monotonic() - last_process >= self.process_every:
                last_process = time.monotonic()
                self._sample("process", self._process)
            self._stop.wait(self.interval)

    def _sample(self, surface, call):
        began = time.monotonic()
        try:
            status, body = call()
        except (OSError, AssertionError) as e:  # not listening yet, or the agent is gone
            self.samples.append((began, surface, f"error:{type(e).__name__}", None, None, time.monotonic() - began))
            return
        latency = time.monotonic() - began
        key, left = self.check(surface, status, body)
        self.samples.append((began, surface, status, key, left, latency))

    def _imds(self):
        port = self.agent.imds_port(self.profile)
        if self._token is None:
            self._token = imds_token(port)
        headers = {"X-aws-ec2-metadata-token": self._token}
        if self._role is None:
            status, _, body = http_call(port, "GET", ROLE_PATH, headers)
            if status != 200:
                return status, body
            self._role = body.decode().strip()
        status, _, body = http_call(port, "GET", ROLE_PATH + self._role, headers)
        return status, body

    def _ecs(self):
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)(/.*)", self.agent.ecs_url(self.profile))
        token = self.agent.ecs_token_file(self.profile).read_text()
        status, _, body = http_call(int(match[1]), "GET", match[2], {"Authorization": token})
        return status, body

    def _process(self):
        result = self.agent.credential_process(self.profile)
        return (200 if result.returncode == 0 else 500 + min(result.returncode, 99)), result.stdout

    def check(self, surface, status, raw):
        """N2 for one answer; returns (access key id, seconds of life left) of a served set, else (None, None)."""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if status != 200:
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            if isinstance(body, dict) and (body.get("Code") == "Success" or body.get("AccessKeyId")):
                self.violations.append(f"{surface}: HTTP {status} carries credentials or Success: {text[:200]}")
            elif surface == "process" and text.strip():
                self.violations.append(f"{surface}: a failed run printed on stdout: {text[:200]}")
            return None, None
        if not isinstance(body, dict):
            self.violations.append(f"{surface}: 200 whose body is not a JSON object")
            return None, None
        token_field = "SessionToken" if surface == "process" else "Token"
        for field in ("AccessKeyId", "SecretAccessKey", token_field):
            if not isinstance(body.get(field), str) or not body[field]:
                self.violations.append(f"{surface}: 200 with an empty or missing {field}")
        if surface == "imds" and body.get("Code") != "Success":
            self.violations.append(f"{surface}: 200 with Code {body.get('Code')!r}")
        expiration = parse_expiration(body.get("Expiration"))
        if expiration is None:
            self.violations.append(f"{surface}: 200 with an unparsable Expiration {body.get('Expiration')!r}")
            return body.get("AccessKeyId"), None
        left = (expiration - self.clock()).total_seconds()
        if left < SERVE_MARGIN_SECONDS:
            self.violations.append(f"{surface}: served {body.get('AccessKeyId', '')[-4:]} with {left:.1f} s left")
        return body.get("AccessKeyId"), left

    # --- figures -----------------------------------------------------------------------------------------

    def of(self, surface=None):
        return [s for s in self.samples if surface is None or s[1] == surface]

    def served_keys(self, surface=None):
        keys = []
        for s in self.of(surface):
            if s[3] is not None and (not keys or keys[-1] != s[3]):
                keys.append(s[3])
        return keys

    def min_left(self):
        lefts = [s[4] for s in self.samples if s[4] is not None]
        return min(lefts) if lefts else None

    def latency_p99_ms(self, surface="imds", since=None, until=None):
        values = sorted(s[5] * 1000 for s in self.of(surface)
                        if (since is None or s[0] >= since) and (until is None or s[0] <= until))
        if not values:
            return None
        return values[min(len(values) - 1, int(len(values) * 0.99))]

    def timeline(self, surface, names=None):
        """'503×12 (0.0-1.2s) → A 200×40 (1.2-3.1s)': what one surface served over time, keys as letters."""
        names = names if names is not None else {}
        segments = []
        for t, surf, status, key, _, _ in self.of(surface):
            label = f"{status}" if key is None else f"{names.setdefault(key, chr(ord('A') + len(names)))} 200"
            rel = t - self.started
            if segments and segments[-1][0] == label:
                segments[-1][1] += 1
                segments[-1][3] = rel
            else:
                segments.append([label, 1, rel, rel])
        return " → ".join(f"{label}×{n} ({a:.1f}-{b:.1f}s)" for label, n, a, b in segments) or "(no samples)"

    def summary(self):
        names = {}
        return "; ".join(f"{surface}: {self.timeline(surface, names)}" for surface in self.surfaces)

    def assert_n2(self):
        assert self.samples, "the watcher took no samples"
        assert not self.violations, "N2/N1 violations:\n" + "\n".join(self.violations[:20])


class EmulatorTimeline:
    """The emulator's /sessions attempts (and TLS connections) with their millisecond timestamps, from its log,
    counted from the moment this object was made."""

    STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (\S+) (.*)$")

    def __init__(self, emulator):
        self.path = emulator.log
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def lines(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode(errors="replace")
        out = []
        for line in text.splitlines():
            m = self.STAMP.match(line)
            if m:
                stamp = datetime.datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S.%f").replace(
                    tzinfo=datetime.timezone.utc)
                out.append((stamp.timestamp(), m[3]))
        return out

    def attempts(self):
        """Times (epoch s) of CreateSession requests that reached the emulator, with their log text."""
        return [(t, text) for t, text in self.lines()
                if text.startswith("POST /sessions") and "blackhole released" not in text]

    def tls_attempts(self):
        return [(t, text) for t, text in self.lines()
                if "connection error" in text or "tls fault" in text or text.startswith("POST /sessions")]


def delays(times):
    return [round(b - a, 2) for a, b in zip(times, times[1:])]


class NotifySocket:
    """An AF_UNIX datagram socket to pass as NOTIFY_SOCKET; records every line the agent sends, with its time."""

    def __init__(self, directory):
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            for line in data.decode(errors="replace").splitlines():
                self.messages.append((time.monotonic(), line))

    def statuses(self):
        return [(t, line[len("STATUS="):]) for t, line in self.messages if line.startswith("STATUS=")]

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Forwarder:
    """127.0.0.1:port → the emulator, byte for byte. Stopped, nothing listens on the port: the agent's connects
    are refused, like an upstream that is down. Counts the connections it accepted."""

    def __init__(self, port, target_port):
        self.port = port
        self.target_port = target_port
        self.listener = None
        self.accepted = 0
        self._thread = None

    def start(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        self._thread = threading.Thread(target=self._accept, args=(self.listener,), daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self.listener is not None:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def median(values):
    return statistics.median(values) if values else None
