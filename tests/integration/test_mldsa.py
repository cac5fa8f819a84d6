"""ML-DSA-44/65/87 (AWS4-X509-MLDSA) end to end, with the fixed material of tests/data/mldsa.

Where the system's OpenSSL has ML-DSA (3.5 or later: Debian 13), the real agent signs with each parameter set
and the emulator verifies every request with the openssl command line, independently of the agent:
credential-process with self-signed, EC-issued and RSA-issued certificates and a PKCS#12 bundle; `serve` on
IMDS, the container endpoint and the fast path; `sign-string` gives the bytes make-fixtures got from
`openssl pkeyutl`; read-certificate-data reports the parameter set. Before 3.5 (Debian 12) every command
refuses the same material before anything goes on the wire: one line naming the file and OpenSSL 3.5, exit 65
(78 for `serve`, whose startup failures are configuration errors).

Which of the two sets is collected follows the OpenSSL of this system (Python's ssl module and the agent link
the same libcrypto), so neither set is ever skipped.
"""

import base64
import http.client
import json
import re
import shutil
import ssl
import subprocess

import pytest

from radtest.agent import AgentProcess, started_agent
from radtest.clients import ecs_credentials, imds_credentials
from radtest.emulator import Emulator, create_sessions, last_issued
from radtest.environment import AGENT, ROOT, SUBPROCESS_TIMEOUT, clean_environment

DATA = ROOT / "tests" / "data" / "mldsa"
HAVE_MLDSA = ssl.OPENSSL_VERSION_INFO[:2] >= (3, 5)
VARIANTS = ("44", "65", "87")
SIGNATURE_BYTES = {"44": 2420, "65": 3309, "87": 4627}  # FIPS 204, Table 2
ISSUERS = ("self", "ec", "rsa")
REFUSAL = re.compile(r"^rolesanywhere-agent: (?P<file>\S+): (the private key|the certificate's key|the PKCS#12 "
                     r"bundle's key) is "
                     r"ML-DSA-(?P<variant>44|65|87), and ML-DSA needs OpenSSL 3\.5 or later "
                     r"\(this system has OpenSSL 3\.[0-4]\.\d+\S*\)$")


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """The fixtures copied to a private directory: the agent refuses key files others can read."""
    directory = tmp_path_factory.mktemp("mldsa")
    for source in DATA.iterdir():
        if source.is_file():
            shutil.copyfile(source, directory / source.name)
            (directory / source.name).chmod(0o600)
    return directory


@pytest.fixture(scope="module")
def mldsa_emulator(tmp_path_factory, material):
    """An emulator whose trust anchor holds the EC and RSA CAs and the three self-signed certificates."""
    anchors = []
    for name in ("ca-ec.pem", "ca-rsa.pem", *(f"mldsa{v}.self.pem" for v in VARIANTS)):
        anchors += ["--trust-anchor-ca", str(material / name)]
    instance = Emulator(tmp_path_factory.mktemp("mldsa-emulator"), anchors)
    yield instance
    instance.stop()


@pytest.fixture
def em(mldsa_emulator):
    mldsa_emulator.reset()
    return mldsa_emulator


def run(*args, timeout=SUBPROCESS_TIMEOUT):
    return subprocess.run([str(AGENT), *map(str, args)], capture_output=True, env=clean_environment(),
                          timeout=timeout, stdin=subprocess.DEVNULL)


def target_args(em):
    return ["--trust-anchor-arn", em.arns["trust_anchor_arn"], "--profile-arn", em.arns["profile_arn"],
            "--role-arn", em.arns["role_arn"], "--endpoint", em.url, "--ca-bundle", em.ca_bundle]


def credential_process(em, material, certificate, key=None, *extra):
    identity = ["--certificate", material / certificate]
    if key is not None:
        identity += ["--private-key", material / key]
    return run("credential-process", *identity, *target_args(em), *extra)


def certificate_der(path):
    text = path.read_text()
    body = text.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return base64.b64decode("".join(body.split()))


if HAVE_MLDSA:

    def accepted_authorization(em):
        """The Authorization header of the one request the emulator accepted since its reset."""
        records = em.stats()["recorded"]
        assert [r.get("outcome") for r in records] == ["accepted"], records
        return records[0]["headers"]["Authorization"]

    def check_credentials(result, em):
        assert result.returncode == 0, result.stderr.decode()
        document = json.loads(result.stdout)
        issued = last_issued(em)
        assert (document["AccessKeyId"], document["SecretAccessKey"], document["SessionToken"]) == (
            issued["accessKeyId"], issued["secretAccessKey"], issued["sessionToken"])

    @pytest.mark.parametrize("issuer", ISSUERS)
    @pytest.mark.parametrize("variant", VARIANTS)
    def test_credential_process_is_accepted(em, material, variant, issuer):
        result = credential_process(em, material, f"mldsa{variant}.{issuer}.pem", f"mldsa{variant}.key")
        check_credentials(result, em)
        authorization = accepted_authorization(em)
        serial = f"{variant}0{ISSUERS.index(issuer) + 1}"
        assert authorization.startswith(f"AWS4-X509-MLDSA Credential={serial}/"), authorization
        signature = authorization.rsplit("Signature=", 1)[1]
        assert re.fullmatch(r"[0-9a-f]+", signature) and len(signature) == 2 * SIGNATURE_BYTES[variant]

    @pytest.mark.parametrize("variant", VARIANTS)
    def test_encrypted_key_and_pkcs12_are_accepted(em, material, variant):
        check_credentials(credential_process(em, material, f"mldsa{variant}.ec.pem", f"mldsa{variant}.enc.key",
                                             "--pkcs8-password-file", material / "passphrase"), em)
        em.reset()
        # The bundle holds the key, the EC-issued certificate and its CA, which goes out as the chain.
        check_credentials(credential_process(em, material, f"mldsa{variant}.p12", None,
                                             "--pkcs8-password-file", material / "passphrase"), em)
        record = em.stats()["recorded"][0]
        chain = record["headers"]["X-Amz-X509-Chain"]
        assert base64.b64decode(chain) == certificate_der(material / "ca-ec.pem")

    def test_the_emulator_refuses_an_altered_mldsa_signature(em, material):
        """The emulator's openssl check can fail: the agent's request, replayed with one signature bit
        flipped, is refused; replayed as it was, it is accepted again."""
        check_credentials(credential_process(em, material, "mldsa65.rsa.pem", "mldsa65.key"), em)
        record = em.stats()["recorded"][0]
        headers = {k: v for k, v in record["headers"].items() if k.lower() not in ("content-length",)}
        authorization = headers["Authorization"]
        prefix, signature = authorization.rsplit("Signature=", 1)
        flipped = signature[:100] + format(int(signature[100], 16) ^ 1, "x") + signature[101:]
        outcomes = []
        for value in (prefix + "Signature=" + flipped, authorization):
            headers["Authorization"] = value
            conn = http.client.HTTPSConnection("127.0.0.1", em.port, context=em.context, timeout=30)
            try:
                conn.request("POST", record["path"], body=record["body"].encode(), headers=headers)
                response = conn.getresponse()
                outcomes.append((response.status, response.read()))
            finally:
                conn.close()
        assert outcomes[0][0] == 403 and b"Invalid signature" in outcomes[0][1], outcomes[0]
        assert outcomes[1][0] == 201, outcomes[1]

    @pytest.mark.parametrize("variant", VARIANTS)
    def test_sign_string_is_the_openssl_golden(material, variant):
        golden = (DATA / f"mldsa{variant}.sign-string.hex").read_text().strip()
        key = material / f"mldsa{variant}.key"
        text = run("sign-string", "--private-key", key, "--format", "text")
        assert text.returncode == 0, text.stderr.decode()
        assert text.stdout.decode() == golden
        as_json = run("sign-string", "--private-key", key)
        assert json.loads(as_json.stdout) == golden
        binary = run("sign-string", "--private-key", key, "--format", "bin", "--digest", "SHA512")
        assert binary.stdout.hex() == golden
        encrypted = run("sign-string", "--private-key", material / f"mldsa{variant}.enc.key", "--format", "text",
                        "--pkcs8-password-file", material / "passphrase")
        assert encrypted.stdout.decode() == golden, encrypted.stderr.decode()

    @pytest.mark.parametrize("variant", VARIANTS)
    def test_read_certificate_data_reports_the_parameter_set(material, variant):
        certificate = material / f"mldsa{variant}.ec.pem"
        result = run("read-certificate-data", "--certificate", certificate)
        assert result.returncode == 0, result.stderr.decode()
        assert list(json.loads(result.stdout).items()) == [
            ("keyType", f"ML-DSA-{variant}"),
            ("certificateData", base64.b64encode(certificate_der(certificate)).decode()),
            ("serialNumber", f"{variant}02"),
            ("supportedAlgorithms", [f"ML-DSA-{variant}"]),
        ]

    @pytest.mark.parametrize("variant", VARIANTS)
    def test_serve_on_imds_ecs_and_the_fast_path(em, material, tmp_path, variant):
        agent = started_agent(tmp_path, em, material, certificate=str(material / f"mldsa{variant}.rsa.pem"),
                              private_key=str(material / f"mldsa{variant}.key"))
        try:
            assert agent.log_lines("refresh_ok"), agent.log()
            assert accepted_authorization(em).startswith("AWS4-X509-MLDSA ")
            issued = last_issued(em)
            status, document = imds_credentials(agent.imds_port())
            assert status == 200 and document["SecretAccessKey"] == issued["secretAccessKey"], document
            status, document = ecs_credentials(agent.ecs_url(), agent.ecs_token_file().read_text())
            assert status == 200 and document["Token"] == issued["sessionToken"], document
            fast = agent.credential_process()
            assert fast.returncode == 0, fast.stderr.decode()
            assert json.loads(fast.stdout)["AccessKeyId"] == issued["accessKeyId"]
            assert create_sessions(em) == 1
        finally:
            assert agent.stop() == 0, agent.log()

else:

    def check_refusal(result, named):
        assert result.returncode == 65, (result.returncode, result.stderr.decode())
        assert result.stdout == b""
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1, lines
        match = REFUSAL.match(lines[0])
        assert match, lines[0]
        assert match["file"] == str(named)

    @pytest.mark.parametrize("variant", VARIANTS)
    def test_credential_process_refuses_before_signing(em, material, variant):
        for certificate, key, extra in ((f"mldsa{variant}.ec.pem", f"mldsa{variant}.key", ()),
                                        (f"mldsa{variant}.self.pem", f"mldsa{variant}.enc.key",
                                         ("--pkcs8-password-file", material / "passphrase"))):
            check_refusal(credential_process(em, material, certificate, key, *extra), material / key)
        # An ML-DSA certificate with a key this OpenSSL reads: the certificate is named.
        check_refusal(credential_process(em, material, f"mldsa{variant}.rsa.pem", "ca-ec.key"),
                      material / f"mldsa{variant}.rsa.pem")
        check_refusal(credential_process(em, material, f"mldsa{variant}.p12", None, "--pkcs8-password-file",
                                         material / "passphrase"), material / f"mldsa{variant}.p12")
        assert create_sessions(em) == 0

    @pytest.mark.parametrize("variant", VARIANTS)
    def test_sign_string_and_read_certificate_data_refuse(material, variant):
        key = material / f"mldsa{variant}.key"
        check_refusal(run("sign-string", "--private-key", key), key)
        certificate = material / f"mldsa{variant}.self.pem"
        check_refusal(run("read-certificate-data", "--certificate", certificate), certificate)

    def test_serve_refuses_to_start(em, material, tmp_path):
        agent = AgentProcess(tmp_path, em, material)
        agent.profile("web", certificate=str(material / "mldsa65.ec.pem"),
                      private_key=str(material / "mldsa65.key"))
        agent.start(wait_started=False)
        try:
            status = agent.process.wait(timeout=30)
        finally:
            agent.stop()
        assert status == 78, agent.log()
        assert "ML-DSA needs OpenSSL 3.5 or later" in agent.log()
        assert str(material / "mldsa65.key") in agent.log()
        assert create_sessions(em) == 0
