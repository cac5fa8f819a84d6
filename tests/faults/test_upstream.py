"""F1-F6 and F8 of the fault plan (docs/test-plan.md §5), with N1/N2 checked on every answer.

Each test drives the emulator's fault switches against the real agent, watches IMDS, ECS and the
credential-process fast path the whole time (fault_support.SurfaceWatcher enforces N2 on every answer), and
prints what each surface served over time and how many CreateSession calls the emulator received.

Time scaling (say it where it matters): F2/N1 use 125-second credentials ({"lifetime_seconds": 125}) instead of
900-second sessions, so that a credential's whole life (refresh at deadline - 120 s, serving stops at
deadline - 60 s) fits in 70 s of CI time. The agent's rules are the production ones; only the issued lifetime
is short.
"""

import re
import time

from radtest.agent import AgentProcess
from radtest.emulator import create_sessions
from radtest.environment import free_port, wait_until

from fault_support import (EmulatorTimeline, Forwarder, NotifySocket, SurfaceWatcher, delays, fd_count,
                           parse_expiration, rss_kib, utcnow)

LONG = 40


def refresh_lines(agent):
    return [line for line in agent.log().splitlines() if re.search(r"\bevent=refresh_(ok|failed)\b", line)]


def wait_refreshes(agent, count, timeout=LONG):
    return agent.wait_for_log(r"\bevent=refresh_(ok|failed)\b", timeout=timeout, count=count)


def field(line, name):
    m = re.search(rf"\b{name}=(\"[^\"]*\"|\S+)", line)
    return m[1].strip('"') if m else None


def refresh_and_wait(agent, count):
    agent.request_refresh()
    return wait_refreshes(agent, count)[-1]


def test_f1_upstream_refused_at_cold_start(em, pki, tmp_path, figure):
    """F1: nothing listens at the endpoint when the agent starts; then the upstream comes back."""
    port = free_port()
    forwarder = Forwarder(port, em.port)
    notify = NotifySocket(tmp_path)
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web", endpoint=f"https://127.0.0.1:{port}")
    agent.start(wait_refresh=False, env={"NOTIFY_SOCKET": notify.path})
    watcher = SurfaceWatcher(agent).start()
    try:
        assert any(line == "READY=1" for _, line in notify.messages) or wait_until(
            lambda: any(line == "READY=1" for _, line in notify.messages), 5, what="READY=1")
        time.sleep(6)
        failures = agent.log_lines("refresh_failed")
        assert len(failures) >= 2, failures
        assert all(field(l, "code") == "upstream_unreachable" and field(l, "class") == "retryable"
                   for l in failures), failures
        # Each wait is within the full-jitter bound min(cap, 1 s x 2^(n-1)) (retry_in is whole seconds).
        waits = [int(field(l, "retry_in")) for l in failures]
        assert all(w <= min(300, 2 ** i) for i, w in enumerate(waits)), waits
        assert create_sessions(em) == 0
        pending = 2 ** (len(agent.log_lines("refresh_failed")) - 1)

        forwarder.start()
        back = time.monotonic()
        wait_until(lambda: any(s[1] == "imds" and s[3] for s in watcher.samples if s[0] >= back), LONG,
                   what="credentials after the upstream came back")
        recovery = min(s[0] for s in watcher.samples if s[0] >= back and s[1] == "imds" and s[3]) - back
        watcher.stop()
        figure(f"F1: attempts while refused {len(failures)} in 6 s; waits (s, floor) {waits}; "
               f"recovery {recovery:.1f}s (bound {pending}s); CreateSession calls {create_sessions(em)}; "
               f"{watcher.summary()}")
        watcher.assert_n2()
        # Clients keep asking while nothing is served, and each may start a refresh once the previous call is
        # 5 s old: the upstream that came back is used within seconds, not after the backoff.
        assert recovery <= min(300, pending, 5) + 1.5, recovery
        assert create_sessions(em) == 1
        for surface in ("imds", "ecs", "process"):
            first = [s for s in watcher.of(surface) if s[2] != "error:ConnectionRefusedError"][0]
            assert first[3] is None, f"{surface} served credentials before any CreateSession succeeded"
        assert any("failing: web: nothing to serve (upstream_unreachable)" in s for _, s in notify.statuses()), \
            notify.statuses()
    finally:
        watcher.stop()
        forwarder.stop()
        assert agent.stop() == 0
        notify.close()


def test_f2_n1_upstream_down_with_a_warm_cache(em, pki, tmp_path, figure):
    """F2 + N1: after one success the upstream refuses every connection. The cached credentials are served
    until Expiration - 60 s, then only 503; every answer is checked against the host clock (N1: never less than
    60 s left). Time-scaled: 125 s credentials (see the module docstring)."""
    port = free_port()
    forwarder = Forwarder(port, em.port).start()
    em.faults({"lifetime_seconds": 125})
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web", endpoint=f"https://127.0.0.1:{port}")
    agent.start()
    forwarder.stop()  # the upstream goes down right after the first success
    issued = em.issued()[0]
    expiration = parse_expiration(issued["expiration"])
    watcher = SurfaceWatcher(agent, interval=0.2).start()
    try:
        stop_serving = (expiration - utcnow()).total_seconds() - 60
        time.sleep(stop_serving + 5)
        watcher.stop()
        watcher.assert_n2()
        served = [s for s in watcher.samples if s[3]]
        assert {s[3] for s in served} == {issued["accessKeyId"]}, "the cache was replaced or emptied"
        last_served = max(s[0] for s in served) - watcher.started
        after = [s for s in watcher.samples if s[0] - watcher.started > last_served]
        assert after and all(str(s[2]).startswith("5") for s in after), after
        assert all(s[3] is None for s in after)
        # Served right up to the margin: the last 200 came within 2 s (plus the poll interval) of it.
        assert last_served >= stop_serving - 2.5, (last_served, stop_serving)
        failures = agent.log_lines("refresh_failed")
        noisy = [l for l in agent.log().splitlines()[agent.log().splitlines().index(
            next(l for l in agent.log().splitlines() if "event=started" in l)) + 1:]
            if not re.search(r"event=(refresh_failed|refresh_ok|create_session|credentials_expired)\b", l)]
        requests = len(watcher.samples)
        figure(f"F2/N1: min(Expiration - now) served {watcher.min_left():.1f}s; last 200 at {last_served:.1f}s "
               f"(margin point {stop_serving:.1f}s); refresh attempts {len(failures)}; other log lines {len(noisy)} "
               f"for {requests} requests; CreateSession calls {create_sessions(em)}; {watcher.summary()}")
        assert watcher.min_left() >= 60
        assert len(failures) >= 2
        assert len(noisy) <= 2, noisy  # nothing per request
    finally:
        watcher.stop()
        forwarder.stop()
        assert agent.stop() == 0


def test_f3_blackholed_and_slow_upstream(em, pki, tmp_path, figure):
    """F3: one refresh meets a blackhole (never answered), another a 25 s delay; both are aborted at the 20 s
    total timeout, off the request path: clients keep getting the cached credentials in < 10 ms (p99)."""
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.profile("slow")
    agent.start()
    watcher = SurfaceWatcher(agent, interval=0.02, process_every=1.0).start()
    try:
        fds_before = fd_count(agent.process.pid)
        time.sleep(2)  # a baseline of client latency before the stall, on this machine as loaded as it is
        baseline_p99 = watcher.latency_p99_ms("imds")
        em.faults({"blackhole": True}, {"delay_ms": 25000})
        began = time.monotonic()
        agent.request_refresh("web")
        agent.request_refresh("slow")
        failed = agent.wait_for_log(r"event=refresh_failed\b", timeout=LONG, count=2)
        stalled = time.monotonic() - began
        during_p99 = watcher.latency_p99_ms("imds", since=began, until=began + stalled)
        fds_during = fd_count(agent.process.pid)
        wait_refreshes(agent, 6)  # both profiles retried and got credentials
        watcher.stop()
        durations = [int(field(l, "ms")) for l in agent.log_lines("create_session")[2:4]]
        fds_after = fd_count(agent.process.pid)
        figure(f"F3: blackhole+25s delay: refresh_failed after {stalled:.1f}s, CreateSession durations {durations} ms; "
               f"IMDS p99 during the stall {during_p99:.2f} ms (before it {baseline_p99:.2f} ms) over "
               f"{len(watcher.of('imds'))} requests; "
               f"fds {fds_before}/{fds_during}/{fds_after}; CreateSession calls {create_sessions(em)}")
        watcher.assert_n2()
        assert all(field(l, "code") == "upstream_timeout" for l in failed), failed
        assert all(19000 <= d <= 22000 for d in durations), durations
        # The bar is p99 < 10 ms. On 2 shared cores the client's own latency before the stall can exceed that;
        # then the stall must not make it worse (the refresh is off the request path), which is what is tested.
        assert during_p99 is not None and during_p99 < max(10, baseline_p99 * 1.5 + 2), (during_p99, baseline_p99)
        assert fds_after <= fds_before + 2 and fds_during <= fds_before + 8
        assert all(s[3] for s in watcher.of("imds")), "a client got no credentials during the stall"
    finally:
        watcher.stop()
        assert agent.stop() == 0
        # The delayed request answers 25 s after it arrived; let it finish before the next test resets the stats.
        wait_until(lambda: all(r.get("outcome") for r in em.stats()["recorded"]), 15, what="the delayed request")


def test_f4_server_errors_then_success(em, pki, tmp_path, figure):
    """F4: 500, 502, 503, then 201. Each wait is within [0, min(cap, 1 s x 2^(n-1))]; the 4th attempt
    succeeds; the cache is untouched until then."""
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.start()
    first = em.issued()[0]["accessKeyId"]
    watcher = SurfaceWatcher(agent).start()
    try:
        timeline = EmulatorTimeline(em)
        em.faults({"status": 500}, {"status": 502}, {"status": 503})
        agent.request_refresh()
        agent.wait_for_log(r"event=refresh_ok\b", timeout=LONG, count=2)
        time.sleep(0.3)
        watcher.stop()
        attempts = [t for t, _ in timeline.attempts()]
        waits = delays(attempts)
        figure(f"F4: delays {' '.join(f'{d:.2f}s' for d in waits)}; attempts {len(attempts)}; "
               f"CreateSession calls {create_sessions(em)}; {watcher.summary()}")
        watcher.assert_n2()
        assert len(attempts) == 4 and create_sessions(em) == 5
        for n, wait in enumerate(waits, start=1):
            assert wait <= min(300, 2 ** (n - 1)) + 0.3, (n, wait)
        assert [l for l in agent.log_lines("refresh_failed")] and all(
            field(l, "class") == "retryable" for l in agent.log_lines("refresh_failed"))
        keys = watcher.served_keys("imds")
        assert keys[0] == first and len(keys) <= 2 and all(s[3] for s in watcher.samples if s[1] != "process")
    finally:
        watcher.stop()
        assert agent.stop() == 0


def test_f5_throttling(em, pki, tmp_path, figure):
    """F5: 429 with Retry-After: 7 (the next attempt waits >= 7 s), 429 without it and a 400
    ThrottlingException body (both retryable; no attempt before the logged backoff)."""
    timeline = EmulatorTimeline(em)
    em.faults({"status": 429, "retry_after": 7})
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.start()
    try:
        agent.wait_for_log(r"event=refresh_ok\b", timeout=LONG)
        attempts = [t for t, _ in timeline.attempts()]
        assert len(attempts) == 2, attempts
        retry_after_wait = attempts[1] - attempts[0]
        first_failure = agent.log_lines("refresh_failed")[0]

        watcher = SurfaceWatcher(agent).start()
        outcomes = []
        for spec in ({"status": 429}, {"status": 400, "error_type": "ThrottlingException",
                                       "message": "Rate exceeded"}):
            # The agent's own retries run too: the fault goes to whichever attempt comes next, and the first
            # failure logged after it is that attempt's.
            seen = len(refresh_lines(agent))
            em.faults(spec)
            agent.request_refresh()
            line = wait_until(lambda: [l for l in refresh_lines(agent)[seen:] if "refresh_failed" in l], LONG,
                              what="the throttled attempt")[0]
            calls = create_sessions(em)
            retry_in = int(field(line, "retry_in"))
            time.sleep(min(retry_in, 2.5) - 0.2 if retry_in >= 1 else 0)
            outcomes.append((field(line, "code"), field(line, "class"), retry_in, create_sessions(em) - calls))
        seen = len(refresh_lines(agent))
        agent.request_refresh()
        wait_until(lambda: [l for l in refresh_lines(agent)[seen:] if "refresh_ok" in l], LONG, what="recovery")
        watcher.stop()
        figure(f"F5: Retry-After 7 -> next attempt after {retry_after_wait:.2f}s; 429 / 400 ThrottlingException -> "
               f"{outcomes}; CreateSession calls {create_sessions(em)}; {watcher.summary()}")
        watcher.assert_n2()
        assert field(first_failure, "code") == "upstream_throttled" and field(first_failure, "class") == "retryable"
        assert retry_after_wait >= 7.0, retry_after_wait
        for code, klass, retry_in, extra_calls in outcomes:
            assert (code, klass) == ("upstream_throttled", "retryable")
            assert extra_calls == 0, "an attempt came before the logged backoff"
        assert create_sessions(em) == len(refresh_lines(agent)), "a CreateSession call outside a logged attempt"
    finally:
        assert agent.stop() == 0


MALFORMED = ["malformed_json", "truncated", "oversized", "missing_session_token", "expired", "long_expiration",
             "empty_credential_set"]


def test_f6_malformed_answers_are_refused(em, pki, tmp_path, figure):
    """F6: every malformed 201 is refused (upstream_malformed), the cache keeps the last good set, the 10 MB
    body is cut at the 64 KiB limit (RSS barely moves)."""
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.start()
    first = em.issued()[0]["accessKeyId"]
    watcher = SurfaceWatcher(agent).start()
    try:
        rss_before = rss_kib(agent.process.pid)
        # All seven answers are queued at once, in order: the agent's own retries (full jitter from 0 s) and
        # the refresh requests that hurry them each take the next one. One CreateSession is in flight per profile, so
        # the n-th request the emulator recorded is answered by the n-th refresh line, whatever the timing.
        em.faults(*({kind: True} for kind in MALFORMED))
        for n in range(2, len(MALFORMED) + 3):
            if len(refresh_lines(agent)) < n:
                agent.request_refresh()
            wait_refreshes(agent, n)
            if n == len(MALFORMED) + 1:
                rss_after = rss_kib(agent.process.pid)
        lines = refresh_lines(agent)
        results = {}
        for line, request in zip(lines, em.stats()["recorded"]):
            # Answers the emulator could not issue are recorded as "fault:KIND"; those it issued with a flaw
            # the agent must catch (no token, expiration outside the window) as "accepted" with "fault": KIND.
            outcome = str(request.get("outcome", ""))
            kind = outcome.removeprefix("fault:") if outcome.startswith("fault:") else request.get("fault")
            if kind:
                results[kind] = (field(line, "event"), field(line, "code"), field(line, "error"))
        assert list(results) == MALFORMED, (results, lines)
        assert field(lines[len(MALFORMED) + 1], "event") == "refresh_ok", lines
        watcher.stop()
        figure(f"F6: outcomes {{{', '.join(f'{k}: {v[1]}' for k, v in results.items())}}}; RSS {rss_before} -> "
               f"{rss_after} KiB; CreateSession calls {create_sessions(em)}; {watcher.summary()}")
        watcher.assert_n2()
        for kind, (event, code, error) in results.items():
            # A body cut short is a transport failure (the stream ended early); both classes are retryable.
            codes = ("upstream_malformed", "upstream_unreachable") if kind == "truncated" else ("upstream_malformed",)
            assert event == "refresh_failed" and code in codes, (kind, event, code, error)
        assert re.search(r"65536|64 KiB|limit|larger", results["oversized"][2] or ""), results["oversized"]
        served = [s[3] for s in watcher.samples if s[3]]
        leaked = {r["credentials"]["accessKeyId"] for r in em.stats()["recorded"]
                  if str(r.get("outcome", "")).startswith("fault:") and r.get("credentials")}
        leaked |= {c["accessKeyId"] for c in em.issued() if c["accessKeyId"] != first
                   and c["expiration"] != em.issued()[-1]["expiration"]}
        assert not leaked & set(served), "a refused answer was served"
        assert watcher.served_keys("imds")[0] == first and len(watcher.served_keys("imds")) <= 2
        assert rss_after - rss_before < 4096, (rss_before, rss_after)
    finally:
        watcher.stop()
        assert agent.stop() == 0


def test_f8_non_recoverable_answers(em, pki, tmp_path, figure):
    """F8: 403 Invalid signature, 400, 404: shown in STATUS= on the first failure, retried only after 5-10 min
    (<= 12 attempts/h), while the still-valid cache keeps being served."""
    notify = NotifySocket(tmp_path)
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web")
    agent.start(env={"NOTIFY_SOCKET": notify.path})
    first = em.issued()[0]["accessKeyId"]
    watcher = SurfaceWatcher(agent).start()
    try:
        shown = []
        for n, (status, message) in enumerate(((403, "Invalid signature"), (400, "bad request"),
                                               (404, "no such profile")), start=2):
            em.faults({"status": status, "message": message})
            sent = time.monotonic()
            line = refresh_and_wait(agent, n)
            calls = create_sessions(em)
            seen = wait_until(lambda: [t for t, s in notify.statuses() if t >= sent and "upstream_rejected" in s],
                              5, interval=0.01, what="STATUS= naming the failure")
            time.sleep(1.5)
            shown.append((status, field(line, "class"), int(field(line, "retry_in")), round(seen[0] - sent, 2),
                          create_sessions(em) - calls))
        watcher.stop()
        per_hour = 3600 / min(s[2] for s in shown)
        figure(f"F8: (status, class, retry_in s, STATUS= after s, extra calls) {shown}; worst-case attempts/h "
               f"{per_hour:.1f}; CreateSession calls {create_sessions(em)}; {watcher.summary()}")
        watcher.assert_n2()
        for status, klass, retry_in, delay, extra in shown:
            assert klass == "rejected" and 300 <= retry_in <= 600 and extra == 0, shown
            assert delay < 1.0
        assert per_hour <= 12
        assert watcher.served_keys() == [first] and all(s[3] for s in watcher.samples), "the cache was not served"
        assert agent.profile_status("web")["state"] == "stale"
    finally:
        watcher.stop()
        assert agent.stop() == 0
        notify.close()
