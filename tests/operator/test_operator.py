"""README.md's operator path, as an operator follows it on a fresh Debian machine (tests/README.md, "Operator
suite"). Each README block runs as written; the steps between them are what an operator does by hand or checks.
The tests run in file order, each on the machine the previous one left."""

import json
import re
import subprocess

from radtest.clients import http_call, imds_credentials
from radtest.environment import clean_environment, pki_dir, wait_until
from radtest.machine import Poller

from conftest import (CA_BUNDLE, CONFIG_DIR, EDITED_CONFIG, PROFILES, SERVICE, SHIPPED_PORTS, START_TIMEOUT,
                      edit_config, independent, listening)

AWS = "/usr/bin/aws"
SOCKETS = ("rolesanywhere-agent.socket", "rolesanywhere-agent-ecs.socket", "rolesanywhere-agent-fastpath.socket")
PATH_UNITS = ("rolesanywhere-agent-renew.path", "rolesanywhere-agent-reload.path")
IMDS_PORTS = {"web": SHIPPED_PORTS["imds_web"], "batch": SHIPPED_PORTS["imds_batch"]}
HEALTH_PORT = SHIPPED_PORTS["health"]
# peer_refused (common/error.cpp): the agent answered and said no.
EXIT_PEER_REFUSED = 77
SOURCES_RECORD = "/run/rolesanywhere-agent/credential-sources"


def issued_keys(emulator):
    return {c["accessKeyId"]: c for c in emulator.issued()}


def aws_credentials(tmp_path, env, config=""):
    """The AWS CLI of this host (`aws configure export-credentials`), with a clean environment and `config` as
    its config file; returns the credentials it resolved."""
    (tmp_path / "aws-config").write_text(config)
    environment = clean_environment({"HOME": str(tmp_path), "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
                                     "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent"), **env})
    result = subprocess.run([AWS, "configure", "export-credentials", "--format", "process"], env=environment,
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"aws: exit {result.returncode}\n{result.stderr[-2000:]}"
    return json.loads(result.stdout)


def over_imds(tmp_path, profile):
    return aws_credentials(tmp_path, {"AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{IMDS_PORTS[profile]}/"})


def over_fast_path(tmp_path, operator, profile):
    """credential_process with the installed binary in the machine (nsenter), asking the agent only."""
    command = (f"nsenter -t {operator.machine.pid1} -a /usr/bin/rolesanywhere-agent credential-process "
               f"--profile {profile} --no-fallback")
    return aws_credentials(tmp_path, {"AWS_PROFILE": profile, "AWS_EC2_METADATA_DISABLED": "true"},
                           f"[profile {profile}]\ncredential_process = {command}\n")


def served_by_each_profile(tmp_path, operator, emulator):
    """Each profile's credentials through the AWS CLI over its IMDS address and over the fast path: the same set
    for both ways, one the emulator issued, and another set for each profile."""
    keys = {}
    for profile in PROFILES:
        imds, fast = over_imds(tmp_path, profile), over_fast_path(tmp_path, operator, profile)
        assert imds["AccessKeyId"] == fast["AccessKeyId"], f"{profile}: IMDS and the fast path differ"
        issued = issued_keys(emulator).get(imds["AccessKeyId"])
        assert issued and issued["secretAccessKey"] == imds["SecretAccessKey"] == fast["SecretAccessKey"], profile
        keys[profile] = imds["AccessKeyId"]
    assert len(set(keys.values())) == len(PROFILES), f"the profiles share credentials: {keys}"
    return keys


def unit_states(operator, *units):
    return {u: operator.show("ActiveState", unit=u)["ActiveState"] for u in units}


def write_config(operator, text):
    """config.toml rewritten the way an editor saves it (rename), which rolesanywhere-agent-reload.path sees."""
    operator.put(f"{CONFIG_DIR}/config.toml", text, mode=0o644)


def wait_serving(operator, timeout=START_TIMEOUT):
    """Active, and every profile holding credentials (status over the fast path, as root)."""
    operator.wait_active(timeout=timeout)

    def all_served():
        try:
            doc = operator.status_json()
        except AssertionError:
            return None
        profiles = {p["name"]: p for p in doc["profiles"]}
        return doc if all(profiles.get(n, {}).get("access_key_id") for n in PROFILES) else None
    return wait_until(all_served, timeout, interval=0.3, what="every profile to hold credentials")


# --- package, install, configure, start -------------------------------------------------------------------


def test_package_block_makes_the_deb_the_install_block_names(deb):
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Architecture"], capture_output=True,
                            text=True, check=True).stdout
    assert "Package: rolesanywhere-agent" in fields and "Architecture: amd64" in fields, fields


def test_install(operator):
    operator.block("install")
    assert "install ok installed" in operator.machine.run("dpkg-query", "-W", "-f=${Status}",
                                                          "rolesanywhere-agent").stdout
    # Nothing runs before it is configured and started.
    assert set(unit_states(operator, SERVICE, *SOCKETS, *PATH_UNITS).values()) == {"inactive"}
    assert not any(listening(port) for port in SHIPPED_PORTS.values())


def test_configure(operator, emulator):
    # What the operator has besides the README's files: the endpoint's CA (a private endpoint's), and the edit.
    operator.put(CA_BUNDLE, open(emulator.ca_bundle).read())
    example = operator.machine.read(f"{CONFIG_DIR}/config.toml.example")
    edited = edit_config(example, emulator)
    operator.put(EDITED_CONFIG, edited)
    operator.block("configure")
    assert operator.machine.read(f"{CONFIG_DIR}/config.toml") == edited
    modes = operator.machine.run("stat", "-c", "%n %a %U", f"{CONFIG_DIR}/config.toml", f"{CONFIG_DIR}/agent.pem",
                                 f"{CONFIG_DIR}/agent.key").stdout.split("\n")
    assert modes[:3] == [f"{CONFIG_DIR}/config.toml 644 root", f"{CONFIG_DIR}/agent.pem 644 root",
                         f"{CONFIG_DIR}/agent.key 600 root"]


def test_start_brings_up_the_service_and_its_sockets(operator):
    """B1: the README's start command, on a machine where nothing else enabled or started any unit."""
    operator.block("start")
    operator.wait_active()
    assert unit_states(operator, *SOCKETS, *PATH_UNITS) == {u: "active" for u in (*SOCKETS, *PATH_UNITS)}
    wait_serving(operator)
    enabled = operator.systemctl("is-enabled", SERVICE, *SOCKETS, *PATH_UNITS).stdout.split()
    assert enabled == ["enabled"] * (1 + len(SOCKETS) + len(PATH_UNITS))


def test_each_profile_is_served_over_imds_and_the_fast_path(operator, emulator, tmp_path):
    """R1: two profiles with the shipped units: web on the socket unit's address, batch on one the agent binds."""
    served_by_each_profile(tmp_path, operator, emulator)
    assert operator.show("NRestarts")["NRestarts"] == "0"


def test_status(operator):
    result = operator.block("status")
    for profile in PROFILES:
        assert profile in result.stdout, f"status does not name {profile}:\n{result.stdout}"


# --- who may use the fast path ----------------------------------------------------------------------------


@independent
def test_allowed_uids_alone_admits_a_user(operator, tmp_path):
    """R3: a uid listed in allowed_uids, in no group of the socket's, gets credentials; an unlisted user gets the
    agent's refusal (not a connection error)."""
    machine = operator.machine
    for user in ("alice", "bob"):
        machine.run("useradd", "--no-create-home", "--user-group", user)
    alice, bob = (int(machine.run("id", "-u", user).stdout) for user in ("alice", "bob"))
    config = machine.read(f"{CONFIG_DIR}/config.toml")
    assert "\nallowed_uids" not in config
    write_config(operator, config.replace("[agent]\n", f"[agent]\nallowed_uids = [{alice}]\n", 1))
    try:
        operator.systemctl("restart", SERVICE)
        wait_serving(operator)
        admitted = machine.run("/usr/bin/rolesanywhere-agent", "credential-process", "--profile", "web",
                               "--no-fallback", user=alice, check=False)
        assert admitted.returncode == 0, f"alice (allowed_uids): exit {admitted.returncode}\n{admitted.stderr}"
        assert json.loads(admitted.stdout)["AccessKeyId"].startswith("ASIA")
        refused = machine.run("/usr/bin/rolesanywhere-agent", "credential-process", "--profile", "web",
                              "--no-fallback", user=bob, check=False)
        # The agent's answer, which names the uid it saw (SO_PEERCRED); a socket bob could not connect to would
        # give a connection error of the same exit code that cannot know his uid.
        assert refused.returncode == EXIT_PEER_REFUSED and refused.stdout == "", (refused.returncode, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1 and f"uid {bob}" in refused.stderr, refused.stderr
    finally:
        write_config(operator, config)
        operator.systemctl("restart", SERVICE)
        wait_serving(operator)
        operator.forget_starts()


# --- reload, restart ----------------------------------------------------------------------------------------


@independent
def test_a_refused_edit_fails_the_reload_and_the_agent_serves_on(operator, tmp_path):
    """R4: `systemctl reload` reports the agent's refusal of a broken config.toml; the running configuration
    stays in service, in the same process. The restored file reloads."""
    config = operator.machine.read(f"{CONFIG_DIR}/config.toml")
    pid = operator.main_pid()
    before = over_imds(tmp_path, "web")["AccessKeyId"]
    write_config(operator, config.replace("session_duration = 3600", "session_duration = 10", 1))
    try:
        reload = operator.systemctl("reload", SERVICE, check=False)
        assert reload.returncode != 0, f"systemctl reload succeeded on a refused configuration:\n{operator.journal()}"
        # The agent says RELOADING=1 and READY=1 around its reload; systemd may read them after the reload
        # command's exit, so the unit can show "reloading" for a moment after systemctl returns.
        operator.wait_active("the service to be active again after the refused reload", timeout=10)
        assert operator.main_pid() == pid
        assert over_imds(tmp_path, "web")["AccessKeyId"] == before
    finally:
        write_config(operator, config)
    reload = operator.systemctl("reload", SERVICE, check=False)
    assert reload.returncode == 0, f"systemctl reload of the restored configuration failed:\n{operator.journal()}"
    assert operator.main_pid() == pid
    wait_serving(operator)


def healthz_probe():
    status, _, _ = http_call(HEALTH_PORT, "GET", "/healthz")
    return status == 200


def imds_probe(profile):
    def probe():
        status, document = imds_credentials(IMDS_PORTS[profile])
        return status == 200 and document.get("Code") == "Success"
    return probe


@independent
def test_restart_refuses_no_connection(operator):
    """R10: /healthz and both IMDS addresses probed without pause across `systemctl restart`: the sockets the
    agent bound itself (batch's IMDS, health) outlive the process in the file-descriptor store, as the socket
    units' do, so no probe is refused and none fails."""
    pid = operator.main_pid()
    pollers = [Poller(healthz_probe, interval=0.01), Poller(imds_probe("web"), interval=0.01),
               Poller(imds_probe("batch"), interval=0.01)]
    for poller in pollers:
        poller.__enter__()
    try:
        for poller in pollers:
            poller.wait_for_answers(5, timeout=30)
        operator.systemctl("restart", SERVICE)
        wait_until(lambda: operator.main_pid() not in (0, pid), START_TIMEOUT, what="a new main process")
        operator.wait_active()
        counts = [len(p.results) for p in pollers]
        for poller, count in zip(pollers, counts):
            poller.wait_for_answers(count + 20, timeout=30)
    finally:
        for poller in pollers:
            poller.__exit__(None, None, None)
    report = {name: (len(p.results), p.failures[:5]) for name, p in zip(("healthz", "imds web", "imds batch"),
                                                                       pollers)}
    refused = {name: [f for f in failures if "ConnectionRefused" in f[1]] for name, (_, failures) in report.items()}
    operator.forget_starts()
    assert not any(refused.values()), f"connections refused during the restart: {report}"
    assert not any(p.failures for p in pollers), f"failed probes during the restart: {report}"


# --- renew, a key others can read, upgrade ----------------------------------------------------------------------


def test_renew(operator, emulator, tmp_path):
    """The README's renewal: each rename restarts the agent (rolesanywhere-agent-renew.path), which ends up
    holding the new certificate in every profile and signs a CreateSession with it at once, with no refresh
    asked for: within 60 s of the renewal each profile's call carries the new certificate's serial."""
    serials = json.loads((pki_dir() / "serials.json").read_text())
    before = {p["name"]: p["certificate"]["serial"] for p in operator.status_json()["profiles"]}
    assert set(before.values()) == {serials["p256"]}, before
    requests = emulator.stats()["requests"]
    operator.block("renew")

    def renewed():
        try:
            profiles = operator.status_json()["profiles"]
        except AssertionError:
            return None
        return all(p.get("certificate", {}).get("serial") == serials["p384"] for p in profiles) and profiles
    try:
        wait_until(renewed, START_TIMEOUT, interval=0.3, what="every profile to hold the renewed certificate")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{operator.journal(lines=40)}\n"
                             f"{operator.journal('rolesanywhere-agent-renew.service', lines=20)}") from None
    operator.wait_active()

    def signed_with_the_renewed_certificate():
        # The profiles share their ARNs here, so the journal tells whose call each was.
        recorded = emulator.stats()["recorded"][requests:]
        calls = [r for r in recorded if r.get("outcome") == "accepted" and r.get("serial") == serials["p384"]]
        journal = operator.journal(lines=200)
        rotated = {name for name in before
                   if re.search(rf"event=refresh_ok profile={name} reason=rotation\b", journal)}
        return len(calls) >= len(before) and rotated == set(before) and calls
    try:
        wait_until(signed_with_the_renewed_certificate, 60, interval=0.5,
                   what="a CreateSession signed with the renewed certificate for every profile")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{operator.journal(lines=40)}") from None
    served_by_each_profile(tmp_path, operator, emulator)


@independent
def test_a_key_others_can_read_is_refused_under_systemd_too(operator, tmp_path):
    """R5, R12: a key in /etc that others may read, passed by LoadCredential= (whose copy is 0400), is refused as
    it is with a plain path: nothing is signed with it, the failure shows in status with a message naming the
    source and the copy; the other profile serves on. (Credentials the profile held before the restart, issued
    with its previous key, stay in service until they run out, as after any failed renewal.)"""
    machine = operator.machine
    pki = pki_dir()
    config = machine.read(f"{CONFIG_DIR}/config.toml")
    held_before = {p["name"]: p.get("access_key_id") for p in operator.status_json()["profiles"]}
    operator.put(f"{CONFIG_DIR}/batch.pem", (pki / "rsa2048.pem").read_text(), mode=0o644)
    operator.put(f"{CONFIG_DIR}/batch.key", (pki / "rsa2048.key").read_text(), mode=0o644)
    dropin = "/etc/systemd/system/rolesanywhere-agent.service.d/batch.conf"
    operator.put(dropin, f"[Service]\nLoadCredential=batch.pem:{CONFIG_DIR}/batch.pem\n"
                         f"LoadCredential=batch.key:{CONFIG_DIR}/batch.key\n")
    batch = config.index("[profiles.batch]")
    write_config(operator, config[:batch] + config[batch:].replace("credential:agent.", "credential:batch."))
    operator.systemctl("daemon-reload")
    operator.systemctl("restart", SERVICE)
    operator.wait_active()
    try:
        # The unit's pre-start check recorded each LoadCredential= source, and refused batch.key's.
        record = machine.run("sh", "-c", f"stat -c '%U %a' {SOURCES_RECORD} && cat {SOURCES_RECORD}").stdout
        owner, lines = record.split("\n", 1)[0], record.split("\n")[2:]
        assert owner == "root 644", record
        fields = {line.split("\t")[0]: line.split("\t") for line in lines if line}
        assert fields["agent.key"][1:3] == [f"{CONFIG_DIR}/agent.key", ""], record
        assert fields["batch.key"][1] == f"{CONFIG_DIR}/batch.key" and "0644" in fields["batch.key"][2], record
        assert fields["batch.pem"][1] == f"{CONFIG_DIR}/batch.pem", record
        # The agent refuses batch (its key), names both files, and serves web.

        def batch_failing():
            try:
                profiles = {p["name"]: p for p in operator.status_json()["profiles"]}
            except AssertionError:
                return None
            return profiles if profiles.get("web", {}).get("access_key_id") and "batch" in profiles else None
        profiles = wait_until(batch_failing, START_TIMEOUT, interval=0.3, what="web served, batch reported")
        assert profiles["batch"].get("access_key_id") in (None, held_before.get("batch")), \
            f"batch got new credentials signed with a key others may read: {profiles}"
        assert profiles["batch"].get("last_error", {}).get("code") == "unsafe_permissions", profiles["batch"]
        error = json.dumps(profiles["batch"].get("last_error", {}))
        assert f"{CONFIG_DIR}/batch.key" in error and "/run/credentials/" in error, profiles["batch"]
        over_imds(tmp_path, "web")
    finally:
        machine.run("rm", "-f", dropin, f"{CONFIG_DIR}/batch.pem", f"{CONFIG_DIR}/batch.key")
        write_config(operator, config)
        operator.systemctl("daemon-reload")
        operator.systemctl("restart", SERVICE)
    wait_serving(operator)
    operator.forget_starts()


def test_upgrade(operator, emulator):
    """The upgrade block restarts the running agent (postinst), which hands its credentials over: no probe
    fails and no CreateSession is made."""
    pid = operator.main_pid()
    requests = emulator.stats()["requests"]
    with Poller(imds_probe("web"), interval=0.02) as poller:
        poller.wait_for_answers(5, timeout=30)
        operator.block("upgrade")
        wait_until(lambda: operator.main_pid() not in (0, pid), START_TIMEOUT, what="the restarted agent")
        operator.wait_active()
        poller.wait_for_answers(len(poller.results) + 10, timeout=30)
    assert not poller.failures, poller.failures[:5]
    assert emulator.stats()["requests"] == requests, "the upgrade cost a CreateSession"


# --- uninstall, and again ---------------------------------------------------------------------------------


def ours_running(machine):
    """The processes in the machine whose command line names the agent."""
    script = 'for p in /proc/[0-9]*; do tr "\\0" " " < "$p/cmdline" 2>/dev/null; echo; done'
    return [line for line in machine.run("sh", "-c", script).stdout.splitlines() if "rolesanywhere" in line]


def assert_nothing_left(operator):
    machine = operator.machine
    assert not ours_running(machine), ours_running(machine)
    units = operator.systemctl("list-units", "--all", "--plain", "--no-legend", "rolesanywhere*").stdout
    assert units.strip() == "", f"units still loaded after the purge:\n{units}"
    leftovers = machine.run("sh", "-c", "ls -d /run/rolesanywhere-agent /run/private/rolesanywhere-agent "
                            "/lib/systemd/system/rolesanywhere* /usr/lib/systemd/system/rolesanywhere* "
                            "/etc/systemd/system/*.wants/rolesanywhere* /usr/bin/rolesanywhere-agent "
                            "/usr/libexec/rolesanywhere-agent /usr/share/doc/rolesanywhere-agent 2>/dev/null",
                            check=False).stdout
    assert leftovers.strip() == "", f"left on disk after the purge:\n{leftovers}"
    # What stays is the administrator's: the files the operator put into /etc/rolesanywhere-agent.
    kept = sorted(machine.run("ls", "-A", CONFIG_DIR).stdout.split())
    assert kept == sorted(["agent.key", "agent.pem", "config.toml", CA_BUNDLE.rsplit("/", 1)[1]]), kept
    assert not machine.run("dpkg-query", "-W", "rolesanywhere-agent", check=False).stdout.strip()
    assert not any(listening(port) for port in SHIPPED_PORTS.values())


def test_uninstall_leaves_nothing_of_ours(operator):
    """R9: after the purge nothing of the package runs, is loaded, listens, or is on disk, but the admin's files."""
    operator.block("uninstall")
    assert_nothing_left(operator)


def test_installed_again_after_a_purge_it_starts(operator, emulator, tmp_path):
    """B1: the same blocks again on the purged machine (the admin's config.toml and keys kept) bring the agent up:
    nothing the first installation left stops it."""
    operator.block("install")
    operator.block("start")
    wait_serving(operator)
    served_by_each_profile(tmp_path, operator, emulator)
    operator.block("uninstall")
    assert_nothing_left(operator)
