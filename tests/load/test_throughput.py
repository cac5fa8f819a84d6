"""L1-L3 of the load plan (docs/test-plan.md §4): the agent's HTTP surfaces under wrk.

- L1: IMDS credentials GET with a token fetched before the run, wrk -t2 -c64;
- L2: a token PUT flood (stateless tokens: no memory growth, and a token issued before the flood still works);
- L3: the container (ECS) endpoint with its Authorization token, wrk -t2 -c64.

The plan runs each for 60 s; CI runs them for RAD_LOAD_SECONDS (default 10 s) after a 3 s warm-up. Asserted
(functional bars): no non-2xx answer, no socket error, RSS growth < 2 MiB from after the warm-up to after the
run, open descriptors back to their baseline ±2, no CreateSession during the run, and the pre-flood token. The
throughput and the latency percentiles are printed, not asserted: speed targets live in bench/run (see
tests/README.md, "Load suite", for why the plan's L1 p99 < 5 ms bar is printed).
"""

from radtest.clients import http_call, imds_token

from load_support import MIB, imds_url, load_agent, open_fds, rss_bytes, run_wrk, settle, wait_for_fds

WARMUP_SECONDS = 3
RSS_GROWTH_LIMIT = 2 * MIB
FD_SLACK = 2


def role_name(port, token):
    status, _, body = http_call(port, "GET", "/latest/meta-data/iam/security-credentials/",
                                {"X-aws-ec2-metadata-token": token})
    assert status == 200, (status, body)
    return body.decode().strip()


def measured_run(agent, em, url, headers, seconds, method="GET", connections=64):
    """Warm up, take the baseline, run wrk, take the readings after; returns (wrk result, figures dict)."""
    pid = agent.process.pid
    warm = run_wrk(url, seconds=WARMUP_SECONDS, connections=connections, method=method, headers=headers)
    assert warm.non_2xx == 0, warm.text
    settle()
    rss_before, fds_before = rss_bytes(pid), open_fds(pid)
    sessions_before = em.stats()["requests"]
    result = run_wrk(url, seconds=seconds, connections=connections, method=method, headers=headers)
    sessions_during = em.stats()["requests"] - sessions_before
    fds_after = wait_for_fds(pid, fds_before + FD_SLACK)
    rss_after = rss_bytes(pid)
    figures = dict(result.summary())
    figures.update({"rss_before_MiB": f"{rss_before / MIB:.2f}", "rss_after_MiB": f"{rss_after / MIB:.2f}",
                    "fds_before": fds_before, "fds_after": fds_after, "create_session_calls": sessions_during})
    return result, figures, (rss_before, rss_after, fds_before, fds_after, sessions_during)


def assert_functional(result, readings, figures):
    rss_before, rss_after, fds_before, fds_after, sessions_during = readings
    assert result["requests"] > 0, figures
    assert result.non_2xx == 0 and result["status_errors"] == 0, figures
    assert result.socket_errors == 0, figures
    assert rss_after - rss_before < RSS_GROWTH_LIMIT, figures
    assert abs(fds_after - fds_before) <= FD_SLACK, figures
    assert sessions_during == 0, figures


def test_l1_imds_credentials_get(em, pki, tmp_path, load_seconds, report):
    agent = load_agent(tmp_path, em, pki)
    try:
        port = agent.imds_port("web")
        token = imds_token(port)
        headers = {"X-aws-ec2-metadata-token": token}
        url = imds_url(agent, role_name(port, token))
        result, figures, readings = measured_run(agent, em, url, headers, load_seconds)
        report(f"L1 IMDS GET wrk -t2 -c64 -d{load_seconds}s", figures)
        assert_functional(result, readings, figures)
    finally:
        assert agent.stop() == 0


def test_l2_token_put_flood(em, pki, tmp_path, load_seconds, report):
    agent = load_agent(tmp_path, em, pki)
    try:
        port = agent.imds_port("web")
        before_flood = imds_token(port)
        url = f"http://127.0.0.1:{port}/latest/api/token"
        result, figures, readings = measured_run(agent, em, url, {"X-aws-ec2-metadata-token-ttl-seconds": "21600"},
                                                 load_seconds, method="PUT")
        figures["tokens/s"] = figures.pop("req/s")
        report(f"L2 token PUT flood wrk -t2 -c64 -d{load_seconds}s", figures)
        assert_functional(result, readings, figures)
        # Tokens are stateless: millions issued evict nothing, the one issued before the flood still works.
        status, _, body = http_call(port, "GET", "/latest/meta-data/iam/security-credentials/",
                                 {"X-aws-ec2-metadata-token": before_flood})
        assert status == 200, (status, body)
    finally:
        assert agent.stop() == 0


def test_l3_ecs_credentials_get(em, pki, tmp_path, load_seconds, report):
    agent = load_agent(tmp_path, em, pki)
    try:
        token = agent.ecs_token_file("web").read_text().strip()
        result, figures, readings = measured_run(agent, em, agent.ecs_url("web"), {"Authorization": token},
                                                 load_seconds)
        report(f"L3 ECS GET wrk -t2 -c64 -d{load_seconds}s", figures)
        assert_functional(result, readings, figures)
    finally:
        assert agent.stop() == 0
