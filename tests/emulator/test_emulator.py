"""Self-test of ra_emulator.py: run with `/usr/bin/python3 -m pytest -q tests/emulator`.

The requests are signed by a small SigV4-X509 signer written here, separately from both the emulator and the
agent, so that the emulator's acceptance means something: a signature made from the protocol description
verifies, and each single deviation from it is refused with its own reason.
"""

import base64
import datetime
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "ra_emulator.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
NOW = datetime.datetime.utcnow()


# ---------------------------------------------------------------------------------------------------------
# A throwaway PKI made in-process


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(digital_signature, cert_sign):
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=False,
                         key_encipherment=not digital_signature and not cert_sign, data_encipherment=False,
                         key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False,
                         decipher_only=False)


def _cert(subject, key, issuer, issuer_key, *, ca=False, digital_signature=True, serial=None,
          not_before=None, not_after=None):
    builder = (x509.CertificateBuilder().subject_name(_name(subject))
               .issuer_name(issuer.subject if issuer is not None else _name(subject))
               .public_key(key.public_key())
               .serial_number(serial or x509.random_serial_number())
               .not_valid_before(not_before or NOW - datetime.timedelta(days=1))
               .not_valid_after(not_after or NOW + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(_usage(digital_signature, ca), critical=True))
    return builder.sign(issuer_key, hashes.SHA256())


class Identity:
    def __init__(self, cert, key, chain=()):
        self.cert, self.key, self.chain = cert, key, list(chain)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("selftest root", root_key, None, root_key, ca=True)
    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter = _cert("selftest intermediate", inter_key, root, root_key, ca=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_root = _cert("untrusted root", other_key, None, other_key, ca=True)

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p256 = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    p521 = ec.generate_private_key(ec.SECP521R1())
    ids = {
        "rsa": Identity(_cert("leaf rsa", rsa_key, root, root_key, serial=0x15), rsa_key),
        "p256": Identity(_cert("leaf p256", p256, root, root_key), p256),
        "p384": Identity(_cert("leaf p384", p384, root, root_key), p384),
        "p521": Identity(_cert("leaf p521", p521, root, root_key), p521),
        "via": Identity(_cert("leaf via intermediate", p256, inter, inter_key), p256, [inter]),
        "untrusted": Identity(_cert("leaf untrusted", p256, other_root, other_key), p256),
        "expired": Identity(_cert("leaf expired", p256, root, root_key,
                                  not_before=NOW - datetime.timedelta(days=10),
                                  not_after=NOW - datetime.timedelta(days=2)), p256),
        "future": Identity(_cert("leaf future", p256, root, root_key,
                                 not_before=NOW + datetime.timedelta(days=2),
                                 not_after=NOW + datetime.timedelta(days=10)), p256),
        "ca": Identity(_cert("leaf is a CA", p256, root, root_key, ca=True), p256),
        "nodigsig": Identity(_cert("leaf without digitalSignature", p256, root, root_key,
                                   digital_signature=False), p256),
    }
    directory = tmp_path_factory.mktemp("selftest-pki")
    anchors = directory / "anchors.pem"
    anchors.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    return {"ids": ids, "anchors": str(anchors), "root": root, "inter": inter}


# ---------------------------------------------------------------------------------------------------------
# The emulator process


def _start(tmp, *extra, tls=True):
    port_file = tmp / "port"
    args = [PYTHON, EMULATOR, "--port", "0", "--port-file", str(port_file), "--log-file", str(tmp / "log"),
            *extra]
    if tls:
        args += ["--tls-dir", str(tmp / "tls")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("emulator did not start: " + proc.stderr.read().decode())
        time.sleep(0.02)
    return proc, int(port_file.read_text())


@pytest.fixture(scope="module")
def server(pki, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("emulator")
    proc, port = _start(tmp, "--trust-anchor-ca", pki["anchors"], "--tls-fault-listener")
    arns = json.loads(subprocess.run([PYTHON, EMULATOR, "--print-arns"], check=True, capture_output=True,
                                     timeout=30).stdout)
    context = ssl.create_default_context(cafile=str(tmp / "tls" / "ca.pem"))
    yield {"port": port, "arns": arns, "context": context, "log": tmp / "log", "tmp": tmp}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def fresh(request):
    if "server" in request.fixturenames:
        server = request.getfixturevalue("server")
        status, _, _ = call(server, "POST", "/_emulator/reset", b"")
        assert status == 200
        status, _, _ = call(server, "POST", "/_emulator/quota", json.dumps({"rate": None}).encode())
        assert status == 200


def connect(server):
    return http.client.HTTPSConnection("127.0.0.1", server["port"], context=server["context"], timeout=10)


def call(server, method, path, body, headers=None, conn=None):
    own = conn is None
    conn = conn or connect(server)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, response, data
    finally:
        if own:
            conn.close()


def stats(server):
    status, _, data = call(server, "GET", "/_emulator/stats", None)
    assert status == 200
    return json.loads(data)


def faults(server, *specs):
    status, _, data = call(server, "POST", "/_emulator/faults", json.dumps(list(specs)).encode())
    assert status == 200, data
    return json.loads(data)


# ---------------------------------------------------------------------------------------------------------
# The independent signer


def _escape(text):
    keep = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
    return "".join(chr(b) if b in keep else "%%%02X" % b for b in text.encode())


def _b64(cert):
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def signed_request(server, identity, *, arns=None, body=None, duration=3600, session_name=None, region=None,
                   when=None, algorithm=None, serial=None, chain=None, drop_signed=(), unsigned_extra=None,
                   content_type="application/json", mutate=None):
    """Build and sign CreateSession; returns (path, headers, body). Keyword arguments inject one deviation."""
    arns = dict(server["arns"], **(arns or {}))
    region = region or arns["region"]
    when = when or datetime.datetime.utcnow()
    if body is None:
        doc = {"durationSeconds": duration}
        if session_name is not None:
            doc["roleSessionName"] = session_name
        body = json.dumps(doc, separators=(",", ":")).encode()
    query = {"profileArn": arns["profile_arn"], "roleArn": arns["role_arn"],
             "trustAnchorArn": arns["trust_anchor_arn"]}
    query_text = "&".join(f"{_escape(k)}={_escape(query[k])}" for k in sorted(query))
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    headers = {"Host": f"127.0.0.1:{server['port']}", "X-Amz-Date": amz_date, "X-Amz-X509": _b64(identity.cert)}
    if content_type is not None:
        headers["Content-Type"] = content_type
    chain = identity.chain if chain is None else chain
    if chain:
        headers["X-Amz-X509-Chain"] = ",".join(_b64(c) for c in chain)
    signed = sorted(h.lower() for h in headers if h.lower() not in drop_signed)
    lookup = {h.lower(): v for h, v in headers.items()}
    canonical = "\n".join(["POST", "/sessions", query_text] + [f"{h}:{lookup[h].strip()}" for h in signed]
                          + ["", ";".join(signed), hashlib.sha256(body).hexdigest()])
    is_rsa = isinstance(identity.key, rsa.RSAPrivateKey)
    algorithm = algorithm or ("AWS4-X509-RSA-SHA256" if is_rsa else "AWS4-X509-ECDSA-SHA256")
    scope = f"{amz_date[:8]}/{region}/rolesanywhere/aws4_request"
    to_sign = f"{algorithm}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}".encode()
    if is_rsa:
        signature = identity.key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = identity.key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
    serial = identity.cert.serial_number if serial is None else serial
    headers["Authorization"] = (f"{algorithm} Credential={serial}/{scope}, SignedHeaders={';'.join(signed)}, "
                                f"Signature={signature.hex()}")
    headers.update(unsigned_extra or {})
    path = "/sessions?" + query_text
    if mutate:
        path, headers, body = mutate(path, headers, body)
    return path, headers, body


def create_session(server, identity, conn=None, **deviation):
    path, headers, body = signed_request(server, identity, **deviation)
    status, response, data = call(server, "POST", path, body, headers, conn)
    return status, response, data


def assert_rejected(server, identity, status, reason_part, **deviation):
    got, response, data = create_session(server, identity, **deviation)
    message = json.loads(data)["message"]
    assert got == status, message
    assert reason_part in message
    expected_type = {400: "ValidationException", 403: "AccessDeniedException"}[status]
    assert response.getheader("X-Amzn-ErrorType") == expected_type
    s = stats(server)
    assert s["rejected"] == 1 and s["accepted"] == 0
    assert reason_part in s["rejections"][0]["reason"]


# ---------------------------------------------------------------------------------------------------------
# Acceptance


@pytest.mark.parametrize("which", ["rsa", "p256", "p384", "p521", "via"])
def test_accepts_a_correct_signature(server, pki, which):
    identity = pki["ids"][which]
    before = datetime.datetime.utcnow().replace(microsecond=0)
    status, response, data = create_session(server, identity, duration=1800)
    assert status == 201, data
    assert response.getheader("Content-Type") == "application/json"
    doc = json.loads(data)
    entry = doc["credentialSet"][0]
    creds = entry["credentials"]
    assert creds["accessKeyId"].startswith("ASIA") and len(creds["accessKeyId"]) == 20
    assert len(creds["secretAccessKey"]) == 40 and len(creds["sessionToken"]) > 100
    expiration = datetime.datetime.strptime(creds["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    assert before + datetime.timedelta(seconds=1799) <= expiration <= before + datetime.timedelta(seconds=1802)
    assert entry["roleArn"] == server["arns"]["role_arn"]
    assert entry["sourceIdentity"] == "CN=" + identity.cert.subject.rfc4514_string()[3:]
    assert entry["packedPolicySize"] == 0
    assert entry["assumedRoleUser"]["arn"].endswith("/" + format(identity.cert.serial_number, "x"))
    assert doc["subjectArn"].startswith("arn:aws:rolesanywhere:us-east-1:123456789012:subject/")
    s = stats(server)
    assert (s["requests"], s["accepted"], s["rejected"]) == (1, 1, 0)
    record = s["last_request"]
    assert record["credentials"] == creds
    assert record["duration_seconds"] == 1800
    assert record["chain_length"] == len(identity.chain)
    assert ("X-Amz-X509-Chain" in record["headers"]) == bool(identity.chain)


def test_credentials_are_fresh_and_session_name_is_used(server, pki):
    first = json.loads(create_session(server, pki["ids"]["p256"])[2])["credentialSet"][0]
    second = json.loads(create_session(server, pki["ids"]["p256"], session_name="build-42")[2])["credentialSet"][0]
    assert first["credentials"]["accessKeyId"] != second["credentials"]["accessKeyId"]
    assert first["credentials"]["secretAccessKey"] != second["credentials"]["secretAccessKey"]
    assert second["assumedRoleUser"]["arn"].endswith("/build-42")
    assert stats(server)["last_request"]["role_session_name"] == "build-42"


def test_keep_alive_serves_several_requests_on_one_connection(server, pki):
    conn = connect(server)
    try:
        for _ in range(3):
            status, response, _ = create_session(server, pki["ids"]["p256"], conn=conn)
            assert status == 201
            assert response.getheader("Connection") != "close"
        status, _, _ = create_session(server, pki["ids"]["p256"], conn=conn, duration=60)
        assert status == 400  # a rejection keeps the connection usable too
        status, _, _ = create_session(server, pki["ids"]["rsa"], conn=conn)
        assert status == 201
    finally:
        conn.close()
    assert stats(server)["requests"] == 5


def test_chain_in_any_order_and_with_extra_certificates(server, pki):
    via = pki["ids"]["via"]
    status, _, data = create_session(server, via, chain=[pki["root"], pki["inter"]])
    assert status == 201, data


# ---------------------------------------------------------------------------------------------------------
# Rejections, one deviation at a time


def _replace_header(name, value):
    def mutate(path, headers, body):
        headers = dict(headers)
        headers[name] = value
        return path, headers, body
    return mutate


def _tamper_body(path, headers, body):
    return path, headers, body.replace(b"3600", b"3601")


def _tamper_signature(path, headers, body):
    auth = headers["Authorization"]
    last = auth[-1]
    headers = dict(headers, Authorization=auth[:-1] + ("0" if last != "0" else "1"))
    return path, headers, body


REJECTIONS = [
    # (identity, status, reason substring, deviation)
    ("p256", 403, "Invalid signature", {"mutate": _tamper_body}),
    ("rsa", 403, "Invalid signature", {"mutate": _tamper_body}),
    ("p256", 403, "Invalid signature", {"mutate": _tamper_signature}),
    ("p256", 403, "Invalid signature", {"mutate": _replace_header("Host", "example.com")}),
    ("p256", 403, "is not in the profile's roles", {"arns": {"role_arn": "arn:aws:iam::123456789012:role/other"}}),
    ("p256", 403, "is in account 210987654321", {"arns": {"role_arn": "arn:aws:iam::210987654321:role/rad-test-role"}}),
    ("p256", 403, "names region eu-west-1",
     {"arns": {"role_arn": "arn:aws:iam:eu-west-1:123456789012:role/rad-test-role"}}),
    ("p256", 403, "unknown profile",
     {"arns": {"profile_arn": "arn:aws:rolesanywhere:us-east-1:123456789012:profile/00000000-0000-0000-0000-000000000000"}}),
    ("p256", 403, "profile arn:aws:rolesanywhere:eu-west-1",
     {"arns": {"profile_arn": "arn:aws:rolesanywhere:eu-west-1:123456789012:profile/x"}}),
    ("p256", 403, "unknown trust anchor",
     {"arns": {"trust_anchor_arn": "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/nope"}}),
    ("p256", 400, "not a valid ARN", {"arns": {"trust_anchor_arn": "trust-anchor"}}),
    ("p256", 403, "Credential scope region 'eu-west-1'", {"region": "eu-west-1"}),
    ("p256", 400, "durationSeconds must be", {"duration": 899}),
    ("p256", 400, "durationSeconds must be", {"duration": 43201}),
    ("p256", 400, "roleSessionName", {"session_name": "x"}),
    ("p256", 400, "the body is not JSON", {"body": b"{durationSeconds:"}),
    ("p256", 400, "unknown body fields", {"body": b'{"durationSeconds":3600,"extra":1}'}),
    ("p256", 400, "Content-Type must be application/json", {"content_type": "text/plain"}),
    ("p256", 400, "Content-Type must be application/json", {"content_type": None}),
    ("p256", 403, "Signature expired", {"when": datetime.datetime.utcnow() - datetime.timedelta(minutes=6)}),
    ("p256", 403, "Signature expired", {"when": datetime.datetime.utcnow() + datetime.timedelta(minutes=6)}),
    ("p256", 403, "SignedHeaders 'content-type;x-amz-date;x-amz-x509' lacks host", {"drop_signed": ("host",)}),
    ("p256", 403, "lacks content-type", {"drop_signed": ("content-type",)}),
    ("p256", 403, "lacks x-amz-x509", {"drop_signed": ("x-amz-x509",)}),
    ("via", 403, "X-Amz-X509-Chain is sent but not signed", {"drop_signed": ("x-amz-x509-chain",)}),
    ("p256", 403, "does not match the certificate's EC key", {"algorithm": "AWS4-X509-RSA-SHA256"}),
    ("rsa", 403, "does not match the certificate's RSA key", {"algorithm": "AWS4-X509-ECDSA-SHA256"}),
    ("p256", 403, "unsupported algorithm", {"algorithm": "AWS4-HMAC-SHA256"}),
    ("rsa", 403, "does not match the X-Amz-X509 certificate's serial 21", {"serial": 22}),
    ("rsa", 403, "is not a decimal number", {"serial": "0x15"}),
    ("p256", 403, "X-Amz-X509 is not valid base64", {"mutate": _replace_header("X-Amz-X509", "!!notbase64")}),
    ("p256", 403, "X-Amz-X509 is not a DER X.509 certificate", {"mutate": _replace_header("X-Amz-X509", "AAAA")}),
    ("via", 403, "X-Amz-X509-Chain item 1 of 1 is not valid base64",
     {"mutate": _replace_header("X-Amz-X509-Chain", "@@@")}),
    ("via", 403, "no trust anchor or sent chain certificate issued 'CN=leaf via intermediate'", {"chain": []}),
    ("untrusted", 403, "Untrusted Signing Certificate", {}),
    ("expired", 403, "leaf certificate 'CN=leaf expired' expired at", {}),
    ("future", 403, "is not valid before", {}),
    ("ca", 403, "is a CA certificate", {}),
    ("nodigsig", 403, "lacks the digitalSignature key usage", {}),
    ("p256", 403, "Authorization header is not",
     {"mutate": _replace_header("Authorization", "AWS4-X509-ECDSA-SHA256 Credential=1/x")}),
    ("p256", 403, "Missing Authentication Token",
     {"mutate": lambda p, h, b: (p, {k: v for k, v in h.items() if k != "Authorization"}, b)}),
]


@pytest.mark.parametrize("which,status,reason,deviation", REJECTIONS,
                         ids=[f"{r[0]}-{r[2][:40]}" for r in REJECTIONS])
def test_rejects(server, pki, which, status, reason, deviation):
    assert_rejected(server, pki["ids"][which], status, reason, **deviation)


def test_unknown_path_and_wrong_method(server):
    assert call(server, "GET", "/sessions", None)[0] == 405
    status, response, _ = call(server, "POST", "/other", b"")
    assert status == 404 and response.getheader("X-Amzn-ErrorType")


# ---------------------------------------------------------------------------------------------------------
# Faults


def test_status_faults_are_served_in_order_then_success(server, pki):
    faults(server, {"status": 503, "count": 2}, {"status": 429, "retry_after": 7, "count": 1})
    seen = []
    for _ in range(4):
        status, response, data = create_session(server, pki["ids"]["p256"])
        seen.append((status, response.getheader("X-Amzn-ErrorType"), response.getheader("Retry-After")))
    assert seen[:3] == [(503, "ServiceUnavailableException", None), (503, "ServiceUnavailableException", None),
                        (429, "ThrottlingException", "7")]
    assert seen[3][0] == 201
    s = stats(server)
    assert (s["requests"], s["faulted"], s["accepted"]) == (4, 3, 1)
    assert s["pending_faults"] == []


def test_500_fault(server, pki):
    faults(server, {"status": 500, "count": 3})
    assert [create_session(server, pki["ids"]["rsa"])[0] for _ in range(4)] == [500, 500, 500, 201]


def test_delay_fault(server, pki):
    faults(server, {"delay_ms": 400})
    start = time.monotonic()
    status, _, _ = create_session(server, pki["ids"]["p256"])
    assert status == 201 and time.monotonic() - start >= 0.4


def test_close_fault(server, pki):
    faults(server, {"close": True})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, ssl.SSLError)):
        create_session(server, pki["ids"]["p256"])
    assert create_session(server, pki["ids"]["p256"])[0] == 201
    assert stats(server)["faulted"] == 1


def test_malformed_json_fault(server, pki):
    faults(server, {"malformed_json": True})
    status, _, data = create_session(server, pki["ids"]["p256"])
    assert status == 201
    with pytest.raises(json.JSONDecodeError):
        json.loads(data)


def test_empty_credential_set_fault(server, pki):
    faults(server, {"empty_credential_set": True})
    status, _, data = create_session(server, pki["ids"]["p256"])
    assert status == 201 and json.loads(data)["credentialSet"] == []


def test_expired_fault(server, pki):
    faults(server, {"expired": True})
    creds = json.loads(create_session(server, pki["ids"]["p256"])[2])["credentialSet"][0]["credentials"]
    assert datetime.datetime.strptime(creds["expiration"], "%Y-%m-%dT%H:%M:%SZ") < datetime.datetime.utcnow()


def test_canary_fault(server, pki):
    faults(server, {"canary": True, "count": 2})
    keys = []
    for _ in range(3):
        creds = json.loads(create_session(server, pki["ids"]["p256"])[2])["credentialSet"][0]["credentials"]
        keys.append(creds)
    for creds in keys[:2]:
        n = creds["secretAccessKey"].rsplit("-", 1)[1]
        assert creds["accessKeyId"] == "ASIACANARY%010d" % int(n)
        assert creds["secretAccessKey"] == f"CANARY-SECRET-{n}" and creds["sessionToken"] == f"CANARY-TOKEN-{n}"
    assert "CANARY" not in keys[2]["accessKeyId"]


def test_throttling_body_fault(server, pki):
    faults(server, {"status": 400, "error_type": "ThrottlingException", "message": "Rate exceeded"})
    status, response, data = create_session(server, pki["ids"]["p256"])
    assert status == 400 and response.getheader("X-Amzn-ErrorType") == "ThrottlingException"
    assert json.loads(data) == {"message": "Rate exceeded", "__type": "ThrottlingException"}


def test_blackhole_fault_holds_the_connection_until_the_client_leaves(server, pki):
    faults(server, {"blackhole": True})
    path, headers, body = signed_request(server, pki["ids"]["p256"])
    conn = http.client.HTTPSConnection("127.0.0.1", server["port"], context=server["context"], timeout=1.5)
    start = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError)):
        conn.request("POST", path, body=body, headers=headers)
        conn.getresponse()
    assert time.monotonic() - start >= 1.4
    conn.close()
    deadline = time.monotonic() + 5
    while "held_seconds" not in (stats(server)["recorded"][0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    record = stats(server)["recorded"][0]
    assert record["outcome"] == "fault:blackhole" and 1.0 <= record["held_seconds"] < 5, record
    assert create_session(server, pki["ids"]["p256"])[0] == 201


@pytest.mark.parametrize("kind, hours", [("long_expiration", 13), ("lifetime_seconds", 0.05)])
def test_expiration_faults(server, pki, kind, hours):
    faults(server, {kind: True if kind == "long_expiration" else 180})
    creds = json.loads(create_session(server, pki["ids"]["p256"])[2])["credentialSet"][0]["credentials"]
    left = datetime.datetime.strptime(creds["expiration"], "%Y-%m-%dT%H:%M:%SZ") - datetime.datetime.utcnow()
    assert abs(left.total_seconds() - hours * 3600) < 5


def test_missing_session_token_fault(server, pki):
    faults(server, {"missing_session_token": True})
    status, _, data = create_session(server, pki["ids"]["p256"])
    creds = json.loads(data)["credentialSet"][0]["credentials"]
    assert status == 201 and "sessionToken" not in creds and creds["accessKeyId"]


def test_truncated_fault(server, pki):
    faults(server, {"truncated": True})
    with pytest.raises(http.client.IncompleteRead):
        create_session(server, pki["ids"]["p256"])
    s = stats(server)
    assert s["recorded"][0]["outcome"] == "fault:truncated" and s["accepted"] == 0


def test_oversized_fault(server, pki):
    faults(server, {"oversized": True})
    status, _, data = create_session(server, pki["ids"]["p256"])
    assert status == 201 and len(data) >= 10 * 1024 * 1024
    assert json.loads(data)["credentialSet"][0]["credentials"]["sessionToken"]


def test_clock_offset_moves_the_skew_window_the_date_header_and_expirations(server, pki):
    status, _, data = call(server, "POST", "/_emulator/clock", json.dumps({"offset_seconds": 600}).encode())
    assert status == 200
    status, response, data = create_session(server, pki["ids"]["p256"])
    assert status == 403 and "Signature expired" in json.loads(data)["message"]
    date = datetime.datetime.strptime(response.getheader("Date"), "%a, %d %b %Y %H:%M:%S GMT")
    assert abs((date - datetime.datetime.utcnow()).total_seconds() - 600) < 5
    # A client that signs with the server's time is accepted, and its credentials live on the server's clock.
    status, _, data = create_session(server, pki["ids"]["p256"],
                                     when=datetime.datetime.utcnow() + datetime.timedelta(seconds=600))
    assert status == 201
    creds = json.loads(data)["credentialSet"][0]["credentials"]
    left = datetime.datetime.strptime(creds["expiration"], "%Y-%m-%dT%H:%M:%SZ") - datetime.datetime.utcnow()
    assert abs(left.total_seconds() - 4200) < 5
    assert call(server, "POST", "/_emulator/reset", b"")[0] == 200
    assert create_session(server, pki["ids"]["p256"])[0] == 201
    assert call(server, "POST", "/_emulator/clock", b'{"offset_seconds": "x"}')[0] == 400


def _fault_port(server):
    status, _, data = call(server, "GET", "/_emulator/config", None)
    return json.loads(data)["tls_fault_port"]


def _tls_variant(server, variant):
    status, _, data = call(server, "POST", "/_emulator/tls", json.dumps({"variant": variant}).encode())
    assert status == 200, data


@pytest.mark.parametrize("variant, error", [
    ("untrusted_ca", "CERTIFICATE_VERIFY_FAILED"), ("wrong_host", "match"), ("expired", "expired"),
    ("tls1_0", ""), ("reset", "")])
def test_tls_fault_listener(server, pki, variant, error):
    port = _fault_port(server)
    _tls_variant(server, variant)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=server["context"], timeout=5)
    with pytest.raises((ssl.SSLError, ssl.CertificateError, ConnectionResetError, ConnectionAbortedError)) as e:
        conn.request("GET", "/_emulator/config")
        conn.getresponse()
    conn.close()
    assert error in str(e.value)
    if variant == "tls1_0":
        # The listener does speak TLS 1.0 to a client that allows it (security level 0).
        legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        legacy.check_hostname = False
        legacy.verify_mode = ssl.CERT_NONE
        legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            legacy.minimum_version = ssl.TLSVersion.TLSv1
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with legacy.wrap_socket(raw) as tls:
                assert tls.version() == "TLSv1"
    _tls_variant(server, "good")
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=server["context"], timeout=5)
    conn.request("GET", "/_emulator/config")
    assert conn.getresponse().status == 200
    conn.close()
    assert stats(server)["tls_connections"] >= 2
    assert call(server, "POST", "/_emulator/tls", b'{"variant": "nope"}')[0] == 400


def test_post_faults_wait_for_a_verified_request(server, pki):
    faults(server, {"canary": True})
    assert create_session(server, pki["ids"]["untrusted"])[0] == 403
    creds = json.loads(create_session(server, pki["ids"]["p256"])[2])["credentialSet"][0]["credentials"]
    assert creds["accessKeyId"].startswith("ASIACANARY")


@pytest.mark.parametrize("spec", [{"status": 200}, {"count": 2}, {"close": False}, {"canary": True, "count": 0},
                                  {"delay_ms": -1}, {"canary": True, "retry_after": 3}, {"close": True, "x": 1},
                                  {"lifetime_seconds": 0}, {"lifetime_seconds": True}, {"blackhole": 1},
                                  {"close": True, "error_type": "X"}, {"status": 400, "error_type": "a b"}])
def test_bad_fault_specs_are_refused(server, spec):
    status, _, data = call(server, "POST", "/_emulator/faults", json.dumps(spec).encode())
    assert status == 400, data


def test_reset_clears_faults_and_stats(server, pki):
    faults(server, {"status": 500, "count": 5})
    create_session(server, pki["ids"]["p256"])
    assert call(server, "POST", "/_emulator/reset", b"")[0] == 200
    s = stats(server)
    assert s["requests"] == 0 and s["pending_faults"] == []
    assert create_session(server, pki["ids"]["p256"])[0] == 201


def test_log_has_one_line_per_request(server, pki):
    create_session(server, pki["ids"]["p256"])
    create_session(server, pki["ids"]["untrusted"])
    # The server writes its log line just after the answer: the client can read the log before it is there.
    deadline = time.monotonic() + 5
    while True:
        lines = [l for l in server["log"].read_text().splitlines() if "/sessions" in l]
        if "403 rejected" in lines[-1] or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert "201 issued ASIA" in lines[-2]
    assert "403 rejected: Untrusted Signing Certificate" in lines[-1]


# ---------------------------------------------------------------------------------------------------------
# The CreateSession quota


def quota(server, **settings):
    status, _, data = call(server, "POST", "/_emulator/quota", json.dumps(settings).encode())
    assert status == 200, data
    return json.loads(data)


def quota_stats(server):
    status, _, data = call(server, "GET", "/_emulator/quota", None)
    assert status == 200, data
    return json.loads(data)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


T, F = True, False


@pytest.mark.parametrize("rate, burst, times, expected", [
    (5, 5, [0] * 6, [T] * 5 + [F]),  # full at the start: the burst passes at once, the next call does not
    (5, 5, [0] * 5 + [0.19, 0.21], [T] * 5 + [F, T]),  # then one call per 1/rate seconds
    (2, 1, [0, 0, 0.5, 0.5, 10, 10], [T, F, T, F, T, F]),  # never more than the burst, however long the lull
    (0.5, 3, [0, 0, 0, 0, 1.9, 2.1], [T, T, T, F, F, T]),  # a throttled call takes nothing
    (5, None, [0] * 6, [T] * 5 + [F]),  # the burst defaults to the rate
    (0.5, None, [0, 0], [T, F]),  # ... and to at least one call
    (None, None, [0] * 50, [T] * 50),  # no quota
])
def test_quota_is_a_token_bucket(rate, burst, times, expected):
    sys.path.insert(0, HERE)
    try:
        import ra_emulator
    finally:
        sys.path.remove(HERE)
    clock = FakeClock()
    bucket = ra_emulator.Quota(rate, burst, clock=clock)
    got = []
    for t in times:
        clock.now = t
        got.append(bucket.take())
    assert got == expected


def test_throttled_calls_are_answered_as_the_service_throttles(server, pki):
    assert quota(server, rate=0.001, burst=2) == {"rate": 0.001, "burst": 2, "retry_after": None}
    identity = pki["ids"]["p256"]
    assert create_session(server, identity, session_name="q-1")[0] == 201
    assert create_session(server, identity, session_name="q-2")[0] == 201
    status, response, data = create_session(server, identity, session_name="q-3")
    assert status == 429
    assert response.getheader("X-Amzn-ErrorType") == "ThrottlingException"
    assert response.getheader("Retry-After") is None
    assert json.loads(data) == {"__type": "ThrottlingException", "message": "Rate exceeded"}
    # The quota comes before verification: a request that would be refused is throttled all the same.
    status, _, _ = create_session(server, identity, session_name="q-4", mutate=_tamper_signature)
    assert status == 429

    s = stats(server)
    assert s["accepted"] == 2 and s["rejected"] == 0 and s["requests"] == 4
    q = quota_stats(server)
    assert q == s["quota"]
    assert (q["accepted"], q["throttled"]) == (2, 2)
    assert [c["session"] for c in q["calls"]] == ["q-1", "q-2", "q-3", "q-4"]
    assert [c["throttled"] for c in q["calls"]] == [False, False, True, True]
    assert [c["status"] for c in q["calls"]] == [201, 201, 429, 429]
    ats = [c["at"] for c in q["calls"]]
    assert ats == sorted(ats) and all(c["at"] <= c["answered"] for c in q["calls"])
    assert abs(ats[0] - time.time()) < 60  # Unix times


def test_throttled_calls_can_carry_retry_after(server, pki):
    quota(server, rate=0.001, burst=1, retry_after=7)
    assert create_session(server, pki["ids"]["p256"])[0] == 201
    status, response, _ = create_session(server, pki["ids"]["p256"])
    assert status == 429 and response.getheader("Retry-After") == "7"


def test_the_bucket_refills_at_the_rate(server, pki):
    quota(server, rate=10, burst=1)
    assert create_session(server, pki["ids"]["p256"])[0] == 201
    time.sleep(0.2)  # at least two tokens' worth: one is back whatever else the machine does meanwhile
    assert create_session(server, pki["ids"]["p256"])[0] == 201


def test_reset_refills_the_bucket_and_keeps_the_quota(server, pki):
    quota(server, rate=0.001, burst=1)
    assert [create_session(server, pki["ids"]["p256"])[0] for _ in range(2)] == [201, 429]
    assert call(server, "POST", "/_emulator/reset", b"")[0] == 200
    q = quota_stats(server)
    assert (q["rate"], q["burst"], q["accepted"], q["throttled"], q["calls"]) == (0.001, 1, 0, 0, [])
    assert [create_session(server, pki["ids"]["p256"])[0] for _ in range(2)] == [201, 429]


def test_without_a_quota_every_call_passes_and_is_recorded(server, pki):
    results = [create_session(server, pki["ids"]["p256"])[0] for _ in range(12)]
    assert results == [201] * 12
    q = quota_stats(server)
    assert (q["rate"], q["accepted"], q["throttled"]) == (None, 12, 0)
    assert len(q["calls"]) == 12 and not any(c["throttled"] for c in q["calls"])


@pytest.mark.parametrize("settings, field", [
    ({"rate": 0}, "rate"), ({"rate": -1}, "rate"), ({"rate": "5"}, "rate"), ({"rate": True}, "rate"),
    ({"burst": 5}, "rate"), ({"rate": 5, "burst": 0.5}, "burst"), ({"rate": 5, "retry_after": -1}, "retry_after"),
    ({"rate": 5, "retry_after": 1.5}, "retry_after"), ({"rate": 5, "per": 1}, "unknown keys"), ({}, "rate"),
    ([5], "rate"),
])
def test_bad_quota_settings_are_refused(server, settings, field):
    status, response, data = call(server, "POST", "/_emulator/quota", json.dumps(settings).encode())
    assert status == 400 and response.getheader("X-Amzn-ErrorType") == "ValidationException"
    assert json.loads(data)["message"].startswith("quota: ") and field in json.loads(data)["message"]
    assert quota_stats(server)["rate"] is None


def test_hundreds_of_callers_at_once_are_all_answered(server, pki):
    """300 clients, each on a connection of its own as an agent's refresh is, call at the same instant: every
    one gets its answer, and the quota counts each exactly once. The listen backlog holds them all, so none
    waits for a retransmitted SYN."""
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{server['port']}"], capture_output=True, text=True,
                               timeout=10).stdout.split()
    assert int(listening[2]) >= 300, f"listen backlog (ss Send-Q) {listening}"
    quota(server, rate=0.001, burst=40)
    callers = 300
    requests = [signed_request(server, pki["ids"]["p256"], session_name=f"c-{i}") for i in range(callers)]
    start = threading.Barrier(callers)
    statuses = [None] * callers

    def caller(i):
        conn = connect(server)
        try:
            start.wait(timeout=60)
            path, headers, body = requests[i]
            statuses[i] = call(server, "POST", path, body, headers, conn=conn)[0]
        finally:
            conn.close()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(statuses) == [201] * 40 + [429] * 260
    q = quota_stats(server)
    assert (q["accepted"], q["throttled"]) == (40, 260)
    assert sorted(c["session"] for c in q["calls"]) == sorted(f"c-{i}" for i in range(callers))


def test_quota_flags(tmp_path):
    proc, port = _start(tmp_path, "--quota-rate", "0.001", "--quota-burst", "1", "--quota-retry-after", "3",
                        tls=False)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/_emulator/quota")
        assert json.loads(conn.getresponse().read())["burst"] == 1
        conn.request("POST", "/sessions", body=b"{}", headers={"Content-Type": "application/json"})
        first = conn.getresponse()
        first.read()
        conn.request("POST", "/sessions", body=b"{}", headers={"Content-Type": "application/json"})
        second = conn.getresponse()
        second.read()
        conn.close()
        assert first.status == 400  # the token was taken, then the request was verified (and refused)
        assert second.status == 429 and second.getheader("Retry-After") == "3"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("args, flag", [
    (["--quota-rate", "0"], "--quota-rate"), (["--quota-rate", "5", "--quota-burst", "0"], "--quota-burst"),
    (["--quota-burst", "5"], "--quota-rate"), (["--quota-rate", "5", "--quota-retry-after", "-2"],
                                               "--quota-retry-after"),
])
def test_bad_quota_flags(args, flag):
    result = subprocess.run([PYTHON, EMULATOR, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("ra_emulator.py: error: " + flag), result.stderr


# ---------------------------------------------------------------------------------------------------------
# Command line


def test_print_arns():
    out = subprocess.run([PYTHON, EMULATOR, "--print-arns", "--region", "eu-west-2"], check=True,
                         capture_output=True, timeout=30).stdout
    doc = json.loads(out)
    assert doc["region"] == "eu-west-2"
    assert doc["trust_anchor_arn"].startswith("arn:aws:rolesanywhere:eu-west-2:123456789012:trust-anchor/")
    assert doc["profile_arn"].startswith("arn:aws:rolesanywhere:eu-west-2:123456789012:profile/")
    assert doc["role_arn"] == "arn:aws:iam::123456789012:role/rad-test-role"


@pytest.mark.parametrize("address", ["0.0.0.0", "192.0.2.1", "::"])
def test_refuses_non_loopback_listen(address):
    result = subprocess.run([PYTHON, EMULATOR, "--listen", address], capture_output=True, timeout=30)
    assert result.returncode != 0 and b"loopback" in result.stderr


def test_plain_http_mode(tmp_path, pki):
    proc, port = _start(tmp_path, "--trust-anchor-ca", pki["anchors"], tls=False)
    try:
        server = {"port": port, "arns": json.loads(subprocess.run(
            [PYTHON, EMULATOR, "--print-arns"], capture_output=True, timeout=30).stdout)}
        path, headers, body = signed_request(server, pki["ids"]["p384"])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", path, body=body, headers=headers)
        assert conn.getresponse().status == 201
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_ipv6_loopback(tmp_path, pki):
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    proc, port = _start(tmp_path, "--listen", "::1", "--region", "eu-west-2", "--trust-anchor-ca", pki["anchors"])
    try:
        arns = json.loads(subprocess.run([PYTHON, EMULATOR, "--print-arns", "--region", "eu-west-2"],
                                         capture_output=True, timeout=30).stdout)
        server = {"port": port, "arns": arns}
        path, headers, body = signed_request(server, pki["ids"]["p256"])
        headers["Host"] = f"[::1]:{port}"  # unsigned value differs from the signed one: must fail
        context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
        conn = http.client.HTTPSConnection("::1", port, context=context, timeout=10)
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        assert response.status == 403 and b"Invalid signature" in response.read()
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
