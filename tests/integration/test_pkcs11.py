"""Keys and certificates on a PKCS#11 token (SoftHSM2): credential-process and the agent sign on the token, and
the emulator verifies the signatures on its own. Also the failures a token brings: a wrong PIN (one C_Login, no
retry loop, exit 77), a key that wants a login per signature (CKA_ALWAYS_AUTHENTICATE), a missing object, two objects matching one URI, read-certificate-data's listing, and a
token deleted and re-created while the agent runs (the next refresh re-opens the module and succeeds).

Each test builds its own token in a temporary directory (SOFTHSM2_CONF) with softhsm2-util and OpenSC's
pkcs11-tool, importing keys and certificates from the test PKI. C_Login calls are counted through OpenSC's
pkcs11-spy module, which logs every call it forwards to SoftHSM.
"""

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from radtest.agent import AgentProcess
from radtest.clients import imds_credentials

SOFTHSM = Path("/usr/lib/softhsm/libsofthsm2.so")
SPY = Path("/usr/lib/x86_64-linux-gnu/pkcs11-spy.so")
PIN = "24681357"
SO_PIN = "97531864"
LABEL = "rad-test"
TIMEOUT = 20

pytestmark = pytest.mark.skipif(not SOFTHSM.exists(), reason="softhsm2 is not installed")


class Token:
    """A SoftHSM2 token directory with its own configuration file."""

    def __init__(self, directory, pki):
        self.dir = Path(directory)
        self.pki = Path(pki)
        (self.dir / "tokens").mkdir(parents=True)
        self.conf = self.dir / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {self.dir / 'tokens'}\nobjectstore.backend = file\n"
                             "log.level = ERROR\nslots.removable = false\n")
        self.pin_file = self.dir / "pin"
        self.pin_file.write_text(PIN + "\n")
        os.chmod(self.pin_file, 0o600)
        self.spy_log = self.dir / "spy.log"
        self.env = {"SOFTHSM2_CONF": str(self.conf), "PKCS11SPY": str(SOFTHSM), "PKCS11SPY_OUTPUT": str(self.spy_log)}

    def tool(self, *args):
        result = subprocess.run([*map(str, args)], capture_output=True, timeout=60,
                                env=dict(os.environ, SOFTHSM2_CONF=str(self.conf)))
        assert result.returncode == 0, (args, result.stdout.decode(), result.stderr.decode())
        return result.stdout.decode()

    def init(self, pin=PIN):
        self.tool("softhsm2-util", "--init-token", "--free", "--label", LABEL, "--pin", pin, "--so-pin", SO_PIN)
        return self

    def delete(self):
        self.tool("softhsm2-util", "--delete-token", "--token", LABEL)

    def write(self, kind, der, object_id, label, pin=PIN, always_authenticate=False):
        path = self.dir / f"{label}-{object_id}.{kind}.der"
        path.write_bytes(der)
        self.tool("pkcs11-tool", "--module", SOFTHSM, "--token-label", LABEL, "--login", "--pin", pin,
                  "--write-object", path, "--type", kind, "--id", object_id, "--label", label,
                  *(["--always-auth"] if always_authenticate else []))

    def import_identity(self, name, object_id, label=None, pin=PIN, key=True, certificate=True,
                        always_authenticate=False):
        """Put the test PKI's `name`.key and `name`.pem on the token under one id and label."""
        label = label or name
        if key:
            private = serialization.load_pem_private_key((self.pki / f"{name}.key").read_bytes(), None)
            der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            self.write("privkey", der, object_id, label, pin, always_authenticate)
        if certificate:
            cert = x509.load_pem_x509_certificate((self.pki / f"{name}.pem").read_bytes())
            self.write("cert", cert.public_bytes(serialization.Encoding.DER), object_id, label, pin)

    def uri(self, **attributes):
        parts = {"token": LABEL, **attributes}
        return "pkcs11:" + ";".join(f"{k}={v}" for k, v in parts.items() if k != "query") + (
            "?" + attributes["query"] if "query" in attributes else "")

    def pin_query(self):
        return f"pin-source=file:{self.pin_file}"

    def logins(self):
        """C_Login calls the spy module saw (with their return values)."""
        if not self.spy_log.exists():
            return []
        return re.findall(r"C_Login\b", self.spy_log.read_text(errors="replace"))


@pytest.fixture
def token(tmp_path, pki):
    t = Token(tmp_path / "softhsm", pki).init()
    t.import_identity("p256", "01")
    t.import_identity("rsa2048", "02")
    return t


def credential_process(agent, token, certificate, *extra, module=SOFTHSM):
    return agent.run("credential-process", "--certificate", certificate, "--pkcs11-lib", module,
                     *agent.target_args(), *extra, env=token.env)


def serials(pki):
    return json.loads((Path(pki) / "serials.json").read_text())


@pytest.mark.parametrize("name,algorithm", [("p256", "AWS4-X509-ECDSA-SHA256"), ("rsa2048", "AWS4-X509-RSA-SHA256")])
def test_credential_process_signs_on_the_token(agent, em, token, pki, name, algorithm):
    # The certificate URI also names the key: same token, same id, type private.
    result = credential_process(agent, token, token.uri(object=name, query=token.pin_query()))
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)
    recorded = em.stats()["recorded"]
    assert len(recorded) == 1 and recorded[0]["outcome"] == "accepted", recorded
    assert recorded[0]["algorithm"] == algorithm
    assert recorded[0]["serial"] == serials(pki)[name]
    assert document["AccessKeyId"] == recorded[0]["credentials"]["accessKeyId"]


def test_certificate_file_with_a_token_key_found_by_id(agent, em, token, pki):
    result = agent.run("credential-process", "--certificate", pki / "p256.pem", "--private-key",
                       token.uri(id="%01", query=token.pin_query()), "--pkcs11-lib", SOFTHSM,
                       *agent.target_args(), env=token.env)
    assert result.returncode == 0, result.stderr.decode()
    assert em.stats()["recorded"][0]["outcome"] == "accepted"


def test_rsa_sign_string_on_the_token_equals_the_file_key(agent, token, pki):
    # RSASSA-PKCS1-v1_5 is deterministic: the token and the key file must give the same bytes.
    on_token = agent.run("sign-string", "--private-key", token.uri(object="rsa2048", query=token.pin_query()),
                         "--pkcs11-lib", SOFTHSM, "--format", "text", env=token.env)
    from_file = agent.run("sign-string", "--private-key", pki / "rsa2048.key", "--format", "text")
    assert on_token.returncode == 0, on_token.stderr.decode()
    assert on_token.stdout == from_file.stdout and len(on_token.stdout) == 512


def test_wrong_pin_is_tried_once_and_exits_77(agent, em, token, tmp_path):
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("11111111\n")
    os.chmod(wrong, 0o600)
    result = credential_process(agent, token, token.uri(object="p256", query=f"pin-source=file:{wrong}"),
                                module=SPY)
    assert result.returncode == 77, result.stderr.decode()
    stderr = result.stderr.decode()
    assert "CKR_PIN_INCORRECT" in stderr and "11111111" not in stderr
    assert len(token.logins()) == 1, token.spy_log.read_text()
    assert em.stats()["recorded"] == []


def test_always_authenticate_key_needs_reuse_pin(agent, em, token, pki):
    """CKA_ALWAYS_AUTHENTICATE: SoftHSM refuses C_Sign without a context-specific login. Without --reuse-pin
    the key is refused before any request; with it, every signature logs in as CKU_CONTEXT_SPECIFIC with the
    user PIN and the emulator accepts the signature."""
    token.import_identity("p384", "05", label="always", always_authenticate=True)
    uri = token.uri(object="always", query=token.pin_query())
    refused = credential_process(agent, token, uri)
    assert refused.returncode == 78, refused.stderr.decode()
    assert "CKA_ALWAYS_AUTHENTICATE" in refused.stderr.decode() and "--reuse-pin" in refused.stderr.decode()
    assert em.stats()["recorded"] == []

    signed = credential_process(agent, token, uri, "--reuse-pin", module=SPY)
    assert signed.returncode == 0, signed.stderr.decode()
    recorded = em.stats()["recorded"]
    assert len(recorded) == 1 and recorded[0]["outcome"] == "accepted", recorded
    assert recorded[0]["serial"] == serials(pki)["p384"]
    # pkcs11-spy logs the user type of each C_Login: CKU_USER for the session, CKU_CONTEXT_SPECIFIC per signature.
    log = token.spy_log.read_text(errors="replace")
    assert "CKU_CONTEXT_SPECIFIC" in log, log[-2000:]


def test_missing_object_is_named(agent, em, token):
    result = credential_process(agent, token, token.uri(object="nothing-here", query=token.pin_query()))
    assert result.returncode == 66, result.stderr.decode()
    assert "no certificate matches" in result.stderr.decode()
    assert "object=nothing-here" in result.stderr.decode()
    assert em.stats()["recorded"] == []


def test_an_ml_dsa_certificate_on_the_token_is_refused(agent, em, token):
    """SoftHSM2 (2.6) has no ML-DSA mechanism, so the agent signs with ML-DSA keys in files only: a token
    certificate with an ML-DSA key is refused before any key is looked for (with OpenSSL before 3.5, because
    ML-DSA needs 3.5)."""
    pem = (Path(__file__).resolve().parents[1] / "data" / "mldsa" / "mldsa65.ec.pem").read_bytes()
    certificate = x509.load_pem_x509_certificate(pem)
    token.write("cert", certificate.public_bytes(serialization.Encoding.DER), "05", "mldsa65")
    result = credential_process(agent, token, token.uri(object="mldsa65", query=token.pin_query()))
    assert result.returncode == 65, result.stderr.decode()
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "object=mldsa65" in lines[0] and "is ML-DSA-65" in lines[0], lines
    assert ("not on PKCS#11 tokens" in lines[0]) != ("ML-DSA needs OpenSSL 3.5 or later" in lines[0]), lines
    assert em.stats()["recorded"] == []


def test_two_matching_certificates_are_refused(agent, em, token):
    token.import_identity("p384", "03", label="p256", key=False)  # a second certificate labelled "p256"
    result = credential_process(agent, token, token.uri(object="p256", query=token.pin_query()))
    assert result.returncode == 64, result.stderr.decode()
    assert "2 certificates match" in result.stderr.decode()
    assert em.stats()["recorded"] == []


def test_read_certificate_data_lists_the_token_certificates(agent, token, pki):
    result = agent.run("read-certificate-data", "--certificate", token.uri(), "--pkcs11-lib", SOFTHSM,
                       env=token.env)
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode()
    assert text.startswith("Matching identities\n"), text
    for name, object_id in (("p256", "%01"), ("rsa2048", "%02")):
        der = x509.load_pem_x509_certificate((pki / f"{name}.pem").read_bytes()).public_bytes(
            serialization.Encoding.DER)
        assert f"Hex Fingerprint: {hashlib.sha1(der).hexdigest()}" in text
        assert f"id={object_id};object={name};type=cert" in text
    none = agent.run("read-certificate-data", "--certificate", token.uri(object="absent"), "--pkcs11-lib", SOFTHSM,
                     env=token.env)
    assert none.returncode == 0 and none.stdout.decode() == "No matching identities\n"


def start_token_agent(tmp_path, em, pki, token, **overrides):
    agent = AgentProcess(tmp_path / "agent", em, pki)
    settings = dict(certificate=token.uri(object="p256"), private_key=None, pin_file=str(token.pin_file),
                    pkcs11_lib=str(SPY))
    settings.update(overrides)
    agent.profile("web", **settings)
    agent.start(env=token.env)
    return agent


def test_agent_recovers_after_the_token_is_recreated(em, pki, token, tmp_path):
    agent = start_token_agent(tmp_path, em, pki, token)
    try:
        agent.wait_for_log(r"event=refresh_ok\b", timeout=TIMEOUT)
        assert "on PKCS#11 token" in agent.log_lines("identity_loaded")[0], agent.log()
        # The token goes away and comes back with the same label, a new serial and new object handles.
        token.delete()
        token.init()
        token.import_identity("p256", "01")
        result = agent.credential_process("web", "--no-fallback", "--min-lifetime", "3650")
        assert result.returncode == 0, result.stderr.decode() + agent.log()[-3000:]
        recorded = em.stats()["recorded"]
        assert [r["outcome"] for r in recorded] == ["accepted", "accepted"], recorded
        status, body = imds_credentials(agent.imds_port())
        assert status == 200 and body["AccessKeyId"] == recorded[1]["credentials"]["accessKeyId"]
        spy = token.spy_log.read_text(errors="replace")
        assert spy.count("C_Finalize") == 1, "the module is re-initialised exactly once (and not at start)"
    finally:
        assert agent.stop() == 0


def test_agent_does_not_retry_a_pin_the_recreated_token_refuses(em, pki, token, tmp_path):
    agent = start_token_agent(tmp_path, em, pki, token)
    try:
        agent.wait_for_log(r"event=refresh_ok\b", timeout=TIMEOUT)
        token.delete()
        token.init(pin="13572468")  # the configured PIN is now wrong
        token.import_identity("p256", "01", pin="13572468")
        logins_before = len(token.logins())
        for _ in range(3):
            # Each asks for a refresh; the failed one keeps the last good credentials in service.
            result = agent.credential_process("web", "--no-fallback", "--min-lifetime", "3650")
            assert result.returncode == 0, result.stderr.decode()
        failed = agent.wait_for_log(r"event=refresh_failed\b.*CKR_PIN_INCORRECT", timeout=TIMEOUT)
        assert "code=device_auth_failed" in failed[0] and "serving=last-good" in failed[0], failed
        # One C_Login for the re-opened token, whatever the clients ask: no retry loop against the token.
        assert len(token.logins()) - logins_before == 1, token.spy_log.read_text()[-3000:]
        assert len(em.issued()) == 1
        assert agent.running()
    finally:
        assert agent.stop() == 0


def test_agent_with_a_wrong_pin_exits_78_at_start(em, pki, token, tmp_path):
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("11111111\n")
    os.chmod(wrong, 0o600)
    agent = AgentProcess(tmp_path / "agent", em, pki)
    agent.profile("web", certificate=token.uri(object="p256"), private_key=None, pin_file=str(wrong),
                  pkcs11_lib=str(SPY))
    agent.start(env=token.env, wait_started=False)
    assert agent.process.wait(timeout=TIMEOUT) == 78, agent.log()
    assert len(token.logins()) == 1
    assert "CKR_PIN_INCORRECT" in agent.log()
    agent.stop()
