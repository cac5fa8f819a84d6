"""credential-process against the emulator: every supported identity source, and the output contract."""

import datetime
import json
import pathlib
import re
import subprocess

import pytest

from radtest.environment import AGENT, EXPIRATION_FORMAT, clean_environment

KEY_ORDER = ["Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"]


def check_output(result, em, *, duration=3600):
    """The stdout contract, field by field, against what the emulator issued for the one accepted request."""
    stdout = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert "\n" not in stdout, "credential-process output must be one line without a trailing newline"
    document = json.loads(stdout)
    assert list(document) == KEY_ORDER
    assert document["Version"] == 1 and type(document["Version"]) is int
    issued = em.issued()
    assert len(issued) == 1, "exactly one CreateSession should have been accepted"
    creds = issued[0]
    assert document["AccessKeyId"].startswith("ASIA")
    assert document["AccessKeyId"] == creds["accessKeyId"]
    assert document["SecretAccessKey"] == creds["secretAccessKey"]
    assert document["SessionToken"] == creds["sessionToken"]
    assert document["Expiration"] == creds["expiration"]
    assert re.match(EXPIRATION_FORMAT, document["Expiration"])
    expiration = datetime.datetime.strptime(document["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
    left = (expiration - datetime.datetime.utcnow()).total_seconds()
    assert duration - 60 < left <= duration + 1
    return em.stats()["last_request"]


@pytest.mark.parametrize("name,algorithm", [("rsa2048", "AWS4-X509-RSA-SHA256"),
                                            ("p256", "AWS4-X509-ECDSA-SHA256"),
                                            ("p384", "AWS4-X509-ECDSA-SHA256"),
                                            ("p521", "AWS4-X509-ECDSA-SHA256")])
def test_key_types(agent, em, pki, name, algorithm):
    record = check_output(agent.credential_process(f"{name}.pem", f"{name}.key"), em)
    serials = json.loads((pki / "serials.json").read_text())
    assert record["algorithm"] == algorithm
    assert record["serial"] == serials[name]
    assert record["chain_length"] == 0 and "X-Amz-X509-Chain" not in record["headers"]
    assert record["duration_seconds"] == 3600 and record["role_session_name"] is None
    assert record["headers"]["Content-Type"] == "application/json"


def test_intermediates_reach_the_emulator(agent, em):
    result = agent.credential_process("p256-via-intermediate.pem", "p256-via-intermediate.key",
                                      "--intermediates", agent.path("intermediates.pem"))
    record = check_output(result, em)
    assert record["chain_length"] == 2  # intermediates.pem holds the intermediate and the root, in file order
    assert "x-amz-x509-chain" in record["signed_headers"]


def test_leaf_under_intermediate_without_chain_is_refused(agent, em):
    result = agent.credential_process("p256-via-intermediate.pem", "p256-via-intermediate.key")
    assert result.returncode == 77, result.stderr.decode()
    assert "Untrusted Signing Certificate" in result.stderr.decode()


@pytest.mark.parametrize("key", ["rsa2048-pkcs1.key", "rsa2048.key"])
def test_rsa_key_encodings(agent, em, key):
    check_output(agent.credential_process("rsa2048.pem", key), em)


def test_sec1_key_and_der_certificate(agent, em):
    check_output(agent.credential_process("p256.der", "p256-sec1.key"), em)


@pytest.mark.parametrize("key", ["p256-enc-aes256-sha256.key", "p256-enc-aes128-sha1.key",
                                 "p256-enc-aes192-sha384.key", "p256-enc-aes256-sha512.key",
                                 "p256-enc-scrypt.key"])
def test_encrypted_pkcs8_with_password_file(agent, em, key):
    check_output(agent.credential_process("p256.pem", key, "--pkcs8-password-file",
                                          agent.path("passphrase.txt")), em)


def test_encrypted_pkcs8_with_password_environment_variable(agent, em):
    result = agent.credential_process("rsa2048.pem", "rsa2048-enc-aes256-sha256.key",
                                      "--pkcs8-password-env", "RAD_IT_PASSPHRASE",
                                      env={"RAD_IT_PASSPHRASE": "test-passphrase"})
    check_output(result, em)


def test_encrypted_pkcs8_with_password_flag(agent, em):
    check_output(agent.credential_process("p256.pem", "p256-enc-aes256-sha256.key",
                                          "--pkcs8-password", "test-passphrase"), em)


@pytest.mark.parametrize("bundle,algorithm", [("p256-modern.p12", "AWS4-X509-ECDSA-SHA256"),
                                              ("rsa2048-legacy.p12", "AWS4-X509-RSA-SHA256")])
def test_pkcs12_with_password(agent, em, bundle, algorithm):
    result = agent.credential_process(bundle, None, "--pkcs8-password-file", agent.path("passphrase.txt"))
    assert check_output(result, em)["algorithm"] == algorithm


@pytest.mark.parametrize("bundle", ["p256-modern-empty.p12", "rsa2048-legacy-empty.p12"])
def test_pkcs12_with_empty_password(agent, em, bundle):
    check_output(agent.credential_process(bundle, None), em)


def test_pkcs12_with_its_chain(agent, em):
    result = agent.credential_process("via-intermediate.p12", None, "--pkcs8-password-file",
                                      agent.path("passphrase.txt"))
    record = check_output(result, em)
    assert record["chain_length"] >= 1 and "X-Amz-X509-Chain" in record["headers"]


def test_combined_pem(agent, em):
    check_output(agent.credential_process("p256-combined.pem", None), em)


def test_session_duration_reaches_the_service(agent, em):
    record = check_output(agent.credential_process("p256.pem", "p256.key", "--session-duration", "900"), em,
                          duration=900)
    assert record["duration_seconds"] == 900
    assert json.loads(record["body"]) == {"durationSeconds": 900}


def test_role_session_name_reaches_the_service(agent, em):
    record = check_output(agent.credential_process("p256.pem", "p256.key", "--role-session-name", "ci-job-17"), em)
    assert record["role_session_name"] == "ci-job-17"
    assert json.loads(record["body"]) == {"durationSeconds": 3600, "roleSessionName": "ci-job-17"}


def test_region_flag_equal_to_the_anchor_region(agent, em):
    check_output(agent.credential_process("p256.pem", "p256.key", "--region", em.arns["region"]), em)


def test_endpoint_from_environment(agent, em):
    args = ["credential-process", *agent.identity_args()]
    target = agent.target_args()
    endpoint_at = target.index("--endpoint")
    del target[endpoint_at:endpoint_at + 2]
    result = agent.run(*args, *target, env={"AWS_ENDPOINT_URL_ROLESANYWHERE": em.url})
    check_output(result, em)


def test_ca_bundle_from_environment(agent, em):
    args = ["credential-process", *agent.identity_args()]
    target = agent.target_args()
    at = target.index("--ca-bundle")
    del target[at:at + 2]
    check_output(agent.run(*args, *target, env={"AWS_CA_BUNDLE": em.ca_bundle}), em)


def test_system_trust_store_directory_and_file(agent, em, tmp_path):
    """With no --ca-bundle, the system trust store as OpenSSL names it: the certificates of its directory
    (SSL_CERT_DIR, files named by subject hash), and those of the file SSL_CERT_FILE names. The directory is
    read one certificate at a time, as the chain needs it."""
    args = ["credential-process", *agent.identity_args()]
    target = agent.target_args()
    at = target.index("--ca-bundle")
    del target[at:at + 2]
    hashed, empty = tmp_path / "hashed", tmp_path / "empty"
    hashed.mkdir()
    empty.mkdir()
    subject_hash = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", em.ca_bundle], check=True,
                                  capture_output=True, text=True).stdout.strip()
    (hashed / f"{subject_hash}.0").write_bytes(pathlib.Path(em.ca_bundle).read_bytes())

    def run(**variables):
        env = clean_environment(variables)
        for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
            if name not in variables:
                env.pop(name, None)
        env["SSL_CERT_DIR"] = env.get("SSL_CERT_DIR", str(empty))
        return subprocess.run([str(AGENT), *args, *target], capture_output=True, env=env, timeout=30)

    check_output(run(SSL_CERT_DIR=str(hashed)), em)
    em.reset()
    check_output(run(SSL_CERT_FILE=str(em.ca_bundle)), em)
    refused = run(SSL_CERT_FILE=str(tmp_path / "missing.pem"))
    assert refused.returncode != 0 and b"certificate" in refused.stderr, refused
    assert len(em.issued()) == 1


def test_every_run_is_a_new_session(agent, em):
    first = json.loads(agent.credential_process().stdout)
    second = json.loads(agent.credential_process().stdout)
    assert first["AccessKeyId"] != second["AccessKeyId"]
    assert em.stats()["accepted"] == 2


def test_no_verify_ssl_warns_and_works(agent, em):
    args = ["credential-process", *agent.identity_args()]
    target = agent.target_args()
    at = target.index("--ca-bundle")
    del target[at:at + 2]
    result = agent.run(*args, *target, "--no-verify-ssl")
    check_output(result, em)
    assert "no-verify-ssl" in result.stderr.decode()


def test_read_certificate_data(agent, pki):
    result = agent.run("read-certificate-data", "--certificate", pki / "p256.pem")
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)
    assert list(document) == ["keyType", "certificateData", "serialNumber", "supportedAlgorithms"]
    assert document["keyType"] == "EC"
    assert document["serialNumber"] == json.loads((pki / "serials.json").read_text())["p256"]
    assert not result.stdout.endswith(b"\n")


@pytest.mark.parametrize("bundle,leaf,passphrase", [("p256-modern.p12", "p256", "file"),
                                                     ("rsa2048-legacy.p12", "rsa2048", "env"),
                                                     ("p256-modern-empty.p12", "p256", None),
                                                     ("via-intermediate.p12", "p256-via-intermediate", "file")])
def test_read_certificate_data_of_a_pkcs12_bundle(agent, pki, bundle, leaf, passphrase):
    """A bundle that credential-process accepts, opened with the same passphrase flags, reads as its leaf's PEM."""
    flags = {"file": ["--pkcs8-password-file", pki / "passphrase.txt"],
             "env": ["--pkcs8-password-env", "RAD_IT_PASSPHRASE"], None: []}[passphrase]
    result = agent.run("read-certificate-data", "--certificate", pki / bundle, *flags,
                       env={"RAD_IT_PASSPHRASE": "test-passphrase"})
    assert result.returncode == 0, result.stderr.decode()
    expected = agent.run("read-certificate-data", "--certificate", pki / f"{leaf}.pem")
    assert expected.returncode == 0, expected.stderr.decode()
    assert result.stdout == expected.stdout


def test_read_certificate_data_of_a_pkcs12_bundle_with_a_wrong_passphrase(agent, pki, tmp_path):
    wrong = tmp_path / "wrong-passphrase"
    wrong.write_text("not-the-passphrase\n")
    wrong.chmod(0o600)
    result = agent.run("read-certificate-data", "--certificate", pki / "p256-modern.p12",
                       "--pkcs8-password-file", wrong)
    assert result.returncode == 65, result.stderr.decode()
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "p256-modern.p12" in lines[0], lines


def test_version(agent):
    result = agent.run("version")
    assert result.returncode == 0 and result.stdout.endswith(b"\n") and len(result.stdout.strip()) > 0


@pytest.mark.parametrize("key,digest", [("p256.key", "SHA256"), ("p384.key", "SHA384"), ("rsa2048.key", "SHA512"),
                                        ("p256-enc-aes256-sha256.key", "SHA256")])
def test_sign_string_verifies_independently(agent, pki, key, digest):
    """sign-string signs "…Signing Test" || "1" || SHA256("IAM RA" || public key); check it with cryptography."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    result = agent.run("sign-string", "--private-key", pki / key, "--digest", digest, "--format", "text",
                       "--pkcs8-password-file", pki / "passphrase.txt")
    assert result.returncode == 0, result.stderr.decode()
    signature = bytes.fromhex(result.stdout.decode())
    private = serialization.load_pem_private_key((pki / key).read_bytes(), password=b"test-passphrase"
                                                 if "enc" in key else None)
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        encoded = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    else:
        encoded = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    import hashlib
    message = b"AWS Roles Anywhere Credential Helper Signing Test" + b"1" + hashlib.sha256(b"IAM RA" + encoded).digest()
    algorithm = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}[digest]
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, message, padding.PKCS1v15(), algorithm)
    else:
        public.verify(signature, message, ec.ECDSA(algorithm))
