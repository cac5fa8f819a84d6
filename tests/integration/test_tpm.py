"""TPM 2.0 keys: the real agent binary signing with keys inside a software TPM (swtpm), against the emulator.

One swtpm runs for the module, on free loopback ports, with its state in a temporary directory. The fixture
creates the keys with the standard tools, the way README.md ("Keys in a TPM") tells users to:
  - a persistent storage primary (0x81000001) and persistent signing keys under it: EC P-256, EC P-384 and
    RSA-2048 (tpm2_create + tpm2_evictcontrol), used as --private-key handle:0x810000xx;
  - TSS2 PRIVATE KEY files from `openssl genpkey -provider tpm2` (parent: the owner hierarchy, so the agent
    recreates the standard storage primary): EC P-256 without a password, RSA-2048 with one;
  - a TSS2 file from tpm2_encodeobject for a key under a persistent parent that has its own password;
then CSRs with `openssl req -provider tpm2` and certificates from the test CA (python cryptography).

Every test ends with no transient object left in the TPM. swtpm has no resource manager in front of it, so a
leaked handle would stay there and show up in `tpm2_getcap handles-transient`.
"""

import datetime
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from radtest import certificates
from radtest.agent import AgentProcess
from radtest.environment import AGENT, clean_environment, pki_dir, wait_until

SIGN_LOOP = os.environ.get("RAD_TPM_SIGN_LOOP")
KEY_PASSWORD = "tpm-key-pass"
PARENT_PASSWORD = "tpm-parent-pass"
TOOL_TIMEOUT = 30

for tool in ("swtpm", "tpm2_createprimary", "tpm2_getcap", "openssl"):
    if shutil.which(tool) is None:
        # Never a silent skip: CI installs these through scripts/install-deps.
        raise RuntimeError(f"{tool} is missing; run scripts/install-deps (swtpm, swtpm-tools, tpm2-tools, "
                           "tpm2-openssl)")


def free_port_pair():
    """Two consecutive free TCP ports on 127.0.0.1 (swtpm's command and control channels)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two consecutive free ports")


class SoftwareTpm:
    """swtpm on loopback with its state in `directory`; stop() and start() keep the state (persistent keys)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.state = self.dir / "state"
        self.state.mkdir(parents=True)
        self.port = free_port_pair()
        self.tcti = f"swtpm:host=127.0.0.1,port={self.port}"
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1", "--tpmstate", f"dir={self.state}",
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "swtpm.log", "ab"))
        wait_until(lambda: self.tool("tpm2_getcap", "handles-persistent", check=False).returncode == 0, 10,
                   what="swtpm answering")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)

    def env(self):
        return clean_environment({"TPM2TOOLS_TCTI": self.tcti, "TPM2OPENSSL_TCTI": self.tcti,
                                  "TSS2_LOG": "all+NONE"})

    def tool(self, *args, check=True, cwd=None):
        result = subprocess.run(list(args), capture_output=True, env=self.env(), timeout=TOOL_TIMEOUT,
                                cwd=cwd or self.dir)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.decode()}")
        return result

    def flush_all(self):
        """tpm2-tools leave their own objects and sessions behind without a resource manager; clear them."""
        for kind in ("-t", "-l", "-s"):
            self.tool("tpm2_flushcontext", kind)

    def handles(self, kind):
        out = self.tool("tpm2_getcap", f"handles-{kind}").stdout.decode()
        return re.findall(r"0x[0-9a-fA-F]+", out)

    def lockout_counter(self):
        out = self.tool("tpm2_getcap", "properties-variable").stdout.decode()
        return int(re.search(r"TPM2_PT_LOCKOUT_COUNTER:\s*(0x[0-9a-fA-F]+)", out).group(1), 16)


def issue_certificate(csr_path, out_path, common_name):
    """A leaf for the CSR's key from the test root CA, as make-test-pki makes its leaves."""
    csr = x509.load_pem_x509_csr(Path(csr_path).read_bytes())
    # The CSR's own signature was made inside the TPM: checking it here checks the provider-made key too.
    assert csr.is_signature_valid
    now = certificates.now()
    cert = certificates.issue(pki_dir(), common_name, csr.public_key(), now - datetime.timedelta(hours=1),
                              now + datetime.timedelta(days=30))
    Path(out_path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(out_path)


class TpmKeys:
    """The swtpm and every key, certificate and password file the tests use."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.tpm = SoftwareTpm(self.dir / "tpm")
        try:
            self.create_keys()
        except BaseException:
            self.tpm.stop()
            raise

    def create_keys(self):
        tpm = self.tpm
        # Wrong passwords are part of the tests: keep the lockout far away and short.
        tpm.tool("tpm2_dictionarylockout", "--setup-parameters", "--max-tries=100", "--recovery-time=1",
                 "--lockout-recovery-time=1")
        attributes = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign"
        srk_attributes = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt"
        tpm.tool("tpm2_createprimary", "-Q", "-C", "o", "-g", "sha256", "-G", "ecc256:aes128cfb", "-a",
                 srk_attributes, "-c", "srk.ctx")
        tpm.tool("tpm2_evictcontrol", "-Q", "-C", "o", "-c", "srk.ctx", "0x81000001")
        tpm.flush_all()
        self.handles = {"p256": "0x81000010", "p384": "0x81000011", "rsa2048": "0x81000012"}
        for name, algorithm in (("p256", "ecc256"), ("p384", "ecc384"), ("rsa2048", "rsa2048")):
            tpm.tool("tpm2_create", "-Q", "-C", "0x81000001", "-G", algorithm, "-a", attributes,
                     "-u", f"{name}.pub", "-r", f"{name}.priv")
            tpm.tool("tpm2_load", "-Q", "-C", "0x81000001", "-u", f"{name}.pub", "-r", f"{name}.priv",
                     "-c", f"{name}.ctx")
            tpm.tool("tpm2_evictcontrol", "-Q", "-C", "o", "-c", f"{name}.ctx", self.handles[name])
            tpm.flush_all()

        self.key_password_file = self.secret_file("key.pass", KEY_PASSWORD + "\n")
        self.wrong_password_file = self.secret_file("wrong.pass", "not-the-password\n")
        self.parent_password_file = self.secret_file("parent.pass", PARENT_PASSWORD + "\n")
        provider = ["-provider", "tpm2", "-provider", "default"]
        tpm.tool("openssl", "genpkey", *provider, "-algorithm", "EC", "-pkeyopt", "group:P-256",
                 "-out", "owner-p256.tss")
        tpm.tool("openssl", "genpkey", *provider, "-algorithm", "RSA", "-pkeyopt", "bits:2048",
                 "-pkeyopt", f"user-auth:{KEY_PASSWORD}", "-out", "owner-rsa-pw.tss")
        # A parent with a password, persistent at 0x81000002, and a key file under it.
        tpm.tool("tpm2_createprimary", "-Q", "-C", "o", "-g", "sha256", "-G", "ecc256:aes128cfb", "-a",
                 srk_attributes, "-p", PARENT_PASSWORD, "-c", "parent.ctx")
        tpm.tool("tpm2_evictcontrol", "-Q", "-C", "o", "-c", "parent.ctx", "0x81000002")
        tpm.flush_all()
        tpm.tool("tpm2_create", "-Q", "-C", "0x81000002", "-P", PARENT_PASSWORD, "-G", "ecc384", "-a",
                 attributes, "-u", "child.pub", "-r", "child.priv")
        tpm.flush_all()
        tpm.tool("tpm2_encodeobject", "-C", "0x81000002", "-P", PARENT_PASSWORD, "-u", "child.pub",
                 "-r", "child.priv", "-o", "child-p384.tss")
        tpm.flush_all()

        # Certificates: CSRs signed inside the TPM by the OpenSSL provider, then the test CA.
        self.certs = {}
        requests = {name: ["-key", f"handle:{handle}"] for name, handle in self.handles.items()}
        requests["owner-p256"] = ["-key", "owner-p256.tss"]
        requests["owner-rsa-pw"] = ["-key", "owner-rsa-pw.tss", "-passin", f"pass:{KEY_PASSWORD}"]
        for name, key_args in requests.items():
            tpm.tool("openssl", "req", *provider, "-new", *key_args, "-subj", f"/CN=tpm-{name}.test",
                     "-out", f"{name}.csr")
            self.certs[name] = issue_certificate(self.dir / "tpm" / f"{name}.csr", self.dir / f"{name}.pem",
                                                 f"tpm-{name}.test")
        self.certs["child-p384"] = self.child_certificate()
        tpm.flush_all()

    def child_certificate(self):
        # tpm2-openssl 1.1.1 takes a parent password only from $TPM2OPENSSL_PARENT_AUTH; tpm2_encodeobject 5.4
        # writes emptyAuth inverted, so the provider asks for the (empty) key password.
        env = dict(self.tpm.env(), TPM2OPENSSL_PARENT_AUTH=PARENT_PASSWORD)
        result = subprocess.run(["openssl", "req", "-provider", "tpm2", "-provider", "default", "-new", "-key",
                                 "child-p384.tss", "-passin", "pass:", "-subj", "/CN=tpm-child.test", "-out", "child-p384.csr"],
                                capture_output=True, env=env, timeout=TOOL_TIMEOUT, cwd=self.tpm.dir)
        assert result.returncode == 0, result.stderr.decode()
        return issue_certificate(self.tpm.dir / "child-p384.csr", self.dir / "child-p384.pem", "tpm-child.test")

    def secret_file(self, name, text):
        path = self.dir / name
        path.write_text(text)
        os.chmod(path, 0o600)
        return str(path)

    def key(self, name):
        if name in self.handles:
            return f"handle:{self.handles[name]}"
        return str(self.tpm.dir / f"{name}.tss")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    instance = TpmKeys(tmp_path_factory.mktemp("tpm"))
    yield instance
    instance.tpm.stop()


def run_agent(*args, timeout=45):
    return subprocess.run([str(AGENT), *map(str, args)], capture_output=True, env=clean_environment(),
                          timeout=timeout, stdin=subprocess.DEVNULL)


def credential_process(em, keys, name, *extra, key=None):
    """credential-process with the certificate of key `name`, and that key unless `key` names another."""
    return run_agent("credential-process", "--certificate", keys.certs[name], "--private-key", key or keys.key(name),
                     "--tpm-tcti", keys.tpm.tcti, "--trust-anchor-arn", em.arns["trust_anchor_arn"],
                     "--profile-arn", em.arns["profile_arn"], "--role-arn", em.arns["role_arn"],
                     "--endpoint", em.url, "--ca-bundle", em.ca_bundle, *extra)


def assert_accepted(result, em, count=1):
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)
    assert document["Version"] == 1 and document["AccessKeyId"]
    issued = em.issued()
    assert len(issued) == count
    assert issued[-1]["accessKeyId"] == document["AccessKeyId"]


@pytest.mark.parametrize("name", ["p256", "p384", "rsa2048"])
def test_persistent_handle_keys(em, keys, name):
    # --no-tpm-key-password is how the reference helper is told "no password"; here it is also the default.
    result = credential_process(em, keys, name, "--no-tpm-key-password")
    assert_accepted(result, em)
    assert keys.tpm.handles("transient") == []


def test_key_files_with_hierarchy_and_persistent_parents(em, keys):
    assert_accepted(credential_process(em, keys, "owner-p256"), em, 1)
    assert_accepted(credential_process(em, keys, "owner-rsa-pw", "--tpm-key-password-file",
                                       keys.key_password_file), em, 2)
    # The password on the command line (compatibility) works too; it is scrubbed from argv by main().
    assert_accepted(credential_process(em, keys, "owner-rsa-pw", "--tpm-key-password", KEY_PASSWORD), em, 3)
    assert_accepted(credential_process(em, keys, "child-p384", "--tpm-parent-password-file",
                                       keys.parent_password_file), em, 4)
    assert keys.tpm.handles("transient") == []


def test_wrong_passwords_fail_once_before_any_request(em, keys):
    before = keys.tpm.lockout_counter()
    result = credential_process(em, keys, "owner-rsa-pw", "--tpm-key-password-file", keys.wrong_password_file)
    assert result.returncode == 77, result.stderr.decode()
    message = result.stderr.decode()
    assert "the TPM refused the key password" in message and message.count("\n") == 1, message
    assert "not-the-password" not in message
    # Exactly one authorization attempt reached the TPM: the dictionary-attack counter moved by one.
    assert keys.tpm.lockout_counter() == before + 1
    # A key file that says it has a password, used without one: the TPM refuses, the message says why.
    result = credential_process(em, keys, "owner-rsa-pw")
    assert result.returncode == 77
    assert "none was given" in result.stderr.decode()
    # A wrong parent password is refused when the key is loaded, before the key password is ever tried.
    result = credential_process(em, keys, "child-p384", "--tpm-parent-password-file", keys.wrong_password_file)
    assert result.returncode == 77 and "refused the parent password" in result.stderr.decode()
    assert em.stats()["recorded"] == []
    assert keys.tpm.handles("transient") == []


def test_local_errors(em, keys):
    result = credential_process(em, keys, "p256", key="handle:0x81000099")
    assert result.returncode == 66 and "tpm2_getcap handles-persistent" in result.stderr.decode()
    result = credential_process(em, keys, "p256", key="handle:0x40000001")
    assert result.returncode == 64 and "persistent" in result.stderr.decode()
    result = credential_process(em, keys, "p384", key=keys.key("p256"))
    assert result.returncode == 65 and "does not belong" in result.stderr.decode()
    result = run_agent("credential-process", "--certificate", keys.certs["p256"], "--private-key", keys.key("p256"),
                       "--tpm-tcti", "swtpm:host=127.0.0.1,port=1", "--trust-anchor-arn", em.arns["trust_anchor_arn"],
                       "--profile-arn", em.arns["profile_arn"], "--role-arn", em.arns["role_arn"],
                       "--endpoint", em.url, "--ca-bundle", em.ca_bundle)
    assert result.returncode == 69 and "cannot reach the TPM" in result.stderr.decode()
    assert em.stats()["recorded"] == []


def test_agent_recovers_after_swtpm_restart(em, keys, tmp_path):
    agent = AgentProcess(tmp_path / "agent", em, pki_dir())
    agent.profile("web", certificate=keys.certs["owner-p256"], private_key=keys.key("owner-p256"),
                  tpm_tcti=keys.tpm.tcti)
    agent.start()
    try:
        assert len(agent.log_lines("refresh_ok")) == 1
        keys.tpm.stop()
        # Ask for more life than any credentials have: the agent refreshes now, and the TPM is gone.
        agent.credential_process("web", "--min-lifetime", "40000")
        agent.wait_for_log(r"event=refresh_failed.*code=device_unavailable", timeout=15)
        keys.tpm.start()
        # The retry (1 s backoff, full jitter) signs again through a new connection.
        agent.wait_for_log(r"event=refresh_ok", timeout=20, count=2)
        assert agent.running()
        assert len(em.issued()) == 2
    finally:
        agent.stop()
    assert keys.tpm.handles("transient") == []


def test_thousand_signatures_leave_no_transient_objects(keys):
    assert SIGN_LOOP, "RAD_TPM_SIGN_LOOP (the tpm_sign_loop test binary) is not set"
    # The key file under the owner hierarchy is the worst case: every signature creates the storage primary,
    # loads the key under it and flushes both.
    result = subprocess.run([SIGN_LOOP, "--private-key", keys.key("owner-p256"), "--certificate",
                             keys.certs["owner-p256"], "--tcti", keys.tpm.tcti, "--count", "1000"],
                            capture_output=True, env=clean_environment(), timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["signatures"] == 1000
    assert keys.tpm.handles("transient") == []
    assert keys.tpm.handles("loaded-session") == []
