"""Client certificates issued on the spot by the test root CA (tests/support/make-test-pki's root-ca.pem and
root-ca.key), for what the fixed test PKI cannot hold: a validity window relative to now, a key made
elsewhere (a TPM's CSR), a curve the PKI has no leaf on. They carry what make-test-pki's leaves carry: not a
CA, digitalSignature, clientAuth."""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SIGNING_ONLY = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                             encipher_only=False, decipher_only=False)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def issue(pki, common_name, public_key, not_before, not_after):
    """A certificate for `public_key`, issued by the test root CA in `pki`, valid from `not_before` to
    `not_after` (aware datetimes)."""
    ca_cert = x509.load_pem_x509_certificate((pki / "root-ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "root-ca.key").read_bytes(), password=None)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(SIGNING_ONLY, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))


def key_pem(key):
    """`key` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def issue_pair(pki, directory, name, not_before, not_after, curve=None):
    """A new key (P-256 unless `curve` says otherwise) and its certificate, written to `directory` as
    NAME.pem and NAME.key (0600): (certificate path, key path)."""
    key = ec.generate_private_key(curve or ec.SECP256R1())
    cert = issue(pki, f"{name}.test", key.public_key(), not_before, not_after)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem(key))
    return cert_path, key_path
