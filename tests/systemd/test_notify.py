"""sd_notify as systemd sees it: the test plays the service manager with its own $NOTIFY_SOCKET (an AF_UNIX
datagram socket) and $WATCHDOG_USEC (without $WATCHDOG_PID, which sd_watchdog_enabled() accepts), and checks
READY=1, STATUS=, WATCHDOG=1, RELOADING=1 + READY=1 on SIGHUP and STOPPING=1 on SIGTERM."""

import signal
import time

WATCHDOG_USEC = 1_000_000


def assignments(message):
    return message.split("\n")


def test_notify_protocol(notify, agent_process):
    agent = agent_process()
    agent.start(env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}, wait_started=False)

    notify.wait_for(lambda m: "READY=1" in assignments(m), 20, "READY=1")
    serving = notify.wait_for(lambda m: m.startswith("STATUS=1/1 profiles serving"), 20,
                              "STATUS=1/1 profiles serving")
    assert "failing" not in serving
    # Nothing is sent before READY=1 but statuses and what the agent keeps in the descriptor store (the
    # listeners it bound, the handover); READY=1 comes once the listeners are open.
    first_ready = next(i for i, m in enumerate(notify.messages) if "READY=1" in assignments(m))
    assert all(m.startswith(("STATUS=", "FDSTORE=1", "FDSTOREREMOVE=1")) for m in notify.messages[:first_ready]), \
        notify.messages

    # WATCHDOG_USEC=1 s: a ping every 0.5 s from the event loop; three within 3 s.
    start = len(notify.messages)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        notify.receive(max(0.0, deadline - time.monotonic()))
    pings = [m for m in notify.messages[start:] if m == "WATCHDOG=1"]
    assert len(pings) >= 3, notify.messages[start:]

    agent.signal(signal.SIGHUP)
    notify.wait_for(lambda m: m == "RELOADING=1", 10, "RELOADING=1")
    notify.wait_for(lambda m: m == "READY=1", 10, "READY=1 after the reload")

    agent.signal(signal.SIGTERM)
    notify.wait_for(lambda m: m == "STOPPING=1", 10, "STOPPING=1")
    assert agent.stop() == 0


def test_status_names_a_failing_profile(em, notify, agent_process):
    """A refused CreateSession shows in STATUS= (what `systemctl status` prints) with the error's name."""
    em.faults({"status": 403, "message": "not today"})
    agent = agent_process()
    agent.start(env={"NOTIFY_SOCKET": str(notify.path)}, wait_started=False)
    status = notify.wait_for(lambda m: m.startswith("STATUS=") and "failing" in m, 20, "a failing STATUS=")
    assert status.startswith("STATUS=0/1 profiles serving credentials; failing: web: "), status
    assert agent.stop() == 0
    assert "WATCHDOG=1" not in notify.messages  # no $WATCHDOG_USEC, no pings


def test_without_notify_socket_nothing_breaks(agent_process):
    """Run by hand (no $NOTIFY_SOCKET), the agent serves and stops the same way."""
    agent = agent_process()
    agent.start()
    agent.wait_for_log(r"event=refresh_ok\b")
    assert agent.stop() == 0
