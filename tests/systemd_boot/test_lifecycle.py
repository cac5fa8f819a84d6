"""The service's life under systemd: the watchdog, Restart=on-failure and RestartPreventExitStatus=78,
`systemctl reload`, a clean stop and the start after it, and a restart that clients ride out on the sockets
systemd keeps open."""

from radtest.clients import ecs_credentials, imds_credentials
from radtest.emulator import last_issued
from radtest.environment import wait_until

from radtest.machine import Poller
from conftest import READY_STATUS, RUNTIME_DIR, SERVICE, SOCKETS, TOKEN_FILE

EXIT_PROPERTIES = ("ActiveState", "SubState", "Result", "MainPID", "NRestarts", "ExecMainCode", "ExecMainStatus",
                   "StatusText")
CLD_EXITED = "1"


def serves(service, em):
    """The agent answers IMDS and ECS with the credentials the emulator issued last."""
    status, document = imds_credentials(service.ports["imds"])
    assert status == 200, document
    assert document["AccessKeyId"] == last_issued(em)["accessKeyId"]
    token = service.machine.read(TOKEN_FILE).strip()
    status, document = ecs_credentials(f"http://127.0.0.1:{service.ports['ecs']}/credentials/web", token)
    assert status == 200 and document["AccessKeyId"] == last_issued(em)["accessKeyId"], document


def imds_served(port):
    """A Poller probe: the whole IMDSv2 exchange of an SDK, answered with credentials."""
    status, document = imds_credentials(port)
    assert status == 200, f"{status} {document}"
    return True


def restarted(before):
    """A condition: restarted once by systemd (Restart=), active again under a new main process."""
    return lambda p: (p["NRestarts"] == "1" and p["ActiveState"] == "active" and p["StatusText"] == READY_STATUS
                      and p["MainPID"] not in ("0", before["MainPID"]))


def test_watchdog_restarts_a_stopped_agent(service, em):
    # A shorter WatchdogSec= than the shipped 30 s (test drop-in); everything else as shipped.
    service.dropin(SERVICE, "test-watchdog", "[Service]\nWatchdogSec=2s\n")
    service.start()
    before = service.wait_serving()
    assert service.show("WatchdogUSec")["WatchdogUSec"] == "2s"
    cursor = service.cursor()
    service.systemctl("kill", "--kill-who=main", "--signal=SIGSTOP", SERVICE)
    wait_until(lambda: "State:\tT (stopped)" in service.machine.read(f"/proc/{before['MainPID']}/status"), 5,
               what="the agent to stop")
    # 2 s without WATCHDOG=1, SIGABRT, RestartSec=5s, then a new process.
    service.wait_for(restarted(before), "a restart after the watchdog fired", timeout=45)
    journal = service.journal(after=cursor)
    assert "Watchdog timeout" in journal and "Failed with result 'watchdog'" in journal, journal
    serves(service, em)


def test_killed_agent_is_restarted(service, em):
    service.start()
    before = service.wait_serving()
    cursor = service.cursor()
    service.systemctl("kill", "--kill-who=main", "--signal=SIGKILL", SERVICE)
    service.wait_for(restarted(before), "a restart after SIGKILL", timeout=30)
    assert "Failed with result 'signal'" in service.journal(after=cursor)
    serves(service, em)


def test_configuration_error_ends_failed_without_a_restart_loop(service, em):
    service.write_file("config.toml", "[agent\nlog_level = \"info\"\n")
    cursor = service.cursor()
    assert service.systemctl("start", SERVICE, check=False).returncode != 0
    props = service.wait_for(lambda p: p["ActiveState"] == "failed", "the service to fail",
                             properties=EXIT_PROPERTIES)
    # `failed`, not `auto-restart`: systemd decided against Restart= when the process exited 78.
    assert (props["SubState"], props["Result"], props["ExecMainCode"], props["ExecMainStatus"],
            props["NRestarts"]) == ("failed", "exit-code", CLD_EXITED, "78", "0"), props
    journal = service.journal(after=cursor)
    assert "config.toml" in journal, journal
    assert em.stats()["requests"] == 0


def test_reload_keeps_the_process_and_its_clients(service, em):
    service.start()
    before = service.wait_serving()
    cursor = service.cursor()
    with Poller(lambda: imds_served(service.ports["imds"])) as poller:
        poller.wait_for_answers(5, timeout=20)
        service.systemctl("reload", SERVICE)
        service.wait_for_journal(r"event=reloaded\b", after=cursor)
        seen = len(poller.results)
        poller.wait_for_answers(seen + 5, timeout=20)
    assert poller.failures == [], poller.failures
    after = service.show("ActiveState", "MainPID", "NRestarts", "StatusText")
    assert after == {"ActiveState": "active", "MainPID": before["MainPID"], "NRestarts": "0",
                     "StatusText": READY_STATUS}, after
    journal = service.journal(after=cursor)
    assert "event=reloading" in journal and "Reloaded" in journal, journal


def test_stop_exits_0_and_the_next_start_works(service, machine, em):
    service.start()
    service.wait_serving()
    cursor = service.cursor()
    service.systemctl("stop", SERVICE)
    props = service.show(*EXIT_PROPERTIES)
    assert (props["ActiveState"], props["Result"], props["ExecMainCode"], props["ExecMainStatus"]) == (
        "inactive", "success", CLD_EXITED, "0"), props
    journal = service.journal(after=cursor)
    assert "event=stopped" in journal and "Deactivated successfully" in journal, journal
    left = machine.run("ls", "-A", f"{RUNTIME_DIR}/").stdout.split()

    # The sockets stayed: the next client starts the agent again, whatever the last run left in /run.
    imds_credentials(service.ports["imds"])
    service.wait_serving()
    assert service.show("NRestarts")["NRestarts"] == "0", f"after a stop that left {left} in {RUNTIME_DIR}"
    serves(service, em)

    # Everything stopped (sockets too) and started again from scratch.
    service.systemctl("stop", SERVICE, *SOCKETS)
    service.start()
    service.wait_serving()
    serves(service, em)
    assert service.show("NRestarts")["NRestarts"] == "0"


def test_restart_is_ridden_out_by_clients(service, em):
    # `systemctl restart`: the sockets stay open meanwhile, so a client that connects while the agent is
    # between processes waits for the new one, which serves at once the credentials the old one handed over
    # (FileDescriptorStoreMax=): no failure, and no CreateSession for the restart.
    service.start()
    before = service.wait_serving()
    calls = em.stats()["accepted"]
    # Were the new process to call CreateSession, it would take 2 s: clients would surely see the gap.
    em.faults({"delay_ms": 2000})
    with Poller(lambda: imds_served(service.ports["imds"])) as poller:
        poller.wait_for_answers(5, timeout=20)
        service.systemctl("restart", SERVICE)
        service.wait_for(lambda p: p["MainPID"] not in ("0", before["MainPID"]) and p["StatusText"] == READY_STATUS,
                         "the new process to serve")
        seen = len(poller.results)
        poller.wait_for_answers(seen + 5, timeout=20)
    assert poller.failures == [], poller.failures
    assert em.stats()["accepted"] == calls, "the restart called CreateSession"
