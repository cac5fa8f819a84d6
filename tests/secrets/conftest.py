"""Fixtures for the secrets suite: the bad-input suite's conftest (tests/badinput/conftest.py: the integration
fixtures, the agent harness, the `live` agent) loaded under its own module name, plus its raw-socket client.
CTest passes RAD_AGENT_BIN, RAD_TEST_PKI, RAD_EMULATOR and RAD_PYTHON (tests/secrets/CMakeLists.txt)."""

import sys
from pathlib import Path

BADINPUT_DIR = Path(__file__).resolve().parents[1] / "badinput"
sys.path[:0] = [str(BADINPUT_DIR.parent / "integration"), str(BADINPUT_DIR)]
from suite_support import adopt  # noqa: E402

# agent_support takes AGENT and clean_environment `from conftest`, here this module: both
# are adopted from the integration conftest before the bad-input conftest (which imports agent_support) loads.
adopt(globals(), "AGENT", "PYTHON", "clean_environment")
adopt(globals(), "emulator", "em", "agent", "pki", "private_copy", "live",
      conftest=BADINPUT_DIR / "conftest.py", module_name="rad_badinput_conftest")
