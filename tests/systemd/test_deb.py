"""The Debian package, built once by `cpack -G DEB` (tests/support/build-deb; under CTest the fixture test
package_deb): its metadata and contents, then (as root) `dpkg -i`, the installed layout, and `dpkg -r` leaving
none of it. This test changes the host, so CTest runs it alone (RUN_SERIAL). Not being root is a failure, not a
skip: set RAD_SKIP_DEB=1 to leave this test out on purpose."""

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, UNIT_DIR

PACKAGE = "rolesanywhere-agent"
VERSION = os.environ.get("RAD_VERSION", "0.1.0")
CPACK = os.environ.get("RAD_CPACK") or shutil.which("cpack") or "cpack"
PYTHON = os.environ.get("RAD_PYTHON") or "/usr/bin/python3"
# Where tests/support/build-deb puts the package (CTest: the fixture test package_deb).
DEB_DIR = Path(os.environ.get("RAD_DEB_DIR") or BUILD / "deb")
UNITS = sorted(p.name for p in UNIT_DIR.iterdir() if p.suffix in (".service", ".socket", ".path"))
CORE = "/usr/libexec/rolesanywhere-agent/rolesanywhere-agent-core"
INSTALLED = ["/usr/bin/rolesanywhere-agent", CORE, "/etc/rolesanywhere-agent/config.toml.example",
             "/usr/share/man/man8/rolesanywhere-agent.8.gz", "/usr/share/doc/rolesanywhere-agent/README.md",
             "/usr/share/doc/rolesanywhere-agent/README.systemd.md", "/usr/share/doc/rolesanywhere-agent/copyright"] + [
                 f"/usr/share/doc/rolesanywhere-agent/copyright.{headers}"
                 for headers in ("libtomlplusplus-dev", "nlohmann-json3-dev", "libcli11-dev")] + [
                 f"/lib/systemd/system/{u}" for u in UNITS]
# dpkg's conffiles: kept when edited, kept on `dpkg -r`, removed on purge.
CONFFILES = ["/etc/rolesanywhere-agent/config.toml.example"]
# What the full program links against, and the Debian 12 package that provides each (toml++ is compiled
# in, header-only; the front executable /usr/bin/rolesanywhere-agent is a static PIE).
RUNTIME_PACKAGES = {"libssl3", "libstdc++6", "libc6", "libgcc-s1"}

pytestmark = pytest.mark.skipif(os.environ.get("RAD_SKIP_DEB") == "1", reason="RAD_SKIP_DEB=1")


def run(*command, timeout=120, check=True):
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if check:
        assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


def installed_version():
    result = run("dpkg-query", "-W", "-f=${Status} ${Version}", PACKAGE, check=False)
    return result.stdout if result.returncode == 0 and "installed" in result.stdout.split() else None


@pytest.fixture(scope="module")
def deb():
    arch = run("dpkg", "--print-architecture").stdout.strip()
    path = DEB_DIR / f"{PACKAGE}_{VERSION}_{arch}.deb"
    if not os.environ.get("RAD_DEB_DIR"):
        # Run by hand: build it here. Under CTest the fixture test package_deb has just built it.
        run(PYTHON, str(ROOT / "tests" / "support" / "build-deb"), str(BUILD), str(DEB_DIR), CPACK, timeout=600)
    assert path.is_file(), f"no {path.name} in {DEB_DIR}: {sorted(p.name for p in DEB_DIR.glob('*.deb'))}"
    return path


def test_package_metadata(deb):
    fields = dict(re.findall(r"^ ([A-Z][A-Za-z-]+): (.*)$", run("dpkg-deb", "-I", str(deb)).stdout, re.M))
    assert fields["Package"] == PACKAGE
    assert fields["Version"] == VERSION
    assert fields["Section"] == "admin"
    assert fields["Maintainer"]
    assert fields["Description"].startswith("IAM Roles Anywhere")
    depends = {d.strip().split(" ")[0] for d in fields["Depends"].split(",")}
    assert RUNTIME_PACKAGES <= depends, depends


def test_package_contents(deb):
    listing = run("dpkg-deb", "-c", str(deb)).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines() if not line.startswith("d")}
    assert files == set(INSTALLED), sorted(files ^ set(INSTALLED))
    # The man page is gzipped; the units are the checked-in ones (they name /usr/bin and /etc already).
    assert "/etc/rolesanywhere-agent/config.toml" not in files


def test_dependencies_cover_what_the_binary_links(deb, tmp_path):
    run("dpkg-deb", "-x", str(deb), str(tmp_path))
    def needed(path):
        return re.findall(r"^\s*NEEDED\s+(\S+)$", run("objdump", "-p", str(path)).stdout, re.M)

    # The front needs no shared library at all; the full program's own NEEDED entries (ldd would add what
    # those libraries need in turn) must all come from declared dependencies.
    assert needed(tmp_path / "usr/bin/rolesanywhere-agent") == []
    core = tmp_path / CORE.lstrip("/")
    libraries = needed(core)
    assert "libssl.so.3" in libraries and "libtomlplusplus.so.3" not in libraries, libraries
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", run("ldd", str(core)).stdout, re.M))
    providers = set()
    for library in libraries:
        # Merged /usr: dpkg knows each file under the one path its package ships it at.
        path = resolved[library]
        query = run("dpkg", "-S", path, check=False)
        if query.returncode != 0 and not path.startswith("/usr/"):
            query = run("dpkg", "-S", "/usr" + path)
        providers.add(query.stdout.split(":")[0])
    fields = run("dpkg-deb", "-f", str(deb), "Depends").stdout
    depends = {d.strip().split(" ")[0] for d in fields.split(",")}
    assert providers <= depends, providers - depends


def test_install_and_remove(deb):
    assert os.geteuid() == 0, "dpkg -i needs root (set RAD_SKIP_DEB=1 to leave this test out)"
    assert installed_version() is None, f"{PACKAGE} is already installed; not touching it"
    user_config = Path("/etc/rolesanywhere-agent/config.toml")
    assert not user_config.exists(), f"{user_config} exists; not touching this host"
    try:
        run("dpkg", "-i", str(deb), timeout=300)
        assert installed_version() is not None
        for path in INSTALLED:
            assert Path(path).is_file(), path
        version = run("/usr/bin/rolesanywhere-agent", "version").stdout
        assert version.strip().endswith(VERSION), version
        for unit in UNITS:
            assert Path(f"/lib/systemd/system/{unit}").read_text() == (UNIT_DIR / unit).read_text(), unit
        assert oct(Path("/etc/rolesanywhere-agent/config.toml.example").stat().st_mode & 0o777) == "0o644"
        if shutil.which("man"):
            page = run("man", "-l", "/usr/share/man/man8/rolesanywhere-agent.8.gz").stdout
            assert "EXIT STATUS" in page and "SEE ALSO" in page, page[:400]
        # A user's config.toml survives removal: dpkg never owned it.
        user_config.write_text("# the administrator's\n")
    finally:
        removal = run("dpkg", "-r", PACKAGE, timeout=300, check=False)
    assert removal.returncode == 0, removal.stdout + removal.stderr
    assert installed_version() is None
    for path in INSTALLED:
        assert Path(path).exists() == (path in CONFFILES), path  # conffiles stay until purge
    assert user_config.read_text() == "# the administrator's\n"
    # The maintainer scripts and the conffiles keep the package known ("rc") until it is purged.
    run("dpkg", "--purge", PACKAGE, timeout=300)
    assert run("dpkg-query", "-W", PACKAGE, check=False).returncode != 0
    for path in CONFFILES:
        assert not Path(path).exists(), path
    assert user_config.read_text() == "# the administrator's\n"
    user_config.unlink()
    Path("/etc/rolesanywhere-agent").rmdir()


def test_example_configuration_is_a_conffile(deb):
    info = run("dpkg-deb", "-I", str(deb)).stdout
    assert re.search(r"^\s+\d+ bytes,\s+\d+ lines\s+conffiles\s*$", info, re.M), info
    assert run("dpkg-deb", "-I", str(deb), "conffiles").stdout.splitlines() == CONFFILES
    listing = run("dpkg-deb", "-c", str(deb)).stdout
    for path in CONFFILES:
        assert re.search(rf"^-\S+ \S+ +\d+ .* \.{re.escape(path)}$", listing, re.M), (path, listing)


ENABLE_LINKS = {Path("/etc/systemd/system/multi-user.target.wants/rolesanywhere-agent.service"):
                "rolesanywhere-agent.service",
                Path("/etc/systemd/system/sockets.target.wants/rolesanywhere-agent.socket"):
                "rolesanywhere-agent.socket"}


def upgraded_package(deb, directory):
    """The same package as version VERSION+1, its files unchanged: what a point release looks like to dpkg."""
    tree = directory / "tree"
    run("dpkg-deb", "-R", str(deb), str(tree))
    control = tree / "DEBIAN" / "control"
    control.write_text(re.sub(r"^Version: .*$", f"Version: {VERSION}+1", control.read_text(), flags=re.M))
    upgraded = directory / f"{PACKAGE}_{VERSION}+1.deb"
    run("dpkg-deb", "--root-owner-group", "-b", str(tree), str(upgraded))
    return upgraded


def test_edited_example_survives_an_upgrade_without_a_prompt_until_purge(deb, tmp_path):
    assert os.geteuid() == 0, "dpkg -i needs root (set RAD_SKIP_DEB=1 to leave this test out)"
    assert installed_version() is None, f"{PACKAGE} is already installed; not touching it"
    assert not Path("/etc/rolesanywhere-agent").exists(), "/etc/rolesanywhere-agent exists; not touching this host"
    assert not any(link.is_symlink() for link in ENABLE_LINKS), "the agent is enabled here; not touching this host"
    example = Path(CONFFILES[0])
    upgraded = upgraded_package(deb, tmp_path)
    edited = "# the administrator's notes\n"
    made_directories = []
    try:
        run("dpkg", "-i", str(deb), timeout=300)
        # dpkg's database holds it as a conffile, with the packaged file's checksum.
        assert run("dpkg-query", "--control-show", PACKAGE, "conffiles").stdout.splitlines() == CONFFILES
        recorded = run("dpkg-query", "-W", "-f=${Conffiles}\n", PACKAGE).stdout.split()
        assert recorded[:2] == [CONFFILES[0], hashlib.md5(example.read_bytes()).hexdigest()], recorded
        example.write_text(edited)
        # Policy: a conffile edited locally and unchanged in the package is kept, and dpkg does not ask (with
        # standard input at /dev/null a question would fail the upgrade).
        upgrade = run("dpkg", "-i", str(upgraded), timeout=300)
        assert installed_version().endswith(f"{VERSION}+1"), installed_version()
        assert example.read_text() == edited
        assert "Configuration file" not in upgrade.stdout + upgrade.stderr, upgrade.stdout + upgrade.stderr
        assert not list(example.parent.glob("config.toml.example.dpkg-*")), list(example.parent.iterdir())
        # What `systemctl enable` leaves: kept on remove (a reinstall comes back enabled), gone on purge.
        for link, unit in ENABLE_LINKS.items():
            if not link.parent.exists():
                link.parent.mkdir(parents=True)
                made_directories.append(link.parent)
            link.symlink_to(f"/lib/systemd/system/{unit}")
        run("dpkg", "-r", PACKAGE, timeout=300)
        assert example.read_text() == edited
        assert all(link.is_symlink() for link in ENABLE_LINKS), ENABLE_LINKS
    finally:
        purge = run("dpkg", "--purge", PACKAGE, timeout=300, check=False)
        for link in ENABLE_LINKS:
            if link.is_symlink():
                link.unlink()
        for directory in made_directories:
            directory.rmdir()
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert not example.exists()
    assert not Path("/etc/rolesanywhere-agent").exists()
    assert not any(link.is_symlink() for link in ENABLE_LINKS)


def test_copyright_file_is_machine_readable_and_names_what_is_compiled_in(deb, tmp_path):
    run("dpkg-deb", "-x", str(deb), str(tmp_path))
    doc = tmp_path / "usr/share/doc/rolesanywhere-agent"
    text = (doc / "copyright").read_text()
    assert text.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"), text
    assert re.search(r"^Files: \*$", text, re.M) and re.search(r"^License: \S+", text, re.M), text
    for headers in ("libtomlplusplus-dev", "nlohmann-json3-dev", "libcli11-dev"):
        assert f"copyright.{headers}" in text
        assert (doc / f"copyright.{headers}").read_text() == Path(f"/usr/share/doc/{headers}/copyright").read_text()
