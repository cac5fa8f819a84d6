"""The units as shipped: `systemd-analyze verify` is clean, the offline security exposure of every .service stays
within its bar (1.5 for the agent, 2.0 for the reload and renew oneshots), and the sockets carry the FileDescriptorName=
values and addresses that the agent and config/example.toml use."""

import re
import subprocess
import tomllib

import pytest

from radtest.environment import AGENT

from conftest import ROOT, UNIT_DIR

UNITS = ["rolesanywhere-agent.service", "rolesanywhere-agent.socket", "rolesanywhere-agent-ecs.socket",
         "rolesanywhere-agent-fastpath.socket", "rolesanywhere-agent-reload.path",
         "rolesanywhere-agent-reload.service", "rolesanywhere-agent-renew.path", "rolesanywhere-agent-renew.service"]
MAX_EXPOSURE = 1.5
# `systemd-analyze security --offline=yes` bar of every shipped .service. The oneshots must run as root
# (PID 1's private socket accepts uid 0 only), which alone costs 0.4; everything else is taken away.
EXPOSURE_BARS = {"rolesanywhere-agent.service": MAX_EXPOSURE, "rolesanywhere-agent-reload.service": 2.0,
                 "rolesanywhere-agent-renew.service": 2.0}
# What the agent (daemon/agent/http_listeners.cpp) takes from sd_listen_fds_with_names(); an IMDS socket serves the
# profile whose imds_listen is its address.
AGENT_FD_NAMES = {"imds", "ecs", "health", "socket"}


def unit_settings(path):
    """{(section, key): [values...]} of a unit file; keys may repeat (LoadCredential=, ListenStream=)."""
    settings, section = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault((section, key.strip()), []).append(value.strip())
    return settings


@pytest.fixture
def unit_copies(tmp_path):
    """The units in a temporary directory, ExecStart= pointing at the binary under test."""
    for name in UNITS:
        text = (UNIT_DIR / name).read_text()
        (tmp_path / name).write_text(text.replace("/usr/bin/rolesanywhere-agent", str(AGENT)))
    return tmp_path


def test_every_unit_file_is_tested():
    shipped = sorted(p.name for p in UNIT_DIR.iterdir() if p.suffix in (".service", ".socket", ".path"))
    assert shipped == sorted(UNITS)


def test_verify_is_clean(unit_copies):
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *(str(unit_copies / u) for u in UNITS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def test_verify_catches_a_broken_unit(unit_copies):
    """The check above can fail: an unknown directive and a missing binary are reported."""
    service = unit_copies / "rolesanywhere-agent.service"
    service.write_text(service.read_text().replace(str(AGENT), "/nonexistent/rolesanywhere-agent")
                       .replace("[Service]", "[Service]\nProtectEverything=yes"))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(service)],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert "ProtectEverything" in output and "/nonexistent/rolesanywhere-agent" in output, output


def exposure(service_path):
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(service_path)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match[1])


def test_security_exposure(unit_copies):
    assert exposure(unit_copies / "rolesanywhere-agent.service") <= MAX_EXPOSURE


def test_every_service_has_an_exposure_bar():
    """A new .service is shipped with its bar, or this fails: none escapes the check below."""
    shipped = sorted(p.name for p in UNIT_DIR.iterdir() if p.suffix == ".service")
    assert shipped == sorted(EXPOSURE_BARS), "give each shipped .service a bar in EXPOSURE_BARS"


@pytest.mark.parametrize("service", sorted(EXPOSURE_BARS))
def test_every_service_stays_within_its_exposure_bar(unit_copies, service):
    assert exposure(unit_copies / service) <= EXPOSURE_BARS[service]


def test_reload_service_keeps_what_systemctl_needs():
    """The sandbox of the reload oneshot leaves `systemctl reload` its way to PID 1: root's uid (PID 1's private
    socket accepts only uid 0), AF_UNIX, and a system-call filter that answers EPERM instead of killing."""
    s = unit_settings(UNIT_DIR / "rolesanywhere-agent-reload.service")
    assert s[("Service", "Type")] == ["oneshot"]
    assert s[("Service", "ExecStart")] == ["/bin/systemctl reload rolesanywhere-agent.service"]
    assert ("Service", "User") not in s and ("Service", "DynamicUser") not in s
    assert ("Service", "PrivateUsers") not in s
    assert s[("Service", "RestrictAddressFamilies")] == ["AF_UNIX"]
    assert s[("Service", "CapabilityBoundingSet")] == [""]
    assert s[("Service", "SystemCallErrorNumber")] == ["EPERM"]


def test_security_exposure_measures_the_sandbox(unit_copies):
    """Without the sandbox block the same parser reads a much higher score, so the bound above means something."""
    service = unit_copies / "rolesanywhere-agent.service"
    kept = [line for line in service.read_text().splitlines()
            if not line.startswith(("Protect", "Private", "Restrict", "SystemCall", "DynamicUser", "Capability",
                                    "NoNewPrivileges", "MemoryDeny", "LockPersonality"))]
    service.write_text("\n".join(kept) + "\n")
    assert exposure(service) > 5.0


def test_service_protocol_settings():
    s = unit_settings(UNIT_DIR / "rolesanywhere-agent.service")
    assert s[("Service", "Type")] == ["notify"]
    assert s[("Service", "NotifyAccess")] == ["main"]
    assert s[("Service", "WatchdogSec")] == ["30s"]
    assert "78" in s[("Service", "RestartPreventExitStatus")][0].split()
    assert s[("Service", "ExecStart")] == [
        "/usr/bin/rolesanywhere-agent serve --config /etc/rolesanywhere-agent/config.toml"]
    assert s[("Service", "LimitCORE")] == ["0"]
    # The fast-path socket's directory is the socket unit's (root's, reachable by other users); the agent's
    # own files go to a directory below it, kept across restarts so that clients' ECS tokens stay valid.
    assert s[("Service", "RuntimeDirectory")] == ["rolesanywhere-agent/tokens"]
    assert s[("Service", "RuntimeDirectoryPreserve")] == ["yes"]
    # A restart hands the credentials over through the file-descriptor store, and the listening sockets the agent
    # bound itself (every profile's IMDS address but the socket unit's, ECS, health, the fast path): room for
    # all of them.
    assert int(s[("Service", "FileDescriptorStoreMax")][0]) >= 64
    # The privileged pre-start check of the LoadCredential= sources, which never fails the start, and its record.
    record = "/run/rolesanywhere-agent/credential-sources"
    assert s[("Service", "ExecStartPre")] == [
        f"-+/usr/bin/rolesanywhere-agent check-credential-sources --unit %n --output {record}"]
    assert s[("Service", "Environment")] == [f"ROLESANYWHERE_AGENT_CREDENTIAL_SOURCES={record}"]
    # `systemctl reload` reports the agent's answer: a refused configuration makes it fail.
    assert s[("Service", "ExecReload")] == [
        "/usr/bin/rolesanywhere-agent reload --config /etc/rolesanywhere-agent/config.toml"]


SOCKET_UNITS = ["rolesanywhere-agent.socket", "rolesanywhere-agent-ecs.socket", "rolesanywhere-agent-fastpath.socket"]


def test_the_service_brings_its_sockets():
    """However the service is started (the README's `systemctl enable --now rolesanywhere-agent.service ...`, a
    dependency), its sockets start first: the agent never has to bind the shipped addresses itself, which its
    sandbox cannot do for the fast-path socket in root's /run/rolesanywhere-agent. `enable` enables them too."""
    s = unit_settings(UNIT_DIR / "rolesanywhere-agent.service")
    wanted = " ".join(s.get(("Unit", "Wants"), []) + s.get(("Unit", "Requires"), [])).split()
    after = " ".join(s.get(("Unit", "After"), [])).split()
    also = " ".join(s.get(("Install", "Also"), [])).split()
    for socket_unit in SOCKET_UNITS:
        assert socket_unit in wanted and socket_unit in after and socket_unit in also, socket_unit


def test_fast_path_socket_admits_by_peer_credentials():
    """Any local user may connect; the agent admits root, its own user and allowed_uids/allowed_gids by
    SO_PEERCRED and refuses the others in words. The socket file goes when the unit stops (package removal)."""
    s = unit_settings(UNIT_DIR / "rolesanywhere-agent-fastpath.socket")
    assert s[("Socket", "SocketMode")] == ["0666"]
    assert s[("Socket", "RemoveOnStop")] == ["yes"]


def test_renewal_and_reload_paths():
    """Renewed certificate or key files restart the agent (their LoadCredential= copies are made at start);
    a changed configuration only reloads it (a file that does not load is then refused, not fatal)."""
    service = unit_settings(UNIT_DIR / "rolesanywhere-agent.service")
    credentials = {line.split(":", 1)[1] for line in service[("Service", "LoadCredential")]}
    renew = unit_settings(UNIT_DIR / "rolesanywhere-agent-renew.path")
    assert set(renew[("Path", "PathChanged")]) == credentials
    assert renew[("Path", "Unit")] == ["rolesanywhere-agent-renew.service"]
    assert unit_settings(UNIT_DIR / "rolesanywhere-agent-renew.service")[("Service", "ExecStart")] == [
        "/bin/systemctl try-restart --no-block rolesanywhere-agent.service"]
    reload = unit_settings(UNIT_DIR / "rolesanywhere-agent-reload.path")
    assert reload[("Path", "PathChanged")] == ["/etc/rolesanywhere-agent/config.toml"]


def test_sockets_match_the_agent_and_the_example_config():
    example = tomllib.loads((ROOT / "config" / "example.toml").read_text())
    profile = example["profiles"]["web"]
    expected = {
        "rolesanywhere-agent.socket": ("imds", profile["imds_listen"]),
        "rolesanywhere-agent-ecs.socket": ("ecs", example["agent"]["ecs_listen"]),
        "rolesanywhere-agent-fastpath.socket": ("socket", example["agent"]["socket_path"]),
    }
    for unit, (name, address) in expected.items():
        s = unit_settings(UNIT_DIR / unit)
        assert s[("Socket", "FileDescriptorName")] == [name], unit
        assert name in AGENT_FD_NAMES
        assert s[("Socket", "ListenStream")] == [address], unit
        assert s[("Socket", "Service")] == ["rolesanywhere-agent.service"], unit
        if not address.startswith("/"):
            # The kernel-level allow-list applies to the sockets this unit creates (docs/test-plan.md §6, row B9).
            assert s[("Socket", "IPAddressDeny")] == ["any"], unit
            assert s[("Socket", "IPAddressAllow")] == ["localhost"], unit
