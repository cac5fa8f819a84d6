#!/usr/bin/python3
"""Known-answer files for the SigV4-X509 signer, computed independently of the C++ code.

Run with Debian's /usr/bin/python3 (python3-cryptography). Modes:

  make-golden.py --generate-keys   create the fixed key and certificate material in keys/ (run once; the
                                   files are checked in, so goldens stay stable)
  make-golden.py                   (re)write cases.json and, per case, <case>.creq (canonical request),
                                   <case>.sts (string to sign), <case>.auth-prefix (Authorization up to
                                   "Signature=") and, for RSA, <case>.sig (the deterministic signature, hex);
                                   then check the public vectors
  make-golden.py --check-vectors   only re-derive the public vectors A and B (vector-a/, vector-b/) and check
                                   them against the published values

The protocol is written out here from docs/protocol.md §3-§4, not from the C++ sources, so a shared mistake
would need to be made twice.
"""

import argparse
import base64
import datetime
import hashlib
import json
import pathlib
import sys
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = pathlib.Path(__file__).resolve().parent
KEYS = HERE / "keys"

NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
NOT_AFTER = datetime.datetime(2124, 1, 1, tzinfo=datetime.timezone.utc)

# Leaf serials: the RSA one is wider than 64 bits so that the decimal rendering in Credential= is exercised
# beyond machine integers.
LEAVES = {
    "rsa2048": {"serial": 0x5A17E3C0FFEE0123456789ABCDEF0042, "format": "pkcs1"},
    "p256": {"serial": 4242, "format": "sec1"},
    "p384": {"serial": 0x7F000001, "format": "pkcs8"},
}


# ----------------------------------------------------------------------------------------------------------
# Key material


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rolesanywhere-agent golden"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ca_cert(subject, issuer, public_key, signing_key, serial, path_len):
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(serial).not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=True, crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True))
    return builder.sign(signing_key, hashes.SHA256())


def leaf_cert(cn, public_key, issuer_cert, issuer_key, serial):
    builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer_cert.subject)
               .public_key(public_key).serial_number(serial).not_valid_before(NOT_BEFORE)
               .not_valid_after(NOT_AFTER)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=False, crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    return builder.sign(issuer_key, hashes.SHA256())


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key, fmt):
    formats = {"pkcs1": serialization.PrivateFormat.TraditionalOpenSSL,
               "sec1": serialization.PrivateFormat.TraditionalOpenSSL,
               "pkcs8": serialization.PrivateFormat.PKCS8}
    return key.private_bytes(serialization.Encoding.PEM, formats[fmt], serialization.NoEncryption())


def generate_keys():
    KEYS.mkdir(exist_ok=True)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = ca_cert(name("Golden Root CA"), name("Golden Root CA"), root_key.public_key(), root_key, 1, 1)
    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter = ca_cert(name("Golden Intermediate CA"), root.subject, inter_key.public_key(), root_key, 2, 0)
    (KEYS / "root-ca.pem").write_bytes(pem_cert(root))
    (KEYS / "intermediate-ca.pem").write_bytes(pem_cert(inter))
    # chain.pem is what --intermediates would name: the issuer of the leaves first, then the root.
    (KEYS / "chain.pem").write_bytes(pem_cert(inter) + pem_cert(root))
    for leaf, spec in LEAVES.items():
        if leaf == "rsa2048":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif leaf == "p256":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = ec.generate_private_key(ec.SECP384R1())
        cert = leaf_cert("golden-" + leaf, key.public_key(), inter, inter_key, spec["serial"])
        (KEYS / (leaf + ".key")).write_bytes(pem_key(key, spec["format"]))
        (KEYS / (leaf + ".pem")).write_bytes(pem_cert(cert))
    print("wrote", KEYS)


# ----------------------------------------------------------------------------------------------------------
# SigV4-X509 as docs/protocol.md §3-§4 describes it


def amz_date(instant):
    return instant.strftime("%Y%m%dT%H%M%SZ")


def query_escape(text):
    # Everything but A-Z a-z 0-9 - _ . ~ is %XX with uppercase hex (Go QueryEscape, then '+' as %20).
    return urllib.parse.quote(text, safe="-_.~")


def canonical_request(host, query, headers, body):
    """headers: dict of lowercase name -> value, already in their wire form."""
    all_headers = dict(headers)
    all_headers["host"] = host
    names = sorted(all_headers)
    lines = ["POST", "/sessions",
             "&".join(query_escape(k) + "=" + query_escape(v) for k, v in sorted(query.items()))]
    lines += [n + ":" + " ".join(all_headers[n].split()) for n in names]
    lines += ["", ";".join(names), hashlib.sha256(body).hexdigest()]
    return "\n".join(lines), ";".join(names)


def algorithm(public_key):
    return "AWS4-X509-RSA-SHA256" if isinstance(public_key, rsa.RSAPublicKey) else "AWS4-X509-ECDSA-SHA256"


def string_to_sign(alg, instant, region, creq):
    scope = instant.strftime("%Y%m%d") + "/" + region + "/rolesanywhere/aws4_request"
    return "\n".join([alg, amz_date(instant), scope, hashlib.sha256(creq.encode()).hexdigest()]), scope


def der_b64(cert):
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def load_certs(path):
    # Every CERTIFICATE block in file order (load_pem_x509_certificates needs cryptography >= 39; Debian 12
    # ships 38). Text around the blocks, such as an openssl dump, is skipped.
    text = path.read_text()
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    certs, pos = [], 0
    while (start := text.find(begin, pos)) != -1:
        stop = text.index(end, start) + len(end)
        certs.append(x509.load_pem_x509_certificate(text[start:stop].encode()))
        pos = stop
    return certs


def session_body(duration, session_name):
    body = '{"durationSeconds":' + str(duration)
    if session_name:
        body += ',"roleSessionName":' + json.dumps(session_name)
    return (body + "}").encode()


# ----------------------------------------------------------------------------------------------------------
# Golden cases

INSTANT = datetime.datetime(2025, 3, 14, 9, 26, 53, tzinfo=datetime.timezone.utc)


def arns(partition, region, account="123456789012"):
    return {
        "trust_anchor_arn": f"arn:{partition}:rolesanywhere:{region}:{account}:trust-anchor/"
                            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "profile_arn": f"arn:{partition}:rolesanywhere:{region}:{account}:profile/"
                       "11112222-3333-4444-5555-666677778888",
        "role_arn": f"arn:{partition}:iam::{account}:role/path/golden-role",
    }


# Each case varies what reaches the canonical request: partition and DNS suffix, FIPS, explicit ports,
# IPv6, --region, session duration, roleSessionName, and the chain header.
CASES = [
    dict(name="rsa2048", leaf="rsa2048", chain=False, **arns("aws", "eu-west-1"), region="", endpoint="",
         use_fips=False, duration_seconds=3600, role_session_name="",
         host="rolesanywhere.eu-west-1.amazonaws.com", signing_region="eu-west-1"),
    dict(name="rsa2048-chain", leaf="rsa2048", chain=True, **arns("aws", "us-east-2"), region="",
         endpoint="http://127.0.0.1:8080", use_fips=False, duration_seconds=900,
         role_session_name="golden-session", host="127.0.0.1:8080", signing_region="us-east-2"),
    dict(name="p256", leaf="p256", chain=False, **arns("aws-cn", "cn-north-1"), region="", endpoint="",
         use_fips=False, duration_seconds=43200, role_session_name="",
         host="rolesanywhere.cn-north-1.amazonaws.com.cn", signing_region="cn-north-1"),
    dict(name="p256-chain", leaf="p256", chain=True, **arns("aws", "ap-southeast-2"), region="",
         endpoint="https://[::1]:9443/base/", use_fips=False, duration_seconds=3600,
         role_session_name="", host="[::1]:9443", signing_region="ap-southeast-2"),
    dict(name="p384", leaf="p384", chain=False, **arns("aws-us-gov", "us-gov-west-1"), region="",
         endpoint="", use_fips=True, duration_seconds=7200, role_session_name="ci@example.com",
         host="rolesanywhere-fips.us-gov-west-1.amazonaws.com", signing_region="us-gov-west-1"),
    # --region may only repeat the trust anchor's region (docs/protocol.md §2.1).
    dict(name="p384-chain", leaf="p384", chain=True, **arns("aws", "eu-central-1"), region="eu-central-1",
         endpoint="", use_fips=False, duration_seconds=3600, role_session_name="",
         host="rolesanywhere.eu-central-1.amazonaws.com", signing_region="eu-central-1"),
]


def write_goldens():
    chain = load_certs(KEYS / "chain.pem")
    index = []
    for case in CASES:
        leaf = load_certs(KEYS / (case["leaf"] + ".pem"))[0]
        key = serialization.load_pem_private_key((KEYS / (case["leaf"] + ".key")).read_bytes(), None)
        headers = {"content-type": "application/json", "x-amz-date": amz_date(INSTANT), "x-amz-x509": der_b64(leaf)}
        if case["chain"]:
            headers["x-amz-x509-chain"] = ",".join(der_b64(c) for c in chain)
        query = {"profileArn": case["profile_arn"], "roleArn": case["role_arn"],
                 "trustAnchorArn": case["trust_anchor_arn"]}
        body = session_body(case["duration_seconds"], case["role_session_name"])
        creq, signed = canonical_request(case["host"], query, headers, body)
        alg = algorithm(leaf.public_key())
        sts, scope = string_to_sign(alg, INSTANT, case["signing_region"], creq)
        prefix = f"{alg} Credential={leaf.serial_number}/{scope}, SignedHeaders={signed}, Signature="
        (HERE / (case["name"] + ".creq")).write_text(creq)
        (HERE / (case["name"] + ".sts")).write_text(sts)
        (HERE / (case["name"] + ".auth-prefix")).write_text(prefix)
        if isinstance(key, rsa.RSAPrivateKey):
            sig = key.sign(sts.encode(), padding.PKCS1v15(), hashes.SHA256()).hex()
            (HERE / (case["name"] + ".sig")).write_text(sig)
        entry = dict(case)
        entry.update(key_file="keys/" + case["leaf"] + ".key", cert_file="keys/" + case["leaf"] + ".pem",
                     chain_file="keys/chain.pem" if case["chain"] else "", date=INSTANT.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     body=body.decode(), serial_decimal=str(leaf.serial_number))
        index.append(entry)
    (HERE / "cases.json").write_text(json.dumps({"cases": index}, indent=2) + "\n")
    print("wrote", len(index), "cases")


# ----------------------------------------------------------------------------------------------------------
# Public vectors (docs/protocol.md §8; vector-a/README.md, vector-b/README.md)

VECTOR_QUERY = {
    "profileArn": "arn:aws:rolesanywhere:us-east-2:291738886548:profile/6f4943fb-13d4-4242-89c4-be367595c380",
    "roleArn": "arn:aws:iam::291738886548:role/rolesanywhere1",
}


def check_vector(directory, cert_file, trust_anchor, instant, expected_hash):
    leaf = load_certs(HERE / directory / cert_file)[0]
    query = dict(VECTOR_QUERY, trustAnchorArn=trust_anchor)
    headers = {"content-type": "application/json", "x-amz-date": amz_date(instant), "x-amz-x509": der_b64(leaf)}
    creq, signed = canonical_request("127.0.0.1:8080", query, headers, b'{"durationSeconds":3600}')
    got_hash = hashlib.sha256(creq.encode()).hexdigest()
    if got_hash != expected_hash:
        sys.exit(f"{directory}: canonical request hash {got_hash}, expected {expected_hash}")
    alg = algorithm(leaf.public_key())
    sts, scope = string_to_sign(alg, instant, "us-east-2", creq)
    published = (HERE / directory / "authorization.txt").read_text()
    prefix = f"{alg} Credential={leaf.serial_number}/{scope}, SignedHeaders={signed}, Signature="
    if not published.startswith(prefix):
        sys.exit(f"{directory}: published Authorization does not start with {prefix!r}")
    signature = bytes.fromhex(published[len(prefix):])
    if isinstance(leaf.public_key(), rsa.RSAPublicKey):
        key = serialization.load_pem_private_key((HERE / directory / "alice-cert.key").read_bytes(), None)
        if key.sign(sts.encode(), padding.PKCS1v15(), hashes.SHA256()) != signature:
            sys.exit(f"{directory}: the RSA signature was not reproduced")
        leaf.public_key().verify(signature, sts.encode(), padding.PKCS1v15(), hashes.SHA256())
    else:
        leaf.public_key().verify(signature, sts.encode(), ec.ECDSA(hashes.SHA256()))
    print(directory, "ok")


def check_vectors():
    check_vector("vector-a", "alice-cert.crt",
                 "arn:aws:rolesanywhere:us-east-2:291738886548:trust-anchor/a545a1fc-5d86-4032-8f4c-61cdd6ff92da",
                 datetime.datetime(2024, 7, 6, 11, 38, 59, tzinfo=datetime.timezone.utc),
                 "0341377207232aa5da02d53ac67e71211fab7a4dd4cfc5f63c6121b17f540268")
    check_vector("vector-b", "alice-cert-ecc.crt",
                 "arn:aws:rolesanywhere:us-east-2:291738886548:trust-anchor/1cb4e36e-e4ad-4bbb-9b37-fdafb2cbe4fe",
                 datetime.datetime(2024, 7, 6, 14, 30, 4, tzinfo=datetime.timezone.utc),
                 "c1adf18de77fe52de7033c03fd27177013d13109afbf37c48cadd1973350d4d7")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--generate-keys", action="store_true")
    mode.add_argument("--check-vectors", action="store_true")
    args = parser.parse_args()
    if args.generate_keys:
        generate_keys()
        return
    if not args.check_vectors:
        write_goldens()
    check_vectors()


if __name__ == "__main__":
    main()
