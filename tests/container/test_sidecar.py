"""The sidecar manifests of deploy/kubernetes, run for real with `podman kube play` (podman 4.3, runc).

podman 4.3 has no native sidecars (it refuses probes on init containers, and would wait for the agent to exit
before starting the application), so the pod played is sidecar-before-1.29.yaml; sidecar.yaml is checked to be
that very pod with the agent moved into initContainers with restartPolicy Always, and nothing else changed. The
pod runs in a network namespace of its own, the emulator reached through a relay inside it; its Secret is a
directory laid out as the kubelet lays it out with fsGroup (podman applies runAsUser and runAsGroup, not
fsGroup). The application is the test client (client.py) with Debian's botocore, behind the manifest's own
command, which sets AWS_CONTAINER_AUTHORIZATION_TOKEN from the token file for botocore 1.29. What podman
changes and what it cannot show: tests/README.md, "Container label"."""

import json
import os
import re
import stat
import time
from pathlib import Path

import pytest
from cryptography import x509

from radtest.clients import same_credentials
from radtest.emulator import last_issued
from radtest.environment import wait_until

from container_support import (AGENT_GID, AGENT_UID, HERE, NetworkNamespace, PlayedPod, Relay, SecretVolume,
                               container_state, emulator_ca, failures, identity_files, load_manifest,
                               playable_pod, podman)

STARTUP_TIMEOUT = 90
ROTATION_DEADLINE = 60
# How long the kubelet gives a pod to stop (the manifests' terminationGracePeriodSeconds).
GRACE_PERIOD = 30
# The application waits for the token file before the manifest's command runs: on 1.29 and later the
# startupProbe of the native sidecar holds the application back until the agent is ready.
WAIT_FOR_TOKEN = 'until [ -s "$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" ]; do sleep 0.05; done; exec "$@"'


def pod_spec(documents):
    return documents[1]["spec"]["template"]["spec"]


def test_the_native_sidecar_is_the_older_pod_with_the_agent_as_an_init_container():
    native, older = load_manifest("sidecar.yaml"), load_manifest("sidecar-before-1.29.yaml")
    assert native[0] == older[0]  # the ConfigMap
    native_spec, older_spec = pod_spec(native), pod_spec(older)
    (agent,) = native_spec.pop("initContainers")
    assert agent.pop("restartPolicy") == "Always"
    assert older_spec["containers"][0] == agent and older_spec["containers"][0]["name"] == "rolesanywhere-agent"
    older_spec["containers"].pop(0)
    assert native_spec == older_spec
    assert native[1] == older[1]


def test_the_manifests_settings_fit_together():
    config_map, deployment = load_manifest("sidecar.yaml")
    config = config_map["data"]["config.toml"]
    spec = pod_spec(load_manifest("sidecar.yaml"))
    (agent,), (app,) = spec["initContainers"], spec["containers"]
    # The key readable by the agent alone: its user and group, fsGroup its group, the Secret 0440.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"],
            spec["securityContext"]["fsGroup"]) == (AGENT_UID, AGENT_GID, AGENT_GID)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    tls = volumes["agent-tls"]["secret"]
    assert tls["defaultMode"] == 0o440
    assert f'certificate = "{mounts["agent-tls"]["mountPath"]}/tls.crt"' in config
    assert f'private_key = "{mounts["agent-tls"]["mountPath"]}/tls.key"' in config
    certificate = load_manifest("certificate.yaml")[0]
    assert certificate["kind"] == "Certificate" and certificate["spec"]["secretName"] == tls["secretName"]
    assert "digital signature" in certificate["spec"]["usages"]
    # The token in a memory-backed emptyDir that both mount; the key in the agent's container only.
    assert volumes["agent-token"]["emptyDir"]["medium"] == "Memory"
    token_file = re.search(r'^ecs_token_file = "(.*)"$', config, re.M)[1]
    assert Path(token_file).parent == Path(mounts["agent-token"]["mountPath"])
    app_mounts = {m["name"]: m for m in app["volumeMounts"]}
    assert set(app_mounts) == {"agent-token"} and app_mounts["agent-token"]["readOnly"] is True
    assert Path(token_file).parent == Path(app_mounts["agent-token"]["mountPath"])
    # The application's variables name the agent's endpoint and token file.
    env = {e["name"]: e["value"] for e in app["env"]}
    listen = re.search(r'^ecs_listen = "(.*)"$', config, re.M)[1]
    path = re.search(r'^ecs_path = "(.*)"$', config, re.M)[1]
    assert listen.startswith("127.0.0.1:")
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == f"http://{listen}{path}"
    assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == token_file
    # The probes ask the health listener: startup and readiness for /readyz (credentials to serve), liveness
    # for /livez (the process answers), never /healthz, whose 503 during an outage of the service would take the
    # pod out of service or restart it while the credentials it holds are still good.
    health_port = int(re.search(r'^health_listen = "0\.0\.0\.0:(\d+)"$', config, re.M)[1])
    assert {p["name"]: p["containerPort"] for p in agent["ports"]} == {"health": health_port}
    for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        assert agent[probe]["httpGet"] == {"path": path, "port": "health"}, probe
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.fixture(scope="module")
def pod(images, module_emulator, pki, workdir):
    """sidecar-before-1.29.yaml played in a network namespace of its own, the client as its application."""
    name = f"container-sidecar-{os.getpid()}"
    netns = NetworkNamespace(name)
    relay = played = None
    try:
        relay = Relay(netns.path, module_emulator.port)
        volume = SecretVolume(workdir / "tls", identity_files(pki, "p256"))
        results = workdir / "results"
        results.mkdir()
        os.chown(results, AGENT_UID, AGENT_GID)
        documents, volumes = playable_pod(load_manifest("sidecar-before-1.29.yaml"), name, images["agent"],
                                          {"web-rolesanywhere-tls": volume.root},
                                          emulator_ca(module_emulator, workdir), module_emulator, relay.port)
        spec = documents[1]["spec"]
        app = spec["containers"][1]
        app["image"] = images["client"]
        app["command"] = ["/bin/sh", "-c", WAIT_FOR_TOKEN, "wait-for-token", *app["command"]]
        app["args"] = ["/usr/bin/python3", "/client/client.py", "/results"]
        app["env"] += [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]
        app["volumeMounts"] += [{"name": f"{name}-usr", "mountPath": "/usr", "readOnly": True},
                                {"name": f"{name}-client", "mountPath": "/client", "readOnly": True},
                                {"name": f"{name}-results", "mountPath": "/results"}]
        spec["volumes"] += [{"name": f"{name}-usr", "hostPath": {"path": "/usr", "type": "Directory"}},
                            {"name": f"{name}-client", "hostPath": {"path": str(HERE), "type": "Directory"}},
                            {"name": f"{name}-results", "hostPath": {"path": str(results), "type": "Directory"}}]
        played = PlayedPod(documents, volumes, workdir, netns)
        played.volume, played.results, played.relay = volume, results, relay
        yield played
    finally:
        if played is not None:
            print(f"\n--- agent's log ---\n{played.logs('rolesanywhere-agent')[-4000:]}"
                  f"\n--- client's log ---\n{played.logs('web')[-2000:]}")
            played.down()
        if relay is not None:
            relay.close()
        netns.close()


def polls(pod):
    path = pod.results / "polls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for_client(pod, predicate, timeout, what):
    """wait_until, failing at once, with the logs, if the client container has exited."""
    def check():
        value = predicate()
        if not value and container_state(pod.container("web"))["Status"] == "exited":
            raise AssertionError(f"the client exited while waiting for {what}: {pod.logs('web')[-2000:]}")
        return value
    return wait_until(check, timeout=timeout, interval=0.1, what=what)


def test_the_application_gets_credentials_from_the_sidecar(pod, module_emulator):
    wait_for_client(pod, lambda: (pod.results / "botocore.json").exists(), STARTUP_TIMEOUT,
                    "botocore's credentials")
    got = json.loads((pod.results / "botocore.json").read_text())
    assert got["method"] == "container-role"
    assert same_credentials(last_issued(module_emulator), got["access_key"], got["secret_key"], got["token"])
    assert module_emulator.stats()["requests"] == 1
    # The file clients read the token from: in the memory-backed emptyDir, made by the agent, its user's alone.
    mountpoint = podman("volume", "inspect", "--format", "{{.Mountpoint}}", f"{pod.name}-agent-token").stdout
    token = Path(mountpoint.strip()) / "web.token"
    assert (token.stat().st_uid, stat.S_IMODE(token.stat().st_mode)) == (AGENT_UID, 0o400)
    wait_for_client(pod, lambda: polls(pod), 10, "the first poll through the token file")
    assert polls(pod)[0]["key"] == got["access_key"], polls(pod)[0]
    # The agent's process: the image's user and group, and the probes' paths on the pod's address.
    status = Path(f"/proc/{pod.pid('rolesanywhere-agent')}/status").read_text()
    assert re.search(rf"^Uid:\s+{AGENT_UID}\s+{AGENT_UID}\s", status, re.M), status
    assert re.search(rf"^Gid:\s+{AGENT_GID}\s+{AGENT_GID}\s", status, re.M), status
    for path in ("/readyz", "/livez", "/healthz"):
        status, body = pod.netns.http_get(9913, path)
        assert status == 200, (path, body)
    # `kubectl exec … -- rolesanywhere-agent status --socket …`, as README.md says.
    socket_path = re.search(r'^socket_path = "(.*)"$', load_manifest("sidecar.yaml")[0]["data"]["config.toml"],
                            re.M)[1]
    shown = podman("exec", pod.container("rolesanywhere-agent"), "rolesanywhere-agent", "status", "--socket",
                   socket_path)
    assert re.search(r"\bweb\b", shown.stdout) and got["access_key"][-4:] in shown.stdout, shown.stdout
    assert "unsafe_permissions" not in pod.logs("rolesanywhere-agent")


def test_a_renewed_secret_is_used_within_60_s_while_the_application_polls(pod, pki, module_emulator):
    wait_for_client(pod, lambda: polls(pod), STARTUP_TIMEOUT, "the client's polls")
    renewed = identity_files(pki, "p384")
    serial = str(x509.load_pem_x509_certificate(renewed["tls.crt"]).serial_number)
    updated_at = time.time()
    pod.volume.update(renewed)
    try:
        wait_until(lambda: any(r.get("serial") == serial and r.get("outcome") == "accepted"
                               for r in module_emulator.stats()["recorded"]),
                   timeout=ROTATION_DEADLINE, interval=0.2,
                   what=f"a CreateSession signed by the renewed certificate (serial {serial})")
        print(f"\nrenewed certificate used {time.time() - updated_at:.1f} s after the kubelet's update")
    finally:
        failed = failures(polls(pod), since=updated_at)
        print(f"{len([p for p in polls(pod) if p['start'] >= updated_at])} requests since the update, "
              f"{len(failed)} failed")
    assert not failed, failed[:5]


def test_sigterm_ends_the_agent_with_0_within_the_grace_period_and_the_application_with_it(pod):
    wait_for_client(pod, lambda: len(polls(pod)) >= 5, STARTUP_TIMEOUT, "five polls")
    signalled = time.time()
    podman("stop", "--time", GRACE_PERIOD, pod.container("rolesanywhere-agent"), timeout=GRACE_PERIOD + 30)
    took = time.time() - signalled
    agent = container_state(pod.container("rolesanywhere-agent"))
    assert agent["ExitCode"] == 0 and not agent["OOMKilled"], agent
    assert took < GRACE_PERIOD, took
    # Every request the application made before the SIGTERM got credentials; none failed all along.
    before = [p for p in polls(pod) if p["start"] < signalled]
    assert len(before) >= 5 and not failures(before), failures(before)[:5]
    # The application then stops (on 1.29 and later it would have stopped first) and exits 0 too.
    (pod.results / "stop").touch()
    wait_until(lambda: container_state(pod.container("web"))["Status"] == "exited", timeout=30,
               what="the client's exit")
    assert container_state(pod.container("web"))["ExitCode"] == 0
    print(f"\nagent: exit 0 {took:.2f} s after SIGTERM; {len(before)} requests before it, all served")
