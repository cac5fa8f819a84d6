"""IMDS session tokens and the container endpoint's Authorization token on the live agent (docs/test-plan.md
§6, rows B5 and B12): every malformed, wrong, expired or repeated token is refused, every bad TTL is a 400, and
the time to refuse a token that shares a long prefix with a valid one is the time to refuse one that differs in
its first byte (constant-time comparison), measured over a bounded loop on one keep-alive connection."""

import statistics
import time

import pytest

from radtest.rawhttp import CREDENTIALS_PATH, TOKEN_HEADER, TOKEN_PATH, TTL_HEADER, KeepAlive, exchange, request

ROLE_PATH = CREDENTIALS_PATH + "rad-test-role"
TIMING_REQUESTS = 20000      # per surface, both kinds interleaved on one keep-alive connection
TIMING_TOLERANCE = 0.10      # medians may differ by 10 % of the median ...
TIMING_FLOOR_US = 15.0       # ... or by 15 µs, whichever is larger (the Python client's own jitter)


def put_token(port, ttl="600"):
    return exchange(port, request("PUT", TOKEN_PATH, [(TTL_HEADER, ttl)]), close_wait=0.05)


def flip(text, index):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    c = text[index]
    replacement = alphabet[(alphabet.index(c) + 1) % len(alphabet)] if c in alphabet else "A"
    return text[:index] + replacement + text[index + 1:]


@pytest.mark.parametrize("ttl", ["0", "21601", "-1", "1e3", "+30", "30.0", "0x1e", "3 0", "30 x",
                                 "18446744073709551616", "99999999999999999999999", "",
                                 "\u00d9\u00a3\u00d9\u00a0"])  # the UTF-8 bytes of Arabic-Indic "30"
def test_b5_bad_ttl_is_400(live, ttl):
    reply = put_token(live.imds_port(), ttl)
    assert reply.status == 400, f"TTL {ttl!r}: {reply}"
    # One fixed reason for every bad value: nothing of the request is echoed.
    assert reply.body == b"400 - Bad Request: X-aws-ec2-metadata-token-ttl-seconds must be 1 to 21600", reply


def test_b5_missing_or_repeated_ttl_is_400(live):
    port = live.imds_port()
    assert exchange(port, request("PUT", TOKEN_PATH, []), close_wait=0.05).status == 400
    reply = exchange(port, request("PUT", TOKEN_PATH, [(TTL_HEADER, "60"), (TTL_HEADER, "60")]), close_wait=0.05)
    assert reply.status == 400, reply


@pytest.mark.parametrize("ttl", ["1", "60", "21600", " 30 "])
def test_b5_valid_ttls_mint_a_token(live, ttl):
    # " 30 ": blanks around a header value are not part of it (RFC 9110 §5.5), so this is 30.
    reply = put_token(live.imds_port(), ttl)
    assert reply.status == 200 and reply.header(TTL_HEADER) == ttl.strip(), reply


def test_b5_token_edge_cases_are_401(live):
    port = live.imds_port()
    good = put_token(port).body.decode()
    assert len(good) >= 22, "a token must carry at least 128 bits"  # 54 base64url characters: 320 bits
    cases = {
        "missing": [],
        "empty": [(TOKEN_HEADER, "")],
        "wrong": [(TOKEN_HEADER, "A" * len(good))],
        "one byte off (first)": [(TOKEN_HEADER, flip(good, 0))],
        "one byte off (middle)": [(TOKEN_HEADER, flip(good, len(good) // 2))],
        "one byte off (last)": [(TOKEN_HEADER, flip(good, len(good) - 1))],
        "truncated": [(TOKEN_HEADER, good[:-1])],
        "extended": [(TOKEN_HEADER, good + "A")],
        "doubled": [(TOKEN_HEADER, good + good)],
        "duplicated header": [(TOKEN_HEADER, good), (TOKEN_HEADER, good)],
        "two tokens in one value": [(TOKEN_HEADER, good + "," + good)],
        "padded base64": [(TOKEN_HEADER, good + "==")],
        "standard alphabet": [(TOKEN_HEADER, good.replace("-", "+").replace("_", "/"))],
    }
    if "-" not in good and "_" not in good:
        del cases["standard alphabet"]
    for name, headers in cases.items():
        reply = exchange(port, request("GET", ROLE_PATH, headers), close_wait=0.05)
        assert reply.status in (400, 401), f"{name}: {reply}"
        assert b"SecretAccessKey" not in reply.raw, name
    # Minted at different instants, tokens differ (they carry their expiry under a MAC).
    time.sleep(0.01)
    assert put_token(port).body.decode() != good


def test_b5_expired_token_is_401(live):
    port = live.imds_port()
    short = put_token(port, "1").body.decode()
    assert exchange(port, request("GET", ROLE_PATH, [(TOKEN_HEADER, short)]), close_wait=0.05).status == 200
    time.sleep(2.0)
    reply = exchange(port, request("GET", ROLE_PATH, [(TOKEN_HEADER, short)]), close_wait=0.05)
    assert reply.status == 401, reply


def timing_figure(port, path, header, right_prefix, wrong_prefix, expected_status):
    """Median time (µs) of refusing each kind, interleaved on one keep-alive connection, plus the spread of
    the same kind between the two halves of the run (the noise floor)."""
    client = KeepAlive(port)
    kinds = {"right": request("GET", path, [(header, right_prefix)]),
             "wrong": request("GET", path, [(header, wrong_prefix)])}
    samples = {"right": [], "wrong": []}
    try:
        for _ in range(200):  # warm-up
            for data in kinds.values():
                client.call(data)
        for i in range(TIMING_REQUESTS):
            kind = "right" if i % 2 == 0 else "wrong"
            start = time.perf_counter_ns()
            status, _ = client.call(kinds[kind])
            samples[kind].append((time.perf_counter_ns() - start) / 1000)
            assert status == expected_status, (kind, status)
    finally:
        client.close()
    right, wrong = statistics.median(samples["right"]), statistics.median(samples["wrong"])
    half = len(samples["right"]) // 2
    noise = abs(statistics.median(samples["right"][:half]) - statistics.median(samples["right"][half:]))
    return right, wrong, noise


def assert_constant_time(name, right, wrong, noise):
    bound = max(TIMING_TOLERANCE * min(right, wrong), TIMING_FLOOR_US)
    print(f"\n{name}: median right-prefix {right:.1f} µs, wrong-prefix {wrong:.1f} µs, difference "
          f"{abs(right - wrong):.1f} µs (noise between halves {noise:.1f} µs, bar {bound:.1f} µs, "
          f"{TIMING_REQUESTS} requests)")
    assert abs(right - wrong) <= bound, f"{name}: timing differs by {abs(right - wrong):.1f} µs > {bound:.1f} µs"


def test_b5_token_compare_timing(live):
    port = live.imds_port()
    good = put_token(port, "21600").body.decode()
    right, wrong, noise = timing_figure(port, ROLE_PATH, TOKEN_HEADER, flip(good, len(good) - 1), flip(good, 0), 401)
    assert_constant_time("B5 IMDS token", right, wrong, noise)


def test_b12_ecs_authorization(live):
    port = live.ecs_port
    path = live.profiles["web"]["ecs_path"]
    token = live.ecs_token_file().read_text()
    assert len(token) >= 22
    cases = {
        "missing": ([], 401),
        "empty": ([("Authorization", "")], 403),
        "wrong": ([("Authorization", "x" * len(token))], 403),
        "prefix only": ([("Authorization", token[:len(token) // 2])], 403),
        "one byte off": ([("Authorization", flip(token, len(token) - 1))], 403),
        "token plus a byte": ([("Authorization", token + "x")], 403),
        "Bearer prefix": ([("Authorization", "Bearer " + token)], 403),
        "Basic prefix": ([("Authorization", "Basic " + token)], 403),
        "two headers": ([("Authorization", token), ("Authorization", token)], 400),
        "two headers, one wrong": ([("Authorization", "x"), ("Authorization", token)], 400),
        "CRLF in the token": ([("Authorization", token[:8] + "\r\n" + token[8:])], 400),
        "NUL in the token": ([("Authorization", token[:8] + "\x00" + token[8:])], 400),
        "lower-case header name, wrong value": ([("authorization", "x")], 403),
    }
    for name, (headers, status) in cases.items():
        reply = exchange(port, request("GET", path, headers), close_wait=0.05)
        assert reply.status == status, f"{name}: {reply}"
        assert b"SecretAccessKey" not in reply.raw and token.encode() not in reply.raw, name
    ok = exchange(port, request("GET", path, [("authorization", token)]), close_wait=0.05)
    assert ok.status == 200 and b"SecretAccessKey" in ok.body, ok


def test_b12_ecs_token_compare_timing(live):
    token = live.ecs_token_file().read_text()
    right, wrong, noise = timing_figure(live.ecs_port, live.profiles["web"]["ecs_path"], "Authorization",
                                        flip(token, len(token) - 1), flip(token, 0), 403)
    assert_constant_time("B12 ECS token", right, wrong, noise)
