"""Certificate renewal and token sharing under the shipped units, as systemd/README.md tells an operator to do
them. A short-lived certificate is renewed twice while clients keep asking, once certificate first and once key
first: each rename restarts the agent through rolesanywhere-agent-renew.path, the new process serves the
credentials the old one handed over, and after the first certificate has expired every CreateSession is made
with a renewed one. A client of another user, in the token file's group, gets credentials from the container
endpoint with the token the operator provisioned."""

import datetime
import json
import os
import re
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from radtest import certificates
from radtest.clients import ecs_credentials, imds_credentials
from radtest.environment import wait_until

from radtest.machine import Poller
from conftest import CONFIG_DIR, SERVICE, SOCKETS

RENEW_PATH = "rolesanywhere-agent-renew.path"
NOBODY = 65534


def issue(pki, label, lifetime):
    """A P-256 client certificate of the test CA, valid for `lifetime` from now, and its key (PEM bytes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = certificates.now()
    cert = certificates.issue(pki, f"{label}.renewal.test", key.public_key(), now - datetime.timedelta(minutes=5),
                              now + lifetime)
    return cert, cert.public_bytes(serialization.Encoding.PEM), certificates.key_pem(key)


def signed_with(em):
    """The serials of the certificates that signed the accepted CreateSession calls, in order."""
    return [r["serial"] for r in em.stats()["recorded"] if r.get("outcome") == "accepted"]


def main_pids(service):
    return service.show("MainPID")["MainPID"]


def test_a_short_lived_certificate_renewed_twice_while_clients_keep_getting_credentials(service, em, pki):
    try:
        renew_twice(service, em, pki)
    finally:
        # The other tests' pair (the session's config directory).
        service.systemctl("stop", RENEW_PATH, check=False)
        service.write_file("agent.pem", (pki / "p256.pem").read_bytes(), 0o644)
        service.write_file("agent.key", (pki / "p256.key").read_bytes(), 0o600)


def renew_twice(service, em, pki):
    first, first_pem, first_key = issue(pki, "first", datetime.timedelta(seconds=40))
    service.write_file("agent.pem", first_pem, 0o644)
    service.write_file("agent.key", first_key, 0o600)
    # 125 s credentials: short enough that the renewals happen within the first set's life (the agent refreshes
    # them at about half their lifetime, never sooner).
    em.faults({"lifetime_seconds": 125, "count": 1000})
    service.start(*SOCKETS, SERVICE, RENEW_PATH)
    service.wait_serving()
    cursor = service.cursor()
    fast_path = ["rolesanywhere-agent", "credential-process", "--profile", "web", "--no-fallback"]

    def probe():
        status, document = imds_credentials(service.ports["imds"])
        assert status == 200, f"imds {status} {document}"
        assert json.loads(service.machine.run(*fast_path).stdout)["AccessKeyId"]
        return True

    with Poller(probe, interval=0.1) as poller:
        poller.wait_for_answers(5, timeout=30)
        # Renewal 1: the certificate first, its key a moment later (two restarts).
        second, second_pem, second_key = issue(pki, "second", datetime.timedelta(seconds=120))
        pid = main_pids(service)
        service.write_file("agent.pem", second_pem, 0o644)
        time.sleep(1)  # the pair arriving apart, as a renewal tool writing two files does
        service.write_file("agent.key", second_key, 0o600)
        wait_until(lambda: str(second.serial_number) in signed_with(em), 40,
                   what="a CreateSession signed with renewal 1")
        assert main_pids(service) != pid, "the renewal did not restart the agent"

        # Renewal 2: the key first this time.
        third, third_pem, third_key = issue(pki, "third", datetime.timedelta(seconds=300))
        service.write_file("agent.key", third_key, 0o600)
        time.sleep(1)
        service.write_file("agent.pem", third_pem, 0o644)
        wait_until(lambda: str(third.serial_number) in signed_with(em), 40,
                   what="a CreateSession signed with renewal 2")

        # Past the first certificate's expiry, refreshes go on with the renewed one.
        expired = first.not_valid_after.replace(tzinfo=datetime.timezone.utc).timestamp()
        wait_until(lambda: time.time() > expired + 5, 60, what="the first certificate to expire")
        calls = len(signed_with(em))
        service.machine.run("rolesanywhere-agent", "refresh")
        wait_until(lambda: len(signed_with(em)) >= calls + 1, 30, what="a refresh after its expiry")
        seen = len(poller.results)
        poller.wait_for_answers(seen + 5, timeout=30)

    assert poller.failures == [], poller.failures[:5]
    assert em.stats()["rejected"] == 0, em.stats()["rejections"]
    serials = signed_with(em)
    assert serials[-1] == str(third.serial_number), serials
    assert str(first.serial_number) not in serials[serials.index(str(second.serial_number)):], serials
    journal = service.journal(after=cursor)
    assert len(re.findall(r"event=credentials_adopted\b", journal)) >= 4, journal  # four renames, four starts
    assert "key_cert_mismatch" in journal, "a pair was never caught half-renewed: the test did not test that"
    status = json.loads(service.machine.run("rolesanywhere-agent", "status", "--json").stdout)
    assert status["profiles"][0]["certificate"]["serial"] == str(third.serial_number), status


def test_a_token_provisioned_for_a_group_serves_a_client_of_another_user(service, machine, em):
    """systemd/README.md, "Sharing the ECS token": a token file 0640 root:GROUP handed to the service by
    LoadCredential=; botocore running as another user in GROUP reads it and gets credentials from the
    container endpoint; a user outside GROUP cannot read it."""
    machine.run("addgroup", "--system", "rad-ecs-clients")
    try:
        gid = int(machine.run("getent", "group", "rad-ecs-clients").stdout.split(":")[2])
        token = "a-token-for-the-ecs-clients-group"
        service.write_file("web.token", token, 0o640)
        os.chown(service.config_dir / "web.token", 0, gid)
        service.dropin(SERVICE, "test-token", f"[Service]\nLoadCredential=web.token:{CONFIG_DIR}/web.token\n")
        service.configure(profile={"ecs_token_file": "credential:web.token"})
        service.start()
        service.wait_serving()
        # botocore 1.29 (Debian 12) does not read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE itself: the client's
        # shell reads the file, as that user, into AWS_CONTAINER_AUTHORIZATION_TOKEN.
        client = ('AWS_CONTAINER_AUTHORIZATION_TOKEN="$(cat "$1")" exec python3 -c "import botocore.session; '
                  'c = botocore.session.get_session().get_credentials(); print(c.get_frozen_credentials().access_key)"')
        env = ["env", f"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:{service.ports['ecs']}/credentials/web",
               "AWS_EC2_METADATA_DISABLED=true"]
        result = machine.run(*env, "sh", "-c", client, "sh", f"{CONFIG_DIR}/web.token", user=NOBODY, groups=[gid],
                             check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == em.issued()[-1]["accessKeyId"], result.stdout
        outsider = machine.run("cat", f"{CONFIG_DIR}/web.token", user=NOBODY, check=False)
        assert outsider.returncode != 0 and token not in outsider.stdout
        status, document = ecs_credentials(f"http://127.0.0.1:{service.ports['ecs']}/credentials/web", token)
        assert status == 200, document
    finally:
        machine.run("delgroup", "--system", "rad-ecs-clients", check=False)
        (service.config_dir / "web.token").unlink(missing_ok=True)
