"""F7: TLS failures. The agent's endpoint is the emulator's TLS fault listener, which presents in turn a
certificate from an untrusted CA, one for another host name, an expired one, TLS 1.0 only, and a reset in the
middle of the handshake. Bar: no credentials accepted (no CreateSession reaches the service, nothing is served),
the reason is logged, every failure is retryable, and there is no insecure fallback: the same endpoint works as
soon as it presents a good certificate again.
"""

import re
import time

from radtest.agent import AgentProcess
from radtest.emulator import create_sessions
from radtest.environment import wait_until

from fault_support import SurfaceWatcher

VARIANTS = {
    "untrusted_ca": r"certificate verify failed|unable to get local issuer|self.signed",
    # OpenSSL reports a host-name mismatch found by the verify callback as "unspecified certificate
    # verification error"; the agent cannot say more than OpenSSL does.
    "wrong_host": r"host ?name|mismatch|verif",
    "expired": r"expired",
    "tls1_0": r"protocol|version|handshake|alert",
    "reset": r"reset|closed|handshake|eof|truncated",
}


def field(line, name):
    m = re.search(rf"\b{name}=(\"[^\"]*\"|\S+)", line)
    return m[1].strip('"') if m else None


def test_f7_tls_failures_accept_nothing(em, pki, tmp_path, figure):
    port = em.arns["tls_fault_port"]
    em.set_tls_variant("untrusted_ca")
    agent = AgentProcess(tmp_path, em, pki)
    agent.profile("web", endpoint=f"https://127.0.0.1:{port}")
    agent.start()
    watcher = SurfaceWatcher(agent).start()
    outcomes = {}
    try:
        pattern = r"\bevent=refresh_(ok|failed)\b"
        for n, variant in enumerate(VARIANTS, start=1):
            if n > 1:
                em.set_tls_variant(variant)
                # The agent retries on its own (backoff): an attempt already under way when the variant changed
                # ends within milliseconds; the first line after this pause is an attempt on the new variant.
                time.sleep(0.1)
                seen = len(agent.wait_for_log(pattern, timeout=30))
                agent.request_refresh()
            else:
                seen = 0
            line = agent.wait_for_log(pattern, timeout=30, count=seen + 1)[seen]
            outcomes[variant] = (field(line, "event"), field(line, "code"), field(line, "class"),
                                 field(line, "error"))
        calls_during_faults = create_sessions(em)
        connections = em.stats()["tls_connections"]
        em.set_tls_variant("good")
        agent.request_refresh()
        last = agent.wait_for_log(r"\bevent=refresh_ok\b", timeout=30)[-1]
        # The surfaces serve the new credentials from the refresh_ok on; let the watcher see them.
        wait_until(lambda: any(s[3] for s in watcher.samples), 10, what="credentials on a surface")
        watcher.stop()
        figure(f"F7: {'; '.join(f'{v}: {o[1]} ({o[3][:70]})' for v, o in outcomes.items())}; TLS connections "
               f"{connections}; CreateSession calls during the faults {calls_during_faults}, after {create_sessions(em)}; "
               f"{watcher.summary()}")
        watcher.assert_n2()
        for variant, (event, code, klass, error) in outcomes.items():
            assert event == "refresh_failed" and klass == "retryable", (variant, outcomes[variant])
            assert code in ("upstream_tls", "upstream_unreachable"), (variant, code)
            assert re.search(VARIANTS[variant], error or "", re.I), (variant, error)
        assert calls_during_faults == 0, "a CreateSession request got through a bad TLS session"
        assert connections >= len(VARIANTS)
        assert field(last, "event") == "refresh_ok" and create_sessions(em) == 1
        first_ok = min(s[0] for s in watcher.samples if s[3])
        assert all(s[3] is None for s in watcher.samples if s[0] < first_ok)
    finally:
        watcher.stop()
        assert agent.stop() == 0
