"""Fixtures of the container label (tests/README.md, "Container label"): the images built by the CTest fixture
container_images, a working directory every user may traverse (the agent runs as uid 65532), and the session's
emulator reset for each module."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import container_support


@pytest.fixture(scope="session")
def images():
    return container_support.images()


@pytest.fixture(scope="module")
def workdir():
    directory = Path(tempfile.mkdtemp(prefix="rad-container-", dir="/tmp"))
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def module_emulator(emulator):
    emulator.reset()
    return emulator
