"""F10: the leaf certificate's validity. An expired or not-yet-valid certificate stops `serve` at start with
exit 78 (EX_CONFIG, which the unit's RestartPreventExitStatus=78 keeps from a restart loop) and no CreateSession;
a certificate with 6 days left starts, works, and warns once.
"""

import datetime
import os
import re
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from radtest.agent import AgentProcess
from radtest.emulator import create_sessions
from radtest.environment import ROOT


@pytest.mark.parametrize("name", ["expired", "not-yet-valid"])
def test_f10_invalid_certificate_exits_78_without_calling(em, pki, tmp_path, name, figure):
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web", certificate=str(pki / f"{name}.pem"), private_key=str(pki / f"{name}.key"))
    agent.start(wait_started=False)
    try:
        code = agent.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        agent.process.kill()
        raise AssertionError(f"serve kept running with the {name} certificate")
    log = agent.log()
    figure(f"F10 ({name}): exit {code}; CreateSession calls {create_sessions(em)}; "
           f"log {[l for l in log.splitlines() if 'profile_invalid' in l][:1]}")
    assert code == 78, log
    assert create_sessions(em) == 0
    assert re.search(r"expired|not yet valid", log), log
    unit = (ROOT / "systemd" / "rolesanywhere-agent.service").read_text()
    assert re.search(r"^RestartPreventExitStatus=.*\b78\b", unit, re.M), "exit 78 would be restarted"


def six_days_left(pki, directory):
    root_key = serialization.load_pem_private_key((pki / "root-ca.key").read_bytes(), None)
    root = x509.load_pem_x509_certificate((pki / "root-ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "six-days-left.test")]))
            .issuer_name(root.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=6))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(root_key, hashes.SHA256()))
    cert_path, key_path = directory / "six.pem", directory / "six.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def test_f10_six_days_left_warns_once(em, pki, tmp_path, figure):
    cert, key = six_days_left(pki, tmp_path)
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web", certificate=str(cert), private_key=str(key))
    agent.start()
    try:
        assert agent.log_lines("refresh_ok"), agent.log()
        # Another refresh: still one warning for the day.
        agent.request_refresh()
        agent.wait_for_log(r"\bevent=refresh_(ok|failed)\b", count=2)
        warnings = agent.log_lines("certificate_expiring")
        figure(f"F10 (6 days left): warnings {len(warnings)} ({warnings[0].split(' ', 1)[1] if warnings else '-'}); "
               f"CreateSession calls {create_sessions(em)}")
        assert len(warnings) == 1, warnings
        assert "days_left=5" in warnings[0] or "days_left=6" in warnings[0], warnings
        assert create_sessions(em) == 2
    finally:
        assert agent.stop() == 0
