"""The fixtures shared by every pytest suite (radtest/pytest_plugin.py in tests/support, on the import path
through tests/pytest.ini)."""

pytest_plugins = ["radtest.pytest_plugin"]
