"""A raw-socket HTTP/1.1 client for the bad-input and secrets suites: it sends exactly the bytes it is given
(no normalisation of headers, targets or framing) and reports what came back, whether the agent closed the
connection, and how long after the last byte sent the close arrived."""

import re
import socket
import time

TOKEN_PATH = "/latest/api/token"
CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"


class Reply:
    """The first response on a connection: status (None if none came), headers (lowercase name -> list of
    values), body, whether the connection then ended (EOF or reset) and after how many milliseconds."""

    def __init__(self):
        self.status = None
        self.headers = {}
        self.body = b""
        self.raw = b""
        self.closed = False
        self.reset = False
        self.close_ms = None

    def header(self, name):
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def __repr__(self):
        return (f"Reply(status={self.status}, closed={self.closed}, reset={self.reset}, "
                f"close_ms={self.close_ms}, raw={self.raw[:300]!r})")


def parse_head(raw):
    """(status, headers, rest) of an HTTP/1.1 response head at the start of `raw`, or None when incomplete."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = raw[:end].decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not match:
        raise AssertionError(f"not an HTTP response: {raw[:200]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(match[1]), headers, raw[end + 4:]


def connect(port, host="127.0.0.1", timeout=5.0):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def exchange(port, data, host="127.0.0.1", timeout=5.0, head=False, wait_close=True, close_wait=0.3):
    """Send `data` (bytes or str) on a new connection and read the first response. With wait_close, keep reading
    after it (at most `close_wait` s) to learn whether and when the agent ends the connection."""
    if isinstance(data, str):
        data = data.encode("latin-1")
    reply = Reply()
    with connect(port, host, timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent may answer and close before everything is sent: read what it said
        sent = time.monotonic()
        raw = b""
        deadline = sent + timeout
        expected = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            s.settimeout(remaining)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                reply.closed = reply.reset = True
                reply.close_ms = (time.monotonic() - sent) * 1000
                break
            if not chunk:
                reply.closed = True
                reply.close_ms = (time.monotonic() - sent) * 1000
                break
            raw += chunk
            if expected is None:
                parsed = parse_head(raw)
                if parsed:
                    status, headers, rest = parsed
                    length = 0 if head else int(headers.get("content-length", ["0"])[0])
                    expected = len(raw) - len(rest) + length
            if expected is not None and len(raw) >= expected:
                if not wait_close:
                    break
                deadline = min(deadline, time.monotonic() + close_wait)
    reply.raw = raw
    parsed = parse_head(raw)
    if parsed:
        reply.status, reply.headers, rest = parsed
        reply.body = rest if head else rest[:int(reply.headers.get("content-length", ["0"])[0])]
    return reply


def request(method, target, headers=(), host="127.0.0.1", version="HTTP/1.1", body=b""):
    """Request bytes with the headers exactly in the order given (Host first unless host is None)."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body if isinstance(body, bytes) else body.encode("latin-1"))


class KeepAlive:
    """One persistent connection for many small exchanges (timing loops): send a request, read one response."""

    def __init__(self, port, host="127.0.0.1"):
        self.sock = connect(port, host)
        self.buffer = b""

    def call(self, data):
        self.sock.sendall(data)
        while True:
            parsed = parse_head(self.buffer)
            if parsed:
                status, headers, rest = parsed
                length = int(headers.get("content-length", ["0"])[0])
                if len(rest) >= length:
                    self.buffer = rest[length:]
                    return status, rest[:length]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("the agent closed a keep-alive connection")
            self.buffer += chunk

    def close(self):
        self.sock.close()


def vm_kib(pid, field):
    """VmRSS, VmLck, ... of a process, in KiB, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")
