"""radtest: what the pytest suites under tests/ share, as one importable package.

Modules:
- environment: the paths and programs under test (AGENT, PYTHON, ROOT, the test PKI), the clean environment
  every subprocess gets, free ports and bounded waits;
- processes: every long-running process started through this package (agents, emulators) runs in a process
  group of its own and is recorded, so that what a test leaves running is found and ended by its id;
- emulator: the IAM Roles Anywhere emulator (tests/emulator/ra_emulator.py) as a running process;
- agent: the agent's commands (Agent) and the long-running `serve` (AgentProcess) with its configuration;
- clients: the agent's HTTP surfaces spoken as clients speak them (IMDSv2, the container endpoint);
- rawhttp: a raw-socket HTTP client that sends exactly the bytes it is given;
- pytest_plugin: the shared fixtures (emulator, em, agent, pki, private_copy, live) and the per-test check
  that nothing a test started is left running.

tests/pytest.ini puts tests/support on the import path and tests/conftest.py loads the plugin, so every suite
gets the same fixtures whether CTest runs it or someone runs `python3 -m pytest FILE` by hand.
"""
