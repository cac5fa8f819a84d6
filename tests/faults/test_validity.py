"""F10: the leaf certificate's validity. An expired or not-yet-valid certificate stops `serve` at start with
exit 78 (EX_CONFIG, which the unit's RestartPreventExitStatus=78 keeps from a restart loop) and no CreateSession;
a certificate with 6 days left starts, works, and warns once.
"""

import datetime
import re
import subprocess

import pytest
from radtest import certificates
from radtest.agent import AgentProcess
from radtest.emulator import create_sessions
from radtest.environment import ROOT


@pytest.mark.parametrize("name", ["expired", "not-yet-valid"])
def test_f10_invalid_certificate_exits_78_without_calling(em, pki, tmp_path, name, figure):
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web", certificate=str(pki / f"{name}.pem"), private_key=str(pki / f"{name}.key"))
    agent.start(wait_started=False)
    try:
        code = agent.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        agent.process.kill()
        raise AssertionError(f"serve kept running with the {name} certificate")
    log = agent.log()
    figure(f"F10 ({name}): exit {code}; CreateSession calls {create_sessions(em)}; "
           f"log {[l for l in log.splitlines() if 'profile_invalid' in l][:1]}")
    assert code == 78, log
    assert create_sessions(em) == 0
    assert re.search(r"expired|not yet valid", log), log
    unit = (ROOT / "systemd" / "rolesanywhere-agent.service").read_text()
    assert re.search(r"^RestartPreventExitStatus=.*\b78\b", unit, re.M), "exit 78 would be restarted"


def test_f10_six_days_left_warns_once(em, pki, tmp_path, figure):
    now = certificates.now()
    cert, key = certificates.issue_pair(pki, tmp_path, "six-days-left", now - datetime.timedelta(days=1),
                                        now + datetime.timedelta(days=6))
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web", certificate=str(cert), private_key=str(key))
    agent.start()
    try:
        assert agent.log_lines("refresh_ok"), agent.log()
        # Another refresh: still one warning for the day.
        agent.request_refresh()
        agent.wait_for_log(r"\bevent=refresh_(ok|failed)\b", count=2)
        warnings = agent.log_lines("certificate_expiring")
        figure(f"F10 (6 days left): warnings {len(warnings)} ({warnings[0].split(' ', 1)[1] if warnings else '-'}); "
               f"CreateSession calls {create_sessions(em)}")
        assert len(warnings) == 1, warnings
        assert "days_left=5" in warnings[0] or "days_left=6" in warnings[0], warnings
        assert create_sessions(em) == 2
    finally:
        assert agent.stop() == 0
