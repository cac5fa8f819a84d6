#!/usr/bin/python3
"""IAM Roles Anywhere CreateSession emulator for tests, benchmarks and the demo.

It serves `POST /sessions` on loopback (HTTPS with a throwaway CA, or plain HTTP) and checks every request on
its own, without sharing code with the agent: the query ARNs against the emulated trust anchor, profile and
role; the JSON body; the SigV4-X509 Authorization header; the leaf certificate and its chain up to a trusted
CA; and finally the signature, over a canonical request that the emulator rebuilds from the raw request.
Accepted requests get fresh random credentials in the service's 201 answer; rejected ones get the service's
JSON error with an X-Amzn-ErrorType header.

Control endpoints (no authentication; loopback peers only, like everything else):
  POST /_emulator/faults   queue faults: one JSON object or a list of them, each with an optional "count" (1)
  GET  /_emulator/stats    counters, rejection reasons and the recorded requests (headers, body, outcome)
  POST /_emulator/reset    forget faults and statistics, and set the clock offset back to 0
  GET  /_emulator/config   the emulated ARNs and region (and "tls_fault_port" with --tls-fault-listener)
  GET  /_emulator/quota    the CreateSession quota (below): stats["quota"] alone, cheap enough to poll
  POST /_emulator/quota    {"rate": R, "burst": B, "retry_after": S}: set the quota and fill its bucket;
                           {"rate": null} lifts it. The answer is the new settings.
  POST /_emulator/clock    {"offset_seconds": N}: the emulator's clock runs N s ahead of the host's (negative:
                           behind). It moves the X-Amz-Date skew check (300 s, "Signature expired" like SigV4
                           services), the issued expirations and the Date header of every answer.
  POST /_emulator/tls      {"variant": V}: what the --tls-fault-listener port presents from the next connection
                           on: "good" (the same certificate as the main port), "untrusted_ca" (a certificate
                           for 127.0.0.1 from a CA nobody trusts), "wrong_host" (the right CA, but only for the
                           name wrong-host.invalid), "expired" (the right CA and names, expired yesterday),
                           "tls1_0" (the good certificate, TLS 1.0 only, at OpenSSL security level 0) or
                           "reset" (read the ClientHello, then reset the connection). The listener shares the
                           faults and statistics; stats["tls_connections"] counts the connections it accepted.

The CreateSession quota (--quota-rate R, --quota-burst B, --quota-retry-after S, or /_emulator/quota) is the
account's request rate limit, modelled as a token bucket: R tokens per second, at most B stored, full when the
quota is set and after a reset. Every POST /sessions that gets past the arrival faults below takes one whole
token before anything is verified; without one it is throttled as the service throttles: HTTP 429,
X-Amzn-ErrorType ThrottlingException, {"__type": "ThrottlingException", "message": "Rate exceeded"}, and
`Retry-After: S` when S is set. stats["quota"] holds the settings, the accepted and throttled counts, and one
entry per call (at most 100 000, oldest dropped): {"at", "answered" (Unix times, s), "throttled", "status"
(absent when the connection was closed without an answer), "session" (the body's roleSessionName)}. Without a
quota every call is accepted and still recorded.

Faults, served first in, first out. These replace the answer as soon as a /sessions request arrives:
  {"status": 500|503|403|...}          that HTTP status with the service's error JSON ("message" to set it)
  {"status": 429, "retry_after": S}    with a Retry-After header
  {"status": 400, "error_type": T}     with X-Amzn-ErrorType T and "__type": T in the body (e.g. a 400
                                       ThrottlingException)
  {"delay_ms": D}                      wait D ms, then answer normally (or apply the next status/close fault)
  {"close": true}                      close the connection without an answer
  {"blackhole": true}                  read the request, never answer; the connection is held until the client
                                       gives up (or 300 s pass)
These alter the answer to the next request that passes verification:
  {"malformed_json": true}             201 with truncated JSON
  {"empty_credential_set": true}       201 with "credentialSet": []
  {"expired": true}                    an expiration one hour in the past
  {"long_expiration": true}            an expiration 13 hours away (the service never exceeds 12 h)
  {"lifetime_seconds": N}              an expiration N seconds away whatever durationSeconds asked for (so
                                       that tests can run a credentials' whole life in minutes)
  {"missing_session_token": true}      201 whose credentials lack sessionToken
  {"truncated": true}                  201 whose Content-Length announces the whole answer; half is sent,
                                       then the connection is closed
  {"oversized": true}                  201 with a valid answer padded to 10 MB
  {"canary": true}                     ASIACANARY<10 digits> / CANARY-SECRET-<n> / CANARY-TOKEN-<n>, so that tests
                                       can prove the secret values never reach logs

Only the Python standard library and python3-cryptography (Debian 12: version 38) are used; run it with
/usr/bin/python3. ML-DSA (AWS4-X509-MLDSA), which python3-cryptography cannot verify, is verified by the
openssl command line (`openssl pkeyutl -verify -rawin`), so it needs OpenSSL 3.5 or later (Debian 13); with an
older openssl every ML-DSA signature is refused.
"""

import argparse
import base64
import binascii
import datetime
import hashlib
import http.server
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import warnings

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
# Fixed identifiers, so that `--print-arns` in another process names the same resources as a running server.
TRUST_ANCHOR_ID = "5c0e8f2a-7d41-4b9e-a6c3-91f0d2e4b7a8"
PROFILE_ID = "e3b17c94-2f6d-4a85-b0e9-7c1a4d5f8e26"
ROLE_NAME = "rad-test-role"

MAX_SKEW_SECONDS = 300
MAX_BODY_BYTES = 64 * 1024
MAX_CHAIN_DEPTH = 5
MAX_RECORDED_REQUESTS = 200
MAX_QUOTA_CALLS = 100000
# A listen backlog for hundreds of agents calling at the same instant: socketserver's default of 5 would drop
# their SYNs, and the kernel's 1 s SYN retransmission would then pose as service latency.
LISTEN_BACKLOG = 1024
SUPPORTED_CURVES = {"secp256r1", "secp384r1", "secp521r1"}
ALGORITHMS = {"AWS4-X509-RSA-SHA256": "RSA", "AWS4-X509-ECDSA-SHA256": "EC", "AWS4-X509-MLDSA": "ML-DSA"}
# FIPS 204 parameter sets by their SubjectPublicKeyInfo (and certificate signature) algorithm OIDs.
ML_DSA_OIDS = {"2.16.840.1.101.3.4.3.17": "ML-DSA-44", "2.16.840.1.101.3.4.3.18": "ML-DSA-65",
               "2.16.840.1.101.3.4.3.19": "ML-DSA-87"}
OPENSSL = "/usr/bin/openssl"
# Headers the service requires to be signed, in canonical (sorted) order.
REQUIRED_SIGNED_HEADERS = ("content-type", "host", "x-amz-date", "x-amz-x509")
BODY_KEYS = {"durationSeconds", "roleSessionName", "instanceProperties"}
ROLE_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
AUTHORIZATION = re.compile(
    r"^(?P<alg>\S+) Credential=(?P<cred>[^,\s]+), SignedHeaders=(?P<signed>[^,\s]+), Signature=(?P<sig>\S+)$")

# Faults that replace the answer as soon as a /sessions request arrives (before any verification) ...
PRE_FAULTS = ("status", "close", "blackhole", "delay_ms")
# ... and faults that alter the answer to a request that passed verification.
POST_FAULTS = ("malformed_json", "empty_credential_set", "expired", "canary", "long_expiration", "lifetime_seconds",
               "missing_session_token", "truncated", "oversized")
BLACKHOLE_SECONDS = 300
OVERSIZED_BYTES = 10 * 1024 * 1024
TLS_VARIANTS = ("good", "untrusted_ca", "wrong_host", "expired", "tls1_0", "reset")
FAULT_KINDS = PRE_FAULTS + POST_FAULTS
ERROR_TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
               429: "ThrottlingException", 500: "InternalServerException", 503: "ServiceUnavailableException"}


class Rejection(Exception):
    """A request the service would refuse: HTTP status, X-Amzn-ErrorType and a message naming the reason."""

    def __init__(self, status, error_type, message):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def denied(message):
    return Rejection(403, "AccessDeniedException", message)


def invalid(message):
    return Rejection(400, "ValidationException", message)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def rfc3339(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def arns(region, account):
    return {
        "trust_anchor_arn": f"arn:aws:rolesanywhere:{region}:{account}:trust-anchor/{TRUST_ANCHOR_ID}",
        "profile_arn": f"arn:aws:rolesanywhere:{region}:{account}:profile/{PROFILE_ID}",
        "role_arn": f"arn:aws:iam::{account}:role/{ROLE_NAME}",
        "region": region,
    }


def parse_arn(value, what):
    """Split an ARN into its six fields, or reject the request naming which ARN is malformed."""
    parts = value.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[1] or not parts[2] or not parts[5]:
        raise invalid(f"{what} {value!r} is not a valid ARN")
    return {"partition": parts[1], "service": parts[2], "region": parts[3], "account": parts[4],
            "resource": parts[5]}


def is_loopback(host):
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


# ---------------------------------------------------------------------------------------------------------
# Certificates


def load_pem_bundle(path):
    with open(path, "rb") as f:
        data = f.read()
    certs = []
    for block in re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.S):
        certs.append(x509.load_pem_x509_certificate(block))
    if not certs:
        raise ValueError(f"{path}: no PEM CERTIFICATE block")
    return certs


def decode_der_certificate(text, what):
    try:
        der = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise denied(f"{what} is not valid base64")
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise denied(f"{what} is not a DER X.509 certificate ({e})")


def describe(cert):
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return "<unprintable subject>"


def extension(cert, ext_type):
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None


def der_items(data):
    """The (tag, whole element, contents) of each DER element in `data`, in order (definite lengths only)."""
    items = []
    i = 0
    while i < len(data):
        tag = data[i]
        length = data[i + 1]
        start = i + 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4:
                raise ValueError("unsupported DER length")
            length = int.from_bytes(data[start:start + count], "big")
            start += count
        if start + length > len(data):
            raise ValueError("truncated DER")
        items.append((tag, data[i:start + length], data[start:start + length]))
        i = start + length
    return items


def der_oid(contents):
    """The dotted text of an OBJECT IDENTIFIER's contents octets."""
    arcs = []
    value = 0
    for byte in contents:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first] + arcs[1:])


def subject_public_key_info(cert):
    """(DER SubjectPublicKeyInfo, its algorithm OID) of a certificate, read from the TBSCertificate itself, so
    that keys python3-cryptography cannot load (ML-DSA) are seen too."""
    fields = der_items(der_items(cert.tbs_certificate_bytes)[0][2])
    spki = fields[6 if fields[0][0] == 0xA0 else 5]
    algorithm = der_items(der_items(spki[2])[0][2])[0]
    return spki[1], der_oid(algorithm[2])


def ml_dsa_variant(cert):
    """'ML-DSA-44' / '-65' / '-87' when the certificate's key is ML-DSA, else None."""
    try:
        return ML_DSA_OIDS.get(subject_public_key_info(cert)[1])
    except (IndexError, ValueError):
        return None


def ml_dsa_verify(spki_der, message, signature):
    """Pure ML-DSA verification (FIPS 204, empty context) by the openssl command line, which is independent of
    the agent's code: python3-cryptography has no ML-DSA."""
    with tempfile.TemporaryDirectory(prefix="ra-emulator-") as scratch:
        files = {}
        for name, data in (("key.der", spki_der), ("message", message), ("signature", signature)):
            files[name] = os.path.join(scratch, name)
            with open(files[name], "wb") as f:
                f.write(data)
        result = subprocess.run([OPENSSL, "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey",
                                 files["key.der"], "-rawin", "-in", files["message"], "-sigfile",
                                 files["signature"]], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=30)
        return result.returncode == 0


def signed_by(cert, issuer):
    """True when issuer's public key verifies cert's signature (cryptography 38 has no path validation)."""
    if cert.issuer != issuer.subject:
        return False
    if ml_dsa_variant(issuer):
        if cert.signature_algorithm_oid.dotted_string not in ML_DSA_OIDS:
            return False
        return ml_dsa_verify(subject_public_key_info(issuer)[0], cert.tbs_certificate_bytes, cert.signature)
    try:
        key = issuer.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return False
    try:
        if cert.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS:
            return False  # not used by any CA this emulator is meant to trust
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def check_dates(cert, now, role):
    if now < cert.not_valid_before:
        raise denied(f"{role} certificate {describe(cert)!r} is not valid before "
                     f"{rfc3339(cert.not_valid_before)} (now {rfc3339(now)})")
    if now > cert.not_valid_after:
        raise denied(f"{role} certificate {describe(cert)!r} expired at {rfc3339(cert.not_valid_after)} "
                     f"(now {rfc3339(now)})")


def check_leaf(leaf, now):
    if leaf.version != x509.Version.v3:
        raise denied(f"Untrusted Signing Certificate: leaf {describe(leaf)!r} is not an X.509 v3 certificate")
    constraints = extension(leaf, x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        raise denied(f"Untrusted Signing Certificate: leaf {describe(leaf)!r} is a CA certificate")
    usage = extension(leaf, x509.KeyUsage)
    if usage is None or not usage.digital_signature:
        raise denied(f"Untrusted Signing Certificate: leaf {describe(leaf)!r} lacks the digitalSignature "
                     "key usage")
    check_dates(leaf, now, "leaf")
    if ml_dsa_variant(leaf):
        return "ML-DSA"
    key = leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise denied(f"Untrusted Signing Certificate: RSA key of {key.key_size} bits (minimum 2048)")
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in SUPPORTED_CURVES:
            raise denied(f"Untrusted Signing Certificate: unsupported curve {key.curve.name}")
        return "EC"
    raise denied(f"Untrusted Signing Certificate: unsupported key type {type(key).__name__}")


def build_path(leaf, chain, anchors, now):
    """Walk from the leaf to a trust anchor through the sent chain (in any order); returns the depth used."""
    current = leaf
    used = []
    for _ in range(MAX_CHAIN_DEPTH + 1):
        for anchor in anchors:
            if signed_by(current, anchor):
                check_dates(anchor, now, "trust anchor")
                return len(used)
        for candidate in chain:
            if candidate in used or candidate == current or not signed_by(current, candidate):
                continue
            constraints = extension(candidate, x509.BasicConstraints)
            if constraints is None or not constraints.ca:
                raise denied(f"Untrusted Signing Certificate: chain certificate {describe(candidate)!r} is not "
                             "a CA")
            check_dates(candidate, now, "intermediate")
            used.append(candidate)
            current = candidate
            break
        else:
            raise denied(f"Untrusted Signing Certificate: no trust anchor or sent chain certificate issued "
                         f"{describe(current)!r} (issuer {current.issuer.rfc4514_string()!r})")
    raise denied("Untrusted Signing Certificate: chain longer than %d certificates" % MAX_CHAIN_DEPTH)


# ---------------------------------------------------------------------------------------------------------
# SigV4-X509, rebuilt here from the raw request


def uri_encode(text):
    return urllib.parse.quote(text, safe="-_.~")


def split_query(raw_query):
    """Decode the raw query into (name, value) pairs; '+' is kept literally, as SigV4 does."""
    pairs = []
    if not raw_query:
        return pairs
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((urllib.parse.unquote(name), urllib.parse.unquote(value)))
    return pairs


def canonical_query(pairs):
    encoded = sorted((uri_encode(n), uri_encode(v)) for n, v in pairs)
    return "&".join(f"{n}={v}" for n, v in encoded)


def canonical_header_value(values):
    return ",".join(" ".join(v.split()) for v in values)


def json_object(body):
    """A control request's JSON object body, or {} when it is not one (the caller then answers 400)."""
    try:
        doc = json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def canonical_request(method, path, pairs, headers, signed, body):
    lines = [method, uri_encode_path(path), canonical_query(pairs)]
    for name in signed:
        lines.append(f"{name}:{canonical_header_value(headers.get_all(name) or [])}")
    return "\n".join(lines) + "\n\n" + ";".join(signed) + "\n" + hashlib.sha256(body).hexdigest()


def uri_encode_path(path):
    return "/".join(uri_encode(urllib.parse.unquote(segment)) for segment in path.split("/"))


def verify_signature(key_type, leaf, signature, message):
    try:
        if key_type == "ML-DSA":
            # Pure ML-DSA over the string to sign itself (no digest), empty context.
            if not ml_dsa_verify(subject_public_key_info(leaf)[0], message, signature):
                raise InvalidSignature()
            return
        public_key = leaf.public_key()
        if key_type == "RSA":
            public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise denied("Invalid signature: it does not verify over the canonical request rebuilt by the "
                     "emulator with the leaf certificate's public key")


class Quota:
    """The account's CreateSession quota: a token bucket of `rate` tokens per second holding at most `burst`,
    full at creation. rate None means no quota. `clock` is a monotonic clock in seconds (injected by the
    self-test). Not thread-safe: the emulator calls it under its lock."""

    def __init__(self, rate=None, burst=None, retry_after=None, clock=time.monotonic):
        self.rate = rate
        self.burst = burst if burst is not None else (max(1.0, rate) if rate is not None else None)
        self.retry_after = retry_after
        self.clock = clock
        self.tokens = self.burst
        self.last = clock()

    def take(self):
        """True (and one token taken) when the call is within the quota, False when it is throttled."""
        if self.rate is None:
            return True
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def settings(self):
        return {"rate": self.rate, "burst": self.burst, "retry_after": self.retry_after}


def check_quota_settings(rate, burst, retry_after):
    """None when the quota settings make sense, else (the setting at fault, what is wrong with it)."""
    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if rate is None:
        if burst is not None or retry_after is not None:
            return "rate", "burst and retry_after need a rate"
        return None
    if not number(rate) or not 0 < rate <= 100000:
        return "rate", f"want calls per second, above 0 and at most 100000 (got {rate!r})"
    if burst is not None and (not number(burst) or not 1 <= burst <= 1000000):
        return "burst", f"want a number of calls from 1 to 1000000 (got {burst!r})"
    if retry_after is not None and (not isinstance(retry_after, int) or isinstance(retry_after, bool)
                                    or not 0 <= retry_after <= 86400):
        return "retry_after", f"want whole seconds from 0 to 86400 (got {retry_after!r})"
    return None


# ---------------------------------------------------------------------------------------------------------
# State shared by the handler threads


class Emulator:
    def __init__(self, region, account, anchors, log, quota=None):
        self.region = region
        self.account = account
        self.arns = arns(region, account)
        self.anchors = anchors
        self.log_stream = log
        self.lock = threading.Lock()
        self.canary_counter = 0
        self.tls_variant = "good"
        self.tls_fault_port = None
        self.quota = quota or Quota()
        self.reset()

    def reset(self):
        with self.lock:
            self.clock_offset = 0
            self.faults = []
            self.stats = {"requests": 0, "accepted": 0, "rejected": 0, "faulted": 0, "rejections": [],
                          "faults_applied": [], "last_request": None, "recorded": [], "tls_connections": 0}
            self.quota = Quota(**self.quota.settings(), clock=self.quota.clock)
            self.quota_counts = {"accepted": 0, "throttled": 0}
            self.quota_calls = []

    def set_quota(self, rate, burst, retry_after):
        """Replace the quota (its bucket full); the counts and calls recorded so far are kept."""
        with self.lock:
            self.quota = Quota(rate, burst, retry_after, clock=self.quota.clock)

    def quota_call(self, session):
        """Charge one CreateSession to the quota and record it; returns the call's record, whose "throttled"
        says whether it was."""
        call = {"at": time.time(), "session": session}
        with self.lock:
            call["throttled"] = not self.quota.take()
            self.quota_counts["throttled" if call["throttled"] else "accepted"] += 1
            self.quota_calls.append(call)
            if len(self.quota_calls) > MAX_QUOTA_CALLS:
                del self.quota_calls[:len(self.quota_calls) - MAX_QUOTA_CALLS]
        return call

    def quota_snapshot(self):
        """The quota block of the statistics (the caller holds the lock)."""
        return dict(self.quota.settings(), **self.quota_counts, calls=[dict(c) for c in self.quota_calls])

    def now(self):
        """The emulator's clock: the host's, moved by the offset set through /_emulator/clock."""
        with self.lock:
            offset = self.clock_offset
        return utcnow() + datetime.timedelta(seconds=offset)

    def log(self, line):
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        with self.lock:
            self.log_stream.write(f"{stamp} {line}\n")
            self.log_stream.flush()

    # Faults ------------------------------------------------------------------------------------------

    def queue_faults(self, specs):
        parsed = []
        for spec in specs:
            if not isinstance(spec, dict):
                raise invalid("a fault must be a JSON object")
            count = spec.get("count", 1)
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise invalid(f"fault {spec}: count must be a positive integer")
            kinds = [k for k in FAULT_KINDS if k in spec]
            if len(kinds) != 1:
                raise invalid(f"fault {spec}: name exactly one of {', '.join(FAULT_KINDS)}")
            kind = kinds[0]
            value = spec[kind]
            if kind == "status" and (not isinstance(value, int) or not 400 <= value <= 599):
                raise invalid(f"fault {spec}: status must be an integer from 400 to 599")
            if kind == "delay_ms" and (not isinstance(value, (int, float)) or not 0 <= value <= 120000):
                raise invalid(f"fault {spec}: delay_ms must be a number from 0 to 120000")
            if kind == "lifetime_seconds":
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 43200:
                    raise invalid(f"fault {spec}: lifetime_seconds must be an integer from 1 to 43200")
            elif kind in ("close", "blackhole") + POST_FAULTS and value is not True:
                raise invalid(f"fault {spec}: {kind} must be true")
            error_type = spec.get("error_type")
            if error_type is not None and (kind != "status" or not isinstance(error_type, str)
                                           or not re.fullmatch(r"[A-Za-z]{1,64}", error_type)):
                raise invalid(f"fault {spec}: error_type goes with a status fault, as a word of letters")
            retry_after = spec.get("retry_after")
            if retry_after is not None and (kind != "status" or not isinstance(retry_after, int) or retry_after < 0):
                raise invalid(f"fault {spec}: retry_after goes with a status fault, as whole seconds")
            unknown = set(spec) - {kind, "count", "retry_after", "message", "error_type"}
            if unknown:
                raise invalid(f"fault {spec}: unknown keys {sorted(unknown)}")
            parsed.append({"kind": kind, "value": value, "count": count, "retry_after": retry_after,
                           "message": spec.get("message"), "error_type": error_type})
        with self.lock:
            self.faults.extend(parsed)
        return len(parsed)

    def take_fault(self, kinds):
        with self.lock:
            for fault in self.faults:
                if fault["kind"] in kinds:
                    fault["count"] -= 1
                    if fault["count"] == 0:
                        self.faults.remove(fault)
                    applied = {k: fault[k] for k in ("kind", "value", "retry_after") if fault[k] is not None}
                    self.stats["faults_applied"].append(applied)
                    return dict(fault)
        return None

    def pending_faults(self):
        with self.lock:
            return [dict(f) for f in self.faults]

    # Verification ------------------------------------------------------------------------------------

    def check_query(self, pairs):
        names = [n for n, _ in pairs]
        for name in set(names):
            if names.count(name) > 1:
                raise invalid(f"query parameter {name} is repeated")
        query = dict(pairs)
        unknown = set(query) - {"profileArn", "roleArn", "trustAnchorArn"}
        if unknown:
            raise invalid(f"unknown query parameters: {', '.join(sorted(unknown))}")
        for name in ("profileArn", "roleArn", "trustAnchorArn"):
            if not query.get(name):
                raise invalid(f"query parameter {name} is missing")

        anchor = parse_arn(query["trustAnchorArn"], "trustAnchorArn")
        if anchor["service"] != "rolesanywhere" or not anchor["resource"].startswith("trust-anchor/"):
            raise invalid(f"trustAnchorArn {query['trustAnchorArn']!r} is not a trust anchor ARN")
        if anchor["region"] != self.region:
            raise denied(f"trust anchor {query['trustAnchorArn']} is in region {anchor['region'] or '(none)'}, "
                         f"this endpoint serves {self.region}")
        if query["trustAnchorArn"] != self.arns["trust_anchor_arn"]:
            raise denied(f"unknown trust anchor {query['trustAnchorArn']} (expected "
                         f"{self.arns['trust_anchor_arn']})")

        profile = parse_arn(query["profileArn"], "profileArn")
        if profile["service"] != "rolesanywhere" or not profile["resource"].startswith("profile/"):
            raise invalid(f"profileArn {query['profileArn']!r} is not a profile ARN")
        if profile["region"] != self.region:
            raise denied(f"profile {query['profileArn']} is in region {profile['region'] or '(none)'}, this "
                         f"endpoint serves {self.region}")
        if query["profileArn"] != self.arns["profile_arn"]:
            raise denied(f"unknown profile {query['profileArn']} (expected {self.arns['profile_arn']})")

        role = parse_arn(query["roleArn"], "roleArn")
        if role["service"] != "iam" or not role["resource"].startswith("role/"):
            raise invalid(f"roleArn {query['roleArn']!r} is not an IAM role ARN")
        if role["region"]:
            raise denied(f"role {query['roleArn']} names region {role['region']}; IAM role ARNs have none")
        if role["account"] != self.account:
            raise denied(f"role {query['roleArn']} is in account {role['account']}, the profile is in "
                         f"account {self.account}")
        if query["roleArn"] != self.arns["role_arn"]:
            raise denied(f"role {query['roleArn']} is not in the profile's roles ({self.arns['role_arn']})")
        return query

    @staticmethod
    def check_body(body, headers):
        content_type = headers.get("Content-Type")
        if content_type is None or content_type.split(";")[0].strip().lower() != "application/json":
            raise invalid(f"Content-Type must be application/json (got {content_type!r})")
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise invalid(f"the body is not JSON ({e})")
        if not isinstance(doc, dict):
            raise invalid("the body must be a JSON object")
        unknown = set(doc) - BODY_KEYS
        if unknown:
            raise invalid(f"unknown body fields: {', '.join(sorted(unknown))}")
        duration = doc.get("durationSeconds", 3600)
        if not isinstance(duration, int) or isinstance(duration, bool) or not 900 <= duration <= 43200:
            raise invalid(f"durationSeconds must be an integer from 900 to 43200 (got {duration!r})")
        name = doc.get("roleSessionName")
        if name is not None and (not isinstance(name, str) or not ROLE_SESSION_NAME.match(name)):
            raise invalid(f"roleSessionName {name!r} must be 2 to 64 characters of [A-Za-z0-9_+=,.@-]")
        return duration, name

    def check_signature(self, method, path, pairs, headers, body, now):
        """Everything about the Authorization header, the certificate and the signature. Returns facts."""
        authorization = headers.get_all("Authorization") or []
        if len(authorization) != 1:
            raise denied("Missing Authentication Token: exactly one Authorization header is required")
        match = AUTHORIZATION.match(authorization[0])
        if not match:
            raise denied("Authorization header is not '<ALG> Credential=<serial>/<date>/<region>/rolesanywhere/"
                         "aws4_request, SignedHeaders=<h;h>, Signature=<hex>'")
        algorithm = match["alg"]
        if algorithm not in ALGORITHMS:
            raise denied(f"unsupported algorithm {algorithm!r} (AWS4-X509-RSA-SHA256, AWS4-X509-ECDSA-SHA256 or "
                         "AWS4-X509-MLDSA)")
        scope = match["cred"].split("/")
        if len(scope) != 5:
            raise denied(f"Credential {match['cred']!r} is not <serial>/<yyyymmdd>/<region>/rolesanywhere/"
                         "aws4_request")
        serial_text, scope_date, scope_region, scope_service, scope_terminal = scope
        if not re.fullmatch(r"0|[1-9][0-9]*", serial_text):
            raise denied(f"Credential serial {serial_text!r} is not a decimal number")
        if scope_region != self.region:
            raise denied(f"Credential scope region {scope_region!r} does not match the endpoint region "
                         f"{self.region!r}")
        if scope_service != "rolesanywhere" or scope_terminal != "aws4_request":
            raise denied(f"Credential scope must end in /rolesanywhere/aws4_request (got "
                         f"/{scope_service}/{scope_terminal})")
        signature_hex = match["sig"]
        if not re.fullmatch(r"(?:[0-9a-f]{2})+", signature_hex):
            raise denied("Signature is not lowercase hex")

        signed = match["signed"].split(";")
        if signed != sorted(signed) or len(set(signed)) != len(signed) or any(s != s.lower() for s in signed):
            raise denied(f"SignedHeaders {match['signed']!r} must be lowercase, sorted and without repeats")
        if "authorization" in signed:
            raise denied("SignedHeaders must not include authorization")
        for required in REQUIRED_SIGNED_HEADERS:
            if required not in signed:
                raise denied(f"SignedHeaders {match['signed']!r} lacks {required}")
        for name in signed:
            if headers.get(name) is None:
                raise denied(f"signed header {name} is not in the request")
        if headers.get("X-Amz-X509-Chain") is not None and "x-amz-x509-chain" not in signed:
            raise denied("X-Amz-X509-Chain is sent but not signed")

        amz_date = headers.get("X-Amz-Date").strip()
        try:
            signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
        except ValueError:
            raise denied(f"X-Amz-Date {amz_date!r} is not YYYYMMDDThhmmssZ")
        skew = (signed_at - now).total_seconds()
        if abs(skew) > MAX_SKEW_SECONDS:
            raise denied(f"Signature expired: X-Amz-Date {amz_date} is {skew:+.0f} s from the server time "
                         f"{now.strftime('%Y%m%dT%H%M%SZ')} (allowed {MAX_SKEW_SECONDS} s)")
        if scope_date != amz_date[:8]:
            raise denied(f"Credential scope date {scope_date} does not match X-Amz-Date {amz_date}")

        leaf = decode_der_certificate(headers.get("X-Amz-X509"), "X-Amz-X509")
        chain = []
        chain_header = headers.get("X-Amz-X509-Chain")
        if chain_header is not None:
            items = chain_header.split(",")
            for i, item in enumerate(items):
                chain.append(decode_der_certificate(item, f"X-Amz-X509-Chain item {i + 1} of {len(items)}"))
        if str(leaf.serial_number) != serial_text:
            raise denied(f"Credential serial {serial_text} does not match the X-Amz-X509 certificate's serial "
                         f"{leaf.serial_number}")
        key_type = check_leaf(leaf, now)
        if ALGORITHMS[algorithm] != key_type:
            raise denied(f"algorithm {algorithm} does not match the certificate's {key_type} key")
        depth = build_path(leaf, chain, self.anchors, now)

        canonical = canonical_request(method, path, pairs, headers, signed, body)
        string_to_sign = "\n".join([algorithm, amz_date, "/".join(scope[1:]),
                                    hashlib.sha256(canonical.encode()).hexdigest()])
        verify_signature(key_type, leaf, bytes.fromhex(signature_hex), string_to_sign.encode())
        return {"leaf": leaf, "serial": serial_text, "algorithm": algorithm, "signed_headers": signed,
                "chain_length": len(chain), "path_intermediates": depth}

    # Answers -----------------------------------------------------------------------------------------

    def issue(self, leaf, duration, session_name, fault_kind, now, fault_value=None):
        if fault_kind == "canary":
            with self.lock:
                self.canary_counter += 1
                n = self.canary_counter
            access_key = "ASIACANARY%010d" % n
            secret_key = f"CANARY-SECRET-{n}"
            token = f"CANARY-TOKEN-{n}"
        else:
            alphabet = string.ascii_uppercase + string.digits
            access_key = "ASIA" + "".join(secrets.choice(alphabet) for _ in range(16))
            secret_key = base64.b64encode(secrets.token_bytes(30)).decode()
            token = base64.b64encode(secrets.token_bytes(240)).decode()
        if fault_kind == "expired":
            expiration = now - datetime.timedelta(seconds=3600)
        elif fault_kind == "long_expiration":
            expiration = now + datetime.timedelta(hours=13)
        elif fault_kind == "lifetime_seconds":
            expiration = now + datetime.timedelta(seconds=fault_value)
        else:
            expiration = now + datetime.timedelta(seconds=duration)
        names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = names[0].value if names else ""
        session = session_name or format(leaf.serial_number, "x")
        role_id = "AROA" + hashlib.sha256(self.arns["role_arn"].encode()).hexdigest()[:17].upper()
        credentials = {"accessKeyId": access_key, "secretAccessKey": secret_key, "sessionToken": token,
                       "expiration": rfc3339(expiration)}
        if fault_kind == "missing_session_token":
            del credentials["sessionToken"]
        return {
            "credentialSet": [{
                "assumedRoleUser": {"arn": f"arn:aws:sts::{self.account}:assumed-role/{ROLE_NAME}/{session}",
                                    "assumedRoleId": f"{role_id}:{session}"},
                "credentials": credentials,
                "packedPolicySize": 0,
                "roleArn": self.arns["role_arn"],
                "sourceIdentity": f"CN={common_name}",
            }],
            "subjectArn": f"arn:aws:rolesanywhere:{self.region}:{self.account}:subject/"
                          + hashlib.sha256(leaf.subject.public_bytes()).hexdigest()[:32],
        }


# ---------------------------------------------------------------------------------------------------------
# HTTP


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ra-emulator"
    sys_version = ""
    timeout = 30  # idle keep-alive connections are dropped after this many seconds
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid the delayed-ACK stall

    @property
    def emulator(self):
        return self.server.emulator

    def date_time_string(self, timestamp=None):
        # The Date header follows the emulator's clock (offset included), as a skewed service's would.
        if timestamp is None:
            timestamp = self.emulator.now().replace(tzinfo=datetime.timezone.utc).timestamp()
        return super().date_time_string(timestamp)

    def setup(self):
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            # The handshake runs here, in the connection's own thread, so a slow client cannot stall accept().
            self.connection.do_handshake()

    def log_message(self, fmt, *args):
        pass  # one line per request is written by respond(); parse errors are reported by send_error below

    def send_error(self, code, message=None, explain=None):
        self.close_connection = True
        self.respond(code, {"message": message or "bad request"}, error_type="ValidationException",
                     note="malformed HTTP request")

    quota_call = None

    def respond(self, status, document=None, *, raw=None, error_type=None, headers=None, note=""):
        body = raw if raw is not None else json.dumps(document).encode()
        self.record_call_status(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Amzn-RequestId", secrets.token_hex(16))
        if error_type:
            self.send_header("X-Amzn-ErrorType", error_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        target = (getattr(self, "path", None) or "-").split("?")[0]
        self.emulator.log(f"{self.client_address[0]} {self.command or '-'} {target} {status} {note}")

    def read_body(self):
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise Rejection(411, "ValidationException", "Transfer-Encoding is not supported; send Content-Length")
        length_text = self.headers.get("Content-Length", "0")
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            raise invalid(f"Content-Length {length_text!r} is not a number")
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise Rejection(413, "ValidationException", f"body of {length} bytes (maximum {MAX_BODY_BYTES})")
        return self.rfile.read(length) if length else b""

    def dispatch(self):
        if not is_loopback(self.client_address[0]):
            self.close_connection = True
            return self.respond(403, {"message": "the emulator answers loopback peers only"},
                                error_type="AccessDeniedException", note="non-loopback peer refused")
        try:
            body = self.read_body()
        except Rejection as r:
            return self.respond(r.status, {"message": r.message}, error_type=r.error_type, note=r.message)
        path, _, raw_query = self.path.partition("?")
        if path == "/sessions":
            if self.command != "POST":
                return self.respond(405, {"message": "CreateSession is POST /sessions"},
                                    error_type="ValidationException", headers={"Allow": "POST"}, note="")
            return self.create_session(path, raw_query, body)
        if path.startswith("/_emulator/"):
            return self.control(path, body)
        return self.respond(404, {"message": f"no operation at {path}"}, error_type="UnknownOperationException",
                            note="unknown path")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = dispatch

    def control(self, path, body):
        emulator = self.emulator
        if path == "/_emulator/faults" and self.command == "POST":
            try:
                doc = json.loads(body.decode("utf-8") or "null")
                queued = emulator.queue_faults(doc if isinstance(doc, list) else [doc])
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                return self.respond(400, {"message": f"faults: body is not JSON ({e})"},
                                    error_type="ValidationException", note="bad fault")
            except Rejection as r:
                return self.respond(r.status, {"message": r.message}, error_type=r.error_type, note="bad fault")
            return self.respond(200, {"queued": queued, "pending": emulator.pending_faults()},
                                note=f"queued {queued} fault(s)")
        if path == "/_emulator/stats" and self.command == "GET":
            with emulator.lock:
                snapshot = json.loads(json.dumps(emulator.stats))
                snapshot["pending_faults"] = [dict(f) for f in emulator.faults]
                snapshot["quota"] = emulator.quota_snapshot()
            return self.respond(200, snapshot, note="stats")
        if path == "/_emulator/reset" and self.command == "POST":
            emulator.reset()
            return self.respond(200, {"reset": True}, note="reset")
        if path == "/_emulator/config" and self.command == "GET":
            config = dict(emulator.arns)
            if emulator.tls_fault_port is not None:
                config["tls_fault_port"] = emulator.tls_fault_port
            return self.respond(200, config, note="config")
        if path == "/_emulator/quota" and self.command == "GET":
            with emulator.lock:
                snapshot = emulator.quota_snapshot()
            return self.respond(200, snapshot, note="quota")
        if path == "/_emulator/quota" and self.command == "POST":
            doc = json_object(body)
            unknown = set(doc) - {"rate", "burst", "retry_after"}
            problem = check_quota_settings(doc.get("rate"), doc.get("burst"), doc.get("retry_after"))
            message = ("want a JSON object with a rate" if not doc else f"unknown keys {sorted(unknown)}" if unknown
                       else f"{problem[0]}: {problem[1]}" if problem else None)
            if message:
                return self.respond(400, {"message": f"quota: {message}"}, error_type="ValidationException",
                                    note="bad quota")
            emulator.set_quota(doc.get("rate"), doc.get("burst"), doc.get("retry_after"))
            with emulator.lock:
                settings = emulator.quota.settings()
            return self.respond(200, settings, note=f"quota {settings}")
        if path == "/_emulator/clock" and self.command == "POST":
            offset = json_object(body).get("offset_seconds")
            if not isinstance(offset, (int, float)) or isinstance(offset, bool) or abs(offset) > 7 * 86400:
                return self.respond(400, {"message": "clock: want {\"offset_seconds\": N} with |N| <= 604800"},
                                    error_type="ValidationException", note="bad clock")
            with emulator.lock:
                emulator.clock_offset = offset
            return self.respond(200, {"offset_seconds": offset}, note=f"clock offset {offset:+} s")
        if path == "/_emulator/tls" and self.command == "POST":
            variant = json_object(body).get("variant")
            if emulator.tls_fault_port is None:
                return self.respond(409, {"message": "tls: the emulator runs without --tls-fault-listener"},
                                    error_type="ValidationException", note="bad tls")
            if variant not in TLS_VARIANTS:
                return self.respond(400, {"message": f"tls: variant must be one of {', '.join(TLS_VARIANTS)}"},
                                    error_type="ValidationException", note="bad tls")
            with emulator.lock:
                emulator.tls_variant = variant
            return self.respond(200, {"variant": variant}, note=f"tls variant {variant}")
        return self.respond(404, {"message": f"no control endpoint {self.command} {path}"},
                            error_type="UnknownOperationException", note="unknown control path")

    def create_session(self, path, raw_query, body):
        self.quota_call = None  # this request's entry in stats["quota"]["calls"], once it reaches the quota
        try:
            self.answer_create_session(path, raw_query, body)
        finally:
            if self.quota_call is not None:
                with self.emulator.lock:
                    self.quota_call["answered"] = time.time()
            self.quota_call = None

    def answer_create_session(self, path, raw_query, body):
        emulator = self.emulator
        now = emulator.now()
        record = {"time": rfc3339(now), "peer": self.client_address[0], "method": self.command,
                  "path": self.path, "headers": {k: v for k, v in self.headers.items()},
                  "body": body.decode("utf-8", "replace")}
        with emulator.lock:
            emulator.stats["requests"] += 1
            emulator.stats["last_request"] = record
            emulator.stats["recorded"].append(record)
            del emulator.stats["recorded"][:-MAX_RECORDED_REQUESTS]

        fault = emulator.take_fault(PRE_FAULTS)
        if fault is not None and fault["kind"] == "delay_ms":
            time.sleep(fault["value"] / 1000.0)
            fault = emulator.take_fault(("status", "close", "blackhole"))
        if fault is not None and fault["kind"] == "blackhole":
            record["outcome"] = "fault:blackhole"
            self.count("faulted")
            emulator.log(f"{self.client_address[0]} POST /sessions - fault: blackhole (holding the connection)")
            held = self.hold_until_peer_closes(BLACKHOLE_SECONDS)
            record["held_seconds"] = round(held, 3)
            self.close_connection = True
            emulator.log(f"{self.client_address[0]} POST /sessions - blackhole released after {held:.1f} s")
            return
        if fault is not None and fault["kind"] == "close":
            record["outcome"] = "fault:close"
            self.count("faulted")
            self.close_connection = True
            emulator.log(f"{self.client_address[0]} POST /sessions - fault: connection closed without an answer")
            return
        if fault is not None and fault["kind"] == "status":
            status = fault["value"]
            error_type = ERROR_TYPES.get(status, "InternalServerException" if status >= 500 else "ValidationException")
            message = fault["message"] or f"injected fault: HTTP {status}"
            extra = {}
            if fault["retry_after"] is not None:
                extra["Retry-After"] = str(fault["retry_after"])
            document = {"message": message}
            if fault["error_type"] is not None:
                error_type = fault["error_type"]
                document["__type"] = error_type
            record.update(outcome=f"fault:status {status}", status=status)
            self.count("faulted")
            return self.respond(status, document, error_type=error_type, headers=extra,
                                note=f"fault: {message}")

        session = json_object(body).get("roleSessionName")
        self.quota_call = emulator.quota_call(session if isinstance(session, str) else None)
        if self.quota_call["throttled"]:
            retry_after = emulator.quota.retry_after
            record.update(outcome="throttled", status=429)
            return self.respond(429, {"__type": "ThrottlingException", "message": "Rate exceeded"},
                                error_type="ThrottlingException",
                                headers={} if retry_after is None else {"Retry-After": str(retry_after)},
                                note="throttled: over the CreateSession quota")

        try:
            pairs = split_query(raw_query)
            query = emulator.check_query(pairs)
            duration, session_name = emulator.check_body(body, self.headers)
            facts = emulator.check_signature(self.command, path, pairs, self.headers, body, now)
        except Rejection as r:
            record.update(outcome="rejected", status=r.status, reason=r.message, error_type=r.error_type)
            with emulator.lock:
                emulator.stats["rejected"] += 1
                emulator.stats["rejections"].append({"status": r.status, "type": r.error_type, "reason": r.message})
            return self.respond(r.status, {"message": r.message}, error_type=r.error_type,
                                note=f"rejected: {r.message}")

        record.update(serial=facts["serial"], algorithm=facts["algorithm"], chain_length=facts["chain_length"],
                      signed_headers=facts["signed_headers"], duration_seconds=duration,
                      role_session_name=session_name, query=query)
        post = emulator.take_fault(POST_FAULTS)
        kind = post["kind"] if post else None
        if kind == "malformed_json":
            record.update(outcome="fault:malformed_json", status=201)
            self.count("faulted")
            return self.respond(201, raw=b'{"credentialSet":[{"credentials":{"accessKeyId":',
                                note="fault: malformed JSON answer")
        if kind == "empty_credential_set":
            record.update(outcome="fault:empty_credential_set", status=201)
            self.count("faulted")
            return self.respond(201, {"credentialSet": [], "subjectArn": ""}, note="fault: empty credentialSet")

        answer = emulator.issue(facts["leaf"], duration, session_name, kind, now, post["value"] if post else None)
        credentials = answer["credentialSet"][0]["credentials"]
        if kind in ("truncated", "oversized"):
            # The credentials are recorded (a test can look for them in what the agent serves) but the answer
            # is not one the client may use: half of it, or 10 MB of it.
            record.update(outcome=f"fault:{kind}", status=201, credentials=credentials)
            self.count("faulted")
            if kind == "oversized":
                answer["padding"] = ""
                base = len(json.dumps(answer).encode())
                answer["padding"] = "x" * max(0, OVERSIZED_BYTES - base)
                return self.respond(201, answer, note=f"fault: oversized answer ({OVERSIZED_BYTES} bytes)")
            return self.send_truncated(json.dumps(answer).encode())
        record.update(outcome="accepted", status=201, credentials=credentials, fault=kind)
        self.count("accepted")
        return self.respond(201, answer, note=f"issued {credentials['accessKeyId']} serial={facts['serial']} "
                                              f"alg={facts['algorithm']} chain={facts['chain_length']}"
                                              + (f" fault={kind}" if kind else ""))

    def hold_until_peer_closes(self, limit):
        """Read and drop whatever the peer sends until it closes the connection or `limit` seconds pass."""
        started = time.monotonic()
        self.connection.settimeout(0.5)
        while time.monotonic() - started < limit:
            try:
                if not self.connection.recv(4096):
                    break
            except socket.timeout:
                continue
            except (OSError, ssl.SSLError):
                break
        return time.monotonic() - started

    def record_call_status(self, status):
        if self.quota_call is not None:
            with self.emulator.lock:
                self.quota_call.setdefault("status", status)

    def send_truncated(self, body):
        self.record_call_status(201)
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Amzn-RequestId", secrets.token_hex(16))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.emulator.log(f"{self.client_address[0]} POST /sessions 201 fault: truncated answer "
                          f"({len(body) // 2} of {len(body)} bytes)")

    def count(self, field):
        with self.emulator.lock:
            self.emulator.stats[field] += 1


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address, emulator, tls_context, tls_variants=None):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        self.tls_context = tls_context
        # tls_variants (the fault listener only): variant name -> SSLContext, chosen per connection.
        self.tls_variants = tls_variants
        super().__init__(address, Handler)

    def get_request(self):
        sock, peer = super().get_request()
        context = self.tls_context
        if self.tls_variants is not None:
            with self.emulator.lock:
                variant = self.emulator.tls_variant
                self.emulator.stats["tls_connections"] += 1
            if variant == "reset":
                reset_after_client_hello(sock)
                self.emulator.log(f"{peer[0]} tls fault: connection reset after the ClientHello")
                raise OSError("tls fault: connection reset")
            context = self.tls_variants[variant]
        if context is not None:
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, peer

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        self.emulator.log(f"{client_address[0]} connection error: {type(error).__name__}: {error}")


def reset_after_client_hello(sock):
    """Wait (briefly) for the client's first bytes, then close with SO_LINGER 0: the client sees a reset."""
    try:
        sock.settimeout(2)
        sock.recv(1)
    except OSError:
        pass
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------------------------
# Throwaway TLS material

SERVER_NAMES = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")))


def make_ca(common_name, now):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=3))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_server_cert(ca_cert, ca_key, names, not_before, not_after):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def write_pem(path, cert=None, key=None):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        if cert is not None:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))


def server_context(directory, name, cert, key, tls1_0_only=False):
    write_pem(os.path.join(directory, f"{name}.pem"), cert)
    write_pem(os.path.join(directory, f"{name}.key"), key=key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if tls1_0_only:
        # Debian's OpenSSL refuses TLS 1.0 at the default security level 2; level 0 lets this side offer it.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # deprecated is the point of this variant
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key"))
    return context


def make_tls_material(directory, variants=False):
    """Create DIR/ca.pem (a throwaway CA) and a server certificate for 127.0.0.1, ::1 and localhost; returns
    the server's SSLContext. With variants=True, also returns the fault listener's contexts by variant name."""
    os.makedirs(directory, exist_ok=True)
    now = utcnow()
    ca_cert, ca_key = make_ca("ra-emulator throwaway CA", now)
    write_pem(os.path.join(directory, "ca.pem"), ca_cert)
    os.chmod(os.path.join(directory, "ca.pem"), 0o644)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2))
    context = server_context(directory, "server", *make_server_cert(ca_cert, ca_key, SERVER_NAMES, *valid))
    if not variants:
        return context, None
    other_ca, other_key = make_ca("ra-emulator untrusted CA", now)
    contexts = {
        "good": context,
        "untrusted_ca": server_context(directory, "untrusted-ca",
                                       *make_server_cert(other_ca, other_key, SERVER_NAMES, *valid)),
        "wrong_host": server_context(directory, "wrong-host", *make_server_cert(
            ca_cert, ca_key, [x509.DNSName("wrong-host.invalid")], *valid)),
        "expired": server_context(directory, "expired", *make_server_cert(
            ca_cert, ca_key, SERVER_NAMES, now - datetime.timedelta(days=2), now - datetime.timedelta(days=1))),
        "tls1_0": server_context(directory, "tls1_0", *make_server_cert(ca_cert, ca_key, SERVER_NAMES, *valid),
                                 tls1_0_only=True),
    }
    return context, contexts


# ---------------------------------------------------------------------------------------------------------


def resolve_listen(value):
    if value == "localhost":
        return "127.0.0.1"
    if not is_loopback(value):
        raise SystemExit(f"ra_emulator: --listen {value}: only loopback addresses are allowed "
                         "(127.0.0.0/8, ::1, localhost)")
    return value


def main(argv=None):
    ap = argparse.ArgumentParser(description="IAM Roles Anywhere CreateSession emulator (test tool)")
    ap.add_argument("--listen", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--tls-dir", help="serve HTTPS with a throwaway CA written to DIR/ca.pem")
    ap.add_argument("--tls-fault-listener", action="store_true",
                    help="with --tls-dir: a second HTTPS port whose certificate and protocol /_emulator/tls "
                         "switches (its port is in /_emulator/config as tls_fault_port)")
    ap.add_argument("--trust-anchor-ca", action="append", default=[],
                    help="PEM bundle of CA certificates the trust anchor accepts (repeatable)")
    ap.add_argument("--log-file", help="append one line per request here (default: stderr)")
    ap.add_argument("--region", default=DEFAULT_REGION, help=f"emulated region (default {DEFAULT_REGION})")
    ap.add_argument("--account", default=DEFAULT_ACCOUNT, help=f"emulated account (default {DEFAULT_ACCOUNT})")
    ap.add_argument("--print-arns", action="store_true", help="print the emulated ARNs as JSON and exit")
    ap.add_argument("--quota-rate", type=float, metavar="R",
                    help="CreateSession quota: R calls per second (token bucket; default: no quota)")
    ap.add_argument("--quota-burst", type=float, metavar="B",
                    help="with --quota-rate: the bucket holds B calls (default: R, at least 1)")
    ap.add_argument("--quota-retry-after", type=int, metavar="S",
                    help="with --quota-rate: throttled answers carry Retry-After: S")
    args = ap.parse_args(argv)

    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+", args.region):
        ap.error(f"--region {args.region!r} is not a region name like us-east-1")
    if not re.fullmatch(r"\d{12}", args.account):
        ap.error(f"--account {args.account!r} is not 12 digits")
    if args.print_arns:
        print(json.dumps(arns(args.region, args.account)))
        return 0
    problem = check_quota_settings(args.quota_rate, args.quota_burst, args.quota_retry_after)
    if problem:
        flags = {"rate": "--quota-rate", "burst": "--quota-burst", "retry_after": "--quota-retry-after"}
        ap.error(f"{flags[problem[0]]}: {problem[1]}")

    address = resolve_listen(args.listen)
    anchors = []
    for path in args.trust_anchor_ca:
        try:
            anchors.extend(load_pem_bundle(path))
        except (OSError, ValueError) as e:
            ap.error(f"--trust-anchor-ca {path}: {e}")
    log = open(args.log_file, "a", buffering=1) if args.log_file else sys.stderr
    emulator = Emulator(args.region, args.account, anchors, log,
                        Quota(args.quota_rate, args.quota_burst, args.quota_retry_after))
    if args.tls_fault_listener and not args.tls_dir:
        ap.error("--tls-fault-listener needs --tls-dir")
    tls, variants = make_tls_material(args.tls_dir, args.tls_fault_listener) if args.tls_dir else (None, None)
    server = Server((address, args.port), emulator, tls)
    port = server.server_address[1]
    fault_server = None
    if variants is not None:
        fault_server = Server((address, 0), emulator, None, variants)
        emulator.tls_fault_port = fault_server.server_address[1]
        threading.Thread(target=fault_server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    if args.port_file:
        # Written atomically, so a reader polling for a non-empty file never sees half a number.
        temporary = f"{args.port_file}.tmp{os.getpid()}"
        with open(temporary, "w") as f:
            f.write(f"{port}\n")
        os.replace(temporary, args.port_file)
    emulator.log(f"listening on {'https' if tls else 'http'}://{address}:{port} region={args.region} "
                 f"trust anchors={len(anchors)} quota={emulator.quota.settings()}")

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
        if fault_server is not None:
            threading.Thread(target=fault_server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    emulator.log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
