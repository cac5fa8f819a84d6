"""The static-user variant of systemd/README.md with a SoftHSM2 token: a system user made with adduser, the
README's drop-in (the SoftHSM lines), a token initialised with softhsm2-util and filled with pkcs11-tool, and
the agent signing CreateSession with the key on the token, its PIN passed by LoadCredential=."""

import base64
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from radtest.clients import imds_credentials
from radtest.emulator import last_issued

from conftest import SERVICE

USER = "rolesanywhere-agent"
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
TOKENS = "/var/lib/softhsm/tokens"
LABEL = "rad-boot"
PIN = "31415926"
SO_PIN = "27182818"
IMPORT_DIR = "/run/rad-token-import"

# systemd/README.md, "Static-user variant", with the SoftHSM lines instead of the TPM device lines.
README_DROPIN = f"""[Service]
DynamicUser=no
User={USER}
Group={USER}
SupplementaryGroups=softhsm
ReadWritePaths={TOKENS}
"""


@pytest.fixture
def static_user(machine):
    """The system user of the README and what Debian's softhsm2 package sets up on a host (the container's
    /etc and /var start empty): the softhsm group, its token directory and softhsm2.conf. Removed afterwards,
    so that DynamicUser= gets a dynamic user again."""
    machine.run("adduser", "--system", "--group", "--no-create-home", "--home", "/nonexistent", USER)
    machine.run("addgroup", "--system", "softhsm")
    machine.run("install", "-d", "-m", "2770", "-o", "root", "-g", "softhsm", TOKENS)
    machine.write("/etc/softhsm/softhsm2.conf", open("/etc/softhsm/softhsm2.conf").read())
    yield USER
    machine.run("rm", "-rf", TOKENS, IMPORT_DIR)
    machine.run("deluser", "--system", USER, check=False)
    machine.run("delgroup", "--system", "softhsm", check=False)
    machine.run("delgroup", "--system", USER, check=False)


def as_agent(machine, *command):
    """Run `command` in the container as the agent's user, in the softhsm group (as the service will)."""
    return machine.run(*command, user=USER, groups=["softhsm"])


def test_static_user_with_a_softhsm_token(service, machine, em, pki, static_user):
    # The token belongs to the agent's user: SoftHSM keeps each token in a directory private to its creator.
    as_agent(machine, "softhsm2-util", "--init-token", "--free", "--label", LABEL, "--pin", PIN, "--so-pin", SO_PIN)
    key = serialization.load_pem_private_key((pki / "p256.key").read_bytes(), None)
    certificate = x509.load_pem_x509_certificate((pki / "p256.pem").read_bytes())
    objects = (("privkey", key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())),
               ("cert", certificate.public_bytes(serialization.Encoding.DER)))
    machine.run("install", "-d", "-m", "0700", "-o", USER, IMPORT_DIR)
    for kind, der in objects:
        path = f"{IMPORT_DIR}/{kind}.der"
        # DER through base64: commands in the container take text on stdin here.
        machine.run("sh", "-c", f'base64 -d > "$1" && chown {USER} "$1"', "sh", path,
                    input=base64.b64encode(der).decode())
        as_agent(machine, "pkcs11-tool", "--module", SOFTHSM, "--token-label", LABEL, "--login", "--pin", PIN,
                 "--write-object", path, "--type", kind, "--id", "01", "--label", "agent")
    machine.run("rm", "-rf", IMPORT_DIR)

    service.write_file("pin", PIN + "\n", 0o600)
    service.dropin(SERVICE, "static-user", README_DROPIN)
    service.dropin(SERVICE, "test-pin", "[Service]\nLoadCredential=pin:/etc/rolesanywhere-agent/pin\n")
    service.configure(profile={"certificate": f"pkcs11:token={LABEL};object=agent", "private_key": None,
                               "pkcs11_lib": SOFTHSM, "pin_file": "credential:pin"})
    service.start()
    pid = int(service.wait_serving()["MainPID"])

    uid = machine.run("id", "-u", USER).stdout.strip()
    status = machine.read(f"/proc/{pid}/status")
    assert re.search(rf"^Uid:\s+{uid}\s+{uid}\s+{uid}\s+{uid}$", status, re.M), status
    groups = re.search(r"^Groups:\s*(.*)$", status, re.M)[1].split()
    assert machine.run("getent", "group", "softhsm").stdout.split(":")[2] in groups
    assert re.search(r"^CapEff:\s+0+$", status, re.M) and re.search(r"^NoNewPrivs:\s+1$", status, re.M)

    # The emulator verified the signature made on the token against the test PKI's certificate.
    status_code, document = imds_credentials(service.ports["imds"])
    assert status_code == 200, document
    assert document["AccessKeyId"] == last_issued(em)["accessKeyId"]
    assert em.stats()["accepted"] == 1

    export = machine.run("journalctl", "--no-pager", "-o", "export").stdout
    assert PIN not in export and SO_PIN not in export

