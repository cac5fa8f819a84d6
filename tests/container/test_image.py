"""The agent's image (scripts/build-image): its size, user, entrypoint and command; no shell, no package manager,
nothing but the program, the shared objects it maps and the CA certificates; the certificates where the image's
OpenSSL looks for them; the same image ID from a second build; and what a TPM key meets in it."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from radtest.environment import AGENT, ROOT

from container_support import AGENT_GID, AGENT_UID, BUILD_DIR, CONTAINERS_CONF, podman

MAX_SIZE = 20 * 1024 * 1024
EX_UNAVAILABLE = 69
EX_CONFIG = 78
EXECUTABLES = ("usr/bin/rolesanywhere-agent", "usr/libexec/rolesanywhere-agent/rolesanywhere-agent-core")
MULTIARCH = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True, check=True).stdout.strip()


def elf_needs(path):
    """The shared objects an ELF file names (DT_NEEDED), and its program interpreter's file name, if any."""
    dynamic = subprocess.run(["readelf", "-d", "-l", path], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\(NEEDED\).*\[(.+)\]", dynamic)) | {
        Path(p).name for p in re.findall(r"Requesting program interpreter: (.+)\]", dynamic)}


@pytest.fixture(scope="module")
def image(images):
    return images["agent"]


@pytest.fixture(scope="module")
def rootfs(image):
    """The image's files, mounted read-only on the host."""
    path = Path(podman("image", "mount", image).stdout.strip())
    yield path
    podman("image", "unmount", image, check=False)


def inspect(image):
    return json.loads(podman("image", "inspect", image).stdout)[0]


def test_size_user_entrypoint_and_command(image):
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    config = inspect(image)["Config"]
    print(f"\nimage {image}: {size} bytes ({size / 2**20:.1f} MiB)")
    assert size <= MAX_SIZE
    assert config["User"] == f"{AGENT_UID}:{AGENT_GID}"
    assert config["Entrypoint"] == ["/usr/bin/rolesanywhere-agent"]
    assert config["Cmd"] == ["serve", "--config", "/etc/rolesanywhere-agent/config.toml"]
    # podman build gives every image a PATH; nothing else.
    assert [v for v in config.get("Env", []) if not v.startswith("PATH=")] == []


def test_nothing_but_the_program_its_libraries_and_the_ca_certificates(rootfs):
    elf, other = set(), []
    for path in sorted(rootfs.rglob("*")):
        relative = str(path.relative_to(rootfs))
        if path.is_symlink() or path.is_dir():
            continue
        if path.read_bytes()[:4] == b"\x7fELF":
            elf.add(relative)
        elif not re.fullmatch(r"usr/share/ca-certificates/mozilla/[^/]+\.crt|etc/ssl/certs/ca-certificates\.crt|"
                              r"usr/share/doc/[^/]+/copyright(\.[a-z0-9-]+)?|etc/(passwd|group)", relative):
            other.append(relative)
    # The executables, what they map (the loader, libc, libm, libssl, libcrypto, as the build links them), and
    # OpenSSL's legacy provider, which libcrypto loads by name; all of it there, nothing else.
    libraries = set().union(*(elf_needs(rootfs / program) for program in EXECUTABLES))
    assert {"libc.so.6", "libssl.so.3", "libcrypto.so.3"} <= libraries
    assert elf == {*EXECUTABLES, *(f"usr/lib/{MULTIARCH}/{name}" for name in libraries),
                   f"usr/lib/{MULTIARCH}/ossl-modules/legacy.so"}
    assert not other, other
    for name in ("sh", "bash", "dash", "busybox", "apt", "apt-get", "dpkg", "curl", "python3"):
        assert not list(rootfs.rglob(name)), name
    passwd = (rootfs / "etc/passwd").read_text()
    assert f":{AGENT_UID}:{AGENT_GID}:" in passwd and "/sh" not in passwd.replace("/usr/sbin/nologin", "")


def test_no_shell_to_run(image):
    result = podman("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", "true", check=False)
    assert result.returncode != 0 and "no such file" in result.stderr.lower(), result.stderr
    # The image's own command needs its configuration; the version needs nothing.
    result = podman("run", "--rm", image, check=False)
    assert result.returncode == EX_CONFIG, result
    assert "/etc/rolesanywhere-agent/config.toml" in result.stderr
    built = subprocess.run([str(AGENT), "version"], capture_output=True, text=True, check=True).stdout
    assert podman("run", "--rm", image, "version").stdout == built


def test_ca_certificates_where_openssl_looks(rootfs):
    # Debian's libcrypto reads OPENSSLDIR/certs and OPENSSLDIR/cert.pem, OPENSSLDIR being /usr/lib/ssl.
    assert os.readlink(rootfs / "usr/lib/ssl/certs") == "/etc/ssl/certs"
    assert os.readlink(rootfs / "usr/lib/ssl/cert.pem") == "/etc/ssl/certs/ca-certificates.crt"
    certificates = sorted((rootfs / "usr/share/ca-certificates/mozilla").glob("*.crt"))
    assert len(certificates) > 100
    bundle = (rootfs / "etc/ssl/certs/ca-certificates.crt").read_text()
    assert bundle.count("BEGIN CERTIFICATE") == len(certificates)
    # The hashed directory is Debian's own (update-ca-certificates on this host names each certificate of the
    # package the same way), and each root is found there by its subject hash. Roots that share a subject
    # (hash.0 and hash.1) defeat OpenSSL's lookup by name on Debian too, and are left to the first check.
    links = {link.name: os.readlink(link) for link in (rootfs / "etc/ssl/certs").glob("*.[0-9]")}
    assert len(links) == len(certificates)
    debian = {link.name: os.path.realpath(link) for link in Path("/etc/ssl/certs").glob("*.[0-9]")}
    for name, target in debian.items():
        if target.startswith("/usr/share/ca-certificates/mozilla/"):
            assert links.get(name) == target, (name, target, links.get(name))
    resolved = Path(str(rootfs) + "-hashed")
    shutil.rmtree(resolved, ignore_errors=True)
    resolved.mkdir()
    try:
        for name, target in links.items():
            shutil.copyfile(rootfs / target.lstrip("/"), resolved / name)
        alone = [rootfs / target.lstrip("/") for name, target in links.items()
                 if name.endswith(".0") and name[:-1] + "1" not in links]
        result = subprocess.run(["openssl", "verify", "-no_check_time", "-no-CAfile", "-CApath", resolved, *alone],
                                capture_output=True, text=True)
    finally:
        shutil.rmtree(resolved, ignore_errors=True)
    assert result.returncode == 0 and result.stdout.count(": OK") == len(alone) > 100, result.stderr[:2000]


def test_the_image_s_openssl_finds_a_ca_in_its_store(image, em, pki, tmp_path):
    """No ca_bundle: the emulator's CA, put in the image's /etc/ssl/certs under its hash, is found there by the
    agent's OpenSSL (through /usr/lib/ssl/certs)."""
    store = tmp_path / "certs"
    store.mkdir()
    ca_hash = subprocess.run(["openssl", "x509", "-noout", "-subject_hash", "-in", em.ca_bundle],
                             capture_output=True, text=True, check=True).stdout.strip()
    shutil.copyfile(em.ca_bundle, store / f"{ca_hash}.0")
    identity = tmp_path / "identity"
    identity.mkdir()
    for name, mode in (("p256.pem", 0o644), ("p256.key", 0o600)):
        shutil.copyfile(pki / name, identity / name)
        os.chown(identity / name, AGENT_UID, AGENT_GID)
        os.chmod(identity / name, mode)
    for directory in (tmp_path, store, identity):
        os.chmod(directory, 0o755)
    arguments = ["credential-process", "--certificate", "/identity/p256.pem", "--private-key", "/identity/p256.key",
                 "--trust-anchor-arn", em.arns["trust_anchor_arn"], "--profile-arn", em.arns["profile_arn"],
                 "--role-arn", em.arns["role_arn"], "--endpoint", em.url]
    run = ["run", "--rm", "--network", "host", "-v", f"{identity}:/identity:ro"]
    result = podman(*run, "-v", f"{store}:/etc/ssl/certs:ro", image, *arguments, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Version"] == 1
    # And without it, the emulator's throwaway CA is not trusted: the store is what decided.
    result = podman(*run, image, *arguments, check=False)
    assert result.returncode == EX_UNAVAILABLE and "certificate" in result.stderr, result.stderr


def test_a_tpm_key_says_the_image_has_no_tpm_libraries(image):
    result = podman("run", "--rm", image, "sign-string", "--private-key", "handle:0x81000002", check=False)
    assert result.returncode == EX_UNAVAILABLE, result
    assert "TPM keys need libtss2-esys.so.0" in result.stderr, result.stderr


def test_a_second_build_gives_the_same_image(image):
    env = dict(os.environ, RAD_BUILD_DIR=str(BUILD_DIR), CONTAINERS_CONF=str(CONTAINERS_CONF))
    subprocess.run(["bash", str(ROOT / "scripts" / "build-image")], check=True, env=env, capture_output=True,
                   timeout=300)
    assert (BUILD_DIR / "image" / "image-id").read_text().strip() == image
