"""What the container label's tests share: podman run with this suite's containers.conf, the images, network
namespaces and a relay that makes the emulator reachable inside one, a directory laid out as the kubelet lays
out a Secret volume, the shipped manifests turned into what podman 4.3 plays, and the record of everything
started, which tests/container/cleanup ends if a run is cut short."""

import contextlib
import ctypes
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import yaml

from radtest.clients import http_call
from radtest.environment import ROOT

HERE = Path(__file__).resolve().parent
BUILD_DIR = Path(os.environ.get("RAD_BUILD_DIR") or ROOT / "build")
WORK_DIR = BUILD_DIR / "container"
STATE_FILE = WORK_DIR / "state.json"
IMAGES_FILE = WORK_DIR / "images.json"
CONTAINERS_CONF = HERE / "containers.conf"
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The image's user and group (scripts/build-image), which the manifests also set.
AGENT_UID = AGENT_GID = 65532
PODMAN_TIMEOUT = 120


# --- podman ---------------------------------------------------------------------------------------------------


def podman(*args, netns=None, check=True, timeout=PODMAN_TIMEOUT):
    """Run podman with this suite's containers.conf (runc, ulimits a container may have here); in the network
    namespace at `netns` (a pod with hostNetwork then joins it). Returns the CompletedProcess."""
    command = ["podman", *map(str, args)]
    if netns is not None:
        command = ["nsenter", f"--net={netns}", *command]
    env = dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF))
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def images():
    """{"agent": image id, "client": image id}, as tests/container/build-images recorded them."""
    if not IMAGES_FILE.exists():
        raise AssertionError(f"{IMAGES_FILE} is missing: run tests/container/build-images (the CTest fixture "
                             "container_images) first")
    return json.loads(IMAGES_FILE.read_text())


def container_state(name):
    """podman's State of a container: Status, ExitCode, StartedAt, FinishedAt..."""
    return json.loads(podman("inspect", "--type", "container", "--format", "{{json .State}}", name).stdout)


# --- what a run leaves behind ------------------------------------------------------------------------------


def _state():
    return json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}


def record(kind, name):
    """Note that a pod, volume or network namespace `name` exists until forget(kind, name)."""
    state = _state()
    state.setdefault(kind, [])
    if name not in state[kind]:
        state[kind].append(name)
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state))


def forget(kind, name):
    state = _state()
    if name in state.get(kind, []):
        state[kind].remove(name)
        STATE_FILE.write_text(json.dumps(state))


# --- network namespaces -----------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def entered(netns):
    """The calling thread inside the network namespace at path `netns`, then back in its own: a socket made
    meanwhile belongs to that namespace for good. Start no thread inside."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


def run(*command, check=True, timeout=30, **arguments):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, **arguments)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, command))} failed ({result.returncode}): {result.stderr}")
    return result


class NetworkNamespace:
    """A network namespace of its own (`ip netns add`), loopback up: a pod's network, or a node's."""

    def __init__(self, name):
        if os.geteuid() != 0:
            raise AssertionError("the container label runs as root (podman, network namespaces)")
        self.name = name
        self.path = f"/run/netns/{name}"
        run("ip", "netns", "add", name)
        record("netns", name)
        run("ip", "-n", name, "link", "set", "lo", "up")

    def run(self, *command, **arguments):
        return run("nsenter", f"--net={self.path}", *command, **arguments)

    def http_get(self, port, path, host="127.0.0.1", headers=None, timeout=5):
        """GET http://host:port/path from inside the namespace: (status, body)."""
        with entered(self.path):
            sock = socket.create_connection((host, port), timeout=timeout)
        with sock:
            lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    def close(self):
        run("ip", "netns", "del", self.name, check=False)
        forget("netns", self.name)


class Relay:
    """Listens on 127.0.0.1:PORT inside a network namespace and relays each connection to 127.0.0.1:target on
    this host: how an agent in a pod's namespace reaches the emulator, which listens on the host's loopback."""

    def __init__(self, netns, target_port, port=0):
        self.target_port = target_port
        with entered(netns):
            self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                inside, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                outside = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                inside.close()
                continue
            for a, b in ((inside, outside), (outside, inside)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        source.settimeout(None)
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        self.listener.close()


# --- a Secret volume as the kubelet lays it out ------------------------------------------------------------


class SecretVolume:
    """A directory laid out as the kubelet lays out a Secret volume with defaultMode 0440 and an fsGroup: the
    volume's root (a tmpfs root, 1777, to which fsGroup adds its group and setgid: 3777 root:GID), the files in
    a timestamped directory (0755, 2755 with fsGroup) root-owned, group GID, mode 0440 (defaultMode, plus the
    group read fsGroup adds), `..data` a link to that directory and one link NAME -> ..data/NAME per file.
    update() is the kubelet's atomic update: a new timestamped directory, a new `..data` link renamed over the
    old one, links for new names, the old directory removed."""

    def __init__(self, root, files, gid=AGENT_GID, mode=0o440):
        self.root = Path(root)
        self.gid = gid
        self.mode = mode
        self.root.mkdir()
        os.chown(self.root, 0, gid)
        os.chmod(self.root, 0o3777)
        self.current = None
        self.update(files)

    def update(self, files):
        now = time.time_ns()
        name = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime(now // 10**9)) + f"{now % 10**9:09d}"
        directory = self.root / name
        directory.mkdir()
        os.chown(directory, 0, self.gid)
        os.chmod(directory, 0o2755)
        for file, data in files.items():
            path = directory / file
            path.write_bytes(data)
            os.chown(path, 0, self.gid)
            os.chmod(path, self.mode)
        temporary = self.root / "..data_tmp"
        temporary.symlink_to(name)
        os.replace(temporary, self.root / "..data")
        for file in files:
            link = self.root / file
            if not link.is_symlink():
                link.symlink_to(f"..data/{file}")
        if self.current is not None:
            shutil.rmtree(self.root / self.current)
        self.current = name


def identity_files(pki, leaf):
    """tls.crt and tls.key of a kubernetes.io/tls Secret as cert-manager's CA issuer writes them: the leaf, then
    the CA that issued it."""
    return {"tls.crt": (pki / f"{leaf}.pem").read_bytes() + (pki / "root-ca.pem").read_bytes(),
            "tls.key": (pki / f"{leaf}.key").read_bytes()}


# --- the shipped manifests, played by podman 4.3 ----------------------------------------------------------


def load_manifest(name):
    return list(yaml.safe_load_all((MANIFESTS / name).read_text()))


def with_emulator(config_text, emulator, relay_port, ca_path):
    """The ConfigMap's config.toml pointed at the emulator (through the relay) instead of AWS."""
    text = config_text
    for key in ("trust_anchor_arn", "profile_arn", "role_arn"):
        text, count = re.subn(rf'^{key} = ".*"$', f'{key} = "{emulator.arns[key]}"', text, flags=re.M)
        assert count == 1, f"{key} appears {count} times in the manifest's config.toml"
    return re.sub(r'^(role_arn = ".*")$',
                  rf'\1\nendpoint = "https://127.0.0.1:{relay_port}"\nca_bundle = "{ca_path}"', text,
                  flags=re.M)


def playable_pod(documents, name, agent_image, secret_directories, emulator_ca_directory, emulator, relay_port):
    """The manifest's ConfigMap and workload (a Deployment or DaemonSet) as podman 4.3 plays them, with what
    this machine lacks replaced, and nothing else changed:
      - the workload's pod template becomes a Pod named `name` (podman 4.3 plays no DaemonSet), restartPolicy
        Never, on the host network: podman runs in the pod's network namespace made by the test;
      - the agent's image is the one built here; config.toml points at the emulator through the relay, whose
        CA is mounted from the host;
      - each Secret volume becomes a hostPath directory laid out as the kubelet lays it out (SecretVolume), as
        podman has no fsGroup and lays out its secrets otherwise;
      - ConfigMap and emptyDir volumes, which podman makes named volumes, get names of this run;
      - the probes go: podman turns httpGet probes into `curl` run inside the container, and the image has
        neither curl nor a shell; the tests GET /healthz themselves. So do the named ports, which podman
        would publish, and cannot on the host network.
    Returns (the documents to play, the names of the volumes podman will make)."""
    config_map, workload = (dict(d) for d in documents)
    config_map["metadata"] = {"name": f"{name}-config"}
    config_map["data"] = {
        "config.toml": with_emulator(config_map["data"]["config.toml"], emulator, relay_port,
                                     "/etc/rolesanywhere-agent/emulator/ca.pem")}
    pod_spec = json.loads(json.dumps(workload["spec"]["template"]["spec"]))
    pod_spec["restartPolicy"] = "Never"
    pod_spec["hostNetwork"] = True
    volumes = []
    for volume in pod_spec["volumes"]:
        if "secret" in volume:
            directory = secret_directories[volume["secret"]["secretName"]]
            volume.pop("secret")
            volume["hostPath"] = {"path": str(directory), "type": "Directory"}
        elif "configMap" in volume:
            volume["configMap"]["name"] = config_map["metadata"]["name"]
            volumes.append(config_map["metadata"]["name"])
        elif "emptyDir" in volume:
            volumes.append(volume["name"])
    renamed = {v["name"]: f"{name}-{v['name']}" for v in pod_spec["volumes"]}
    for volume in pod_spec["volumes"]:
        volume["name"] = renamed[volume["name"]]
    volumes = [renamed.get(v, v) for v in volumes]
    pod_spec["volumes"].append({"name": f"{name}-emulator-ca",
                                "hostPath": {"path": str(emulator_ca_directory), "type": "Directory"}})
    for container in pod_spec.get("initContainers", []) + pod_spec["containers"]:
        for mount in container.get("volumeMounts", []):
            mount["name"] = renamed[mount["name"]]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            container.pop(probe, None)
        container.pop("ports", None)
        if container["name"] == "rolesanywhere-agent":
            container["image"] = agent_image
            container["volumeMounts"].append({"name": f"{name}-emulator-ca", "readOnly": True,
                                              "mountPath": "/etc/rolesanywhere-agent/emulator"})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
           "spec": pod_spec}
    return [config_map, pod], volumes


class PlayedPod:
    """A pod played with `podman kube play` inside a network namespace; down() (idempotent) takes it down with
    its volumes."""

    def __init__(self, documents, volumes, directory, netns):
        self.name = documents[-1]["metadata"]["name"]
        self.volumes = volumes
        self.netns = netns
        self.file = Path(directory) / f"{self.name}.yaml"
        self.file.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        record("pods", self.name)
        for volume in volumes:
            record("volumes", volume)
        try:
            podman("kube", "play", self.file, netns=netns.path)
        except BaseException:
            self.down()  # what a play that failed half-way made
            raise

    def container(self, name):
        """The name podman gives the container `name` of this pod."""
        return f"{self.name}-{name}"

    def pid(self, container):
        return int(podman("inspect", "--format", "{{.State.Pid}}", self.container(container)).stdout)

    def logs(self, container):
        result = podman("logs", self.container(container), check=False)
        return result.stdout + result.stderr

    def down(self):
        podman("pod", "rm", "--force", "--time", "10", self.name, check=False)
        for volume in self.volumes:
            podman("volume", "rm", "--force", volume, check=False)
            forget("volumes", volume)
        forget("pods", self.name)


# --- clients ------------------------------------------------------------------------------------------------


def emulator_ca(emulator, directory):
    """A copy of the emulator's CA, readable by the agent's user, in `directory`/emulator-ca/ca.pem."""
    target = Path(directory) / "emulator-ca"
    target.mkdir(mode=0o755)
    shutil.copyfile(emulator.ca_bundle, target / "ca.pem")
    os.chmod(target / "ca.pem", 0o644)
    return target


class Poller(threading.Thread):
    """Fetches the container endpoint as an SDK does, about 20 times a second, from its start until stop():
    records (start, end, status, AccessKeyId or error) of every request."""

    def __init__(self, port, path, token_file):
        super().__init__(daemon=True)
        self.port, self.path, self.token_file = port, path, Path(token_file)
        self.records = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            start = time.time()
            try:
                status, _, body = http_call(self.port, "GET", self.path,
                                            {"Authorization": self.token_file.read_text()})
                key = json.loads(body)["AccessKeyId"] if status == 200 else body.decode(errors="replace")[:200]
            except Exception as error:  # refused, reset, timeout: a failed request for the client
                status, key = 0, f"{type(error).__name__}: {error}"
            self.records.append({"start": start, "end": time.time(), "status": status, "key": key})
            self.stopping.wait(0.05)

    def stop(self):
        self.stopping.set()
        self.join(timeout=15)


def failures(records, since=0.0, until=float("inf")):
    """The requests that started within [since, until) and did not get credentials."""
    return [r for r in records if since <= r["start"] < until and r["status"] != 200]
