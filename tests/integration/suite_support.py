"""suite_support: how the other pytest suites (systemd, faults, load, badinput, secrets) use the integration
suite's fixtures and agent harness instead of repeating them.

pytest imports every suite's conftest.py as the module `conftest`, so a suite cannot simply import the
integration conftest: adopt() loads it once under its own name, `rad_integration_conftest`, and copies the
named fixtures and constants into the calling conftest, where pytest collects them. agent_support.py takes
AGENT and clean_environment `from conftest`, i.e. from the suite's own conftest: adopt those two before
anything imports agent_support.
"""

import importlib.util
import sys
from pathlib import Path

INTEGRATION_DIR = Path(__file__).resolve().parent


def load_module(name, path):
    """The module at `path` under `name`, executed once per pytest session."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def adopt(namespace, *names, conftest=INTEGRATION_DIR / "conftest.py", module_name="rad_integration_conftest"):
    """Copies `names` from the integration conftest (or another suite's, via `conftest`/`module_name`) into
    `namespace` (the caller's globals()) and returns that module."""
    module = load_module(module_name, conftest)
    for name in names:
        namespace[name] = getattr(module, name)
    return module
