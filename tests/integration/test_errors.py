"""Failures: local checks before any request, service rejections, retries, faults, and secrets kept off stderr."""

import json
import re
import time

import pytest

from radtest.agent import AgentProcess

EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_UNAVAILABLE, EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 64, 65, 66, 69, 75, 77, 78
DATE = re.compile(r"\d{4}-\d\d-\d\d")


def one_line_error(result, code):
    """The failure contract: the documented exit code, nothing on stdout, one line on stderr naming the agent."""
    stderr = result.stderr.decode()
    assert result.returncode == code, f"exit {result.returncode}, stderr: {stderr}"
    assert result.stdout == b""
    lines = [l for l in stderr.splitlines() if "warning:" not in l]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("rolesanywhere-agent: ")
    return lines[0]


def requests_seen(em):
    return em.stats()["requests"]


# ---------------------------------------------------------------------------------------------------------
# Local checks: nothing goes on the wire


def test_profile_in_another_region_is_a_usage_error(agent, em):
    profile = em.arns["profile_arn"].replace(":us-east-1:", ":eu-west-1:")
    line = one_line_error(agent.credential_process(arns={"profile_arn": profile}), EX_USAGE)
    assert "region" in line
    assert requests_seen(em) == 0


def test_malformed_arn_is_a_usage_error(agent, em):
    line = one_line_error(agent.credential_process(arns={"trust_anchor_arn": "not-an-arn"}), EX_USAGE)
    assert "trust" in line.lower()
    assert requests_seen(em) == 0


def malformed(arns):
    """ARNs that parse as ARNs but that AWS can never have issued: caught before the request is signed."""
    ta, profile, role = arns["trust_anchor_arn"], arns["profile_arn"], arns["role_arn"]
    account = ta.split(":")[4]
    return [
        ("trust_anchor_arn", "--trust-anchor-arn", ta.replace(f":{account}:", ":1234:")),
        ("trust_anchor_arn", "--trust-anchor-arn", ta.rsplit("/", 1)[0] + "/ta-1"),
        ("trust_anchor_arn", "--trust-anchor-arn", ta.replace("arn:aws:", "arn:amazon:")),
        ("profile_arn", "--profile-arn", profile.replace(f":{account}:", f":{account}0:")),
        ("profile_arn", "--profile-arn", profile + "0"),
        ("role_arn", "--role-arn", role.replace("arn:aws:iam::", "arn:aws:iam:us-east-1:")),
        ("role_arn", "--role-arn", role.replace(f"::{account}:", "::12345678901x:")),
        ("role_arn", "--role-arn", role.rsplit("/", 1)[0] + "/a*b"),
    ]


def test_malformed_arn_parts_are_usage_errors_before_any_request(agent, em):
    for key, flag, arn in malformed(em.arns):
        line = one_line_error(agent.credential_process(arns={key: arn}), EX_USAGE)
        assert line.startswith(f"rolesanywhere-agent: {flag} "), line
        assert requests_seen(em) == 0, (arn, line)


def test_malformed_arn_in_the_configuration_names_its_line(em, pki, tmp_path):
    """The same checks on `serve --config`: exit 78 at FILE:LINE of the key, before any request."""
    for key, _, arn in malformed(em.arns):
        agent = AgentProcess(tmp_path / key, em, pki)
        agent.profile("web", **{key: arn})
        text = agent.write_config()
        line_number = next(i for i, l in enumerate(text.splitlines(), 1) if l.startswith(f"{key} ="))
        # A configuration that were accepted would keep `serve` running: the timeout kills it and fails.
        result = agent.run("serve", "--config", agent.config_path, timeout=20)
        stderr = result.stderr.decode()
        assert result.returncode == EX_CONFIG, (arn, stderr)
        assert f"{agent.config_path}:{line_number}: profiles.web.{key}: " in stderr, (arn, stderr)
        assert requests_seen(em) == 0, (arn, stderr)


def test_key_of_another_certificate(agent, em):
    line = one_line_error(agent.credential_process("p256.pem", "mismatch.key"), EX_DATAERR)
    assert "mismatch.key" in line or "match" in line
    assert requests_seen(em) == 0


@pytest.mark.parametrize("name", ["expired", "not-yet-valid"])
def test_certificate_outside_its_validity_period(agent, em, name):
    line = one_line_error(agent.credential_process(f"{name}.pem", f"{name}.key"), EX_DATAERR)
    assert DATE.search(line), f"the message should give the dates: {line}"
    assert requests_seen(em) == 0


@pytest.mark.parametrize("name", ["ca-as-leaf", "no-digital-signature", "v1", "rsa1024", "secp256k1", "ed25519"])
def test_unusable_leaf_or_key(agent, em, name):
    one_line_error(agent.credential_process(f"{name}.pem", f"{name}.key"), EX_DATAERR)
    assert requests_seen(em) == 0


def test_wrong_passphrase(agent, em, tmp_path):
    wrong = tmp_path / "wrong-passphrase"
    wrong.write_text("not-the-passphrase\n")
    wrong.chmod(0o600)
    one_line_error(agent.credential_process("p256.pem", "p256-enc-aes256-sha256.key", "--pkcs8-password-file",
                                            wrong), EX_DATAERR)
    assert requests_seen(em) == 0


def test_garbage_certificate(agent, em):
    line = one_line_error(agent.credential_process("garbage.pem", "p256.key"), EX_DATAERR)
    assert "garbage.pem" in line


@pytest.mark.parametrize("flag", ["--certificate", "--private-key", "--intermediates", "--pkcs8-password-file"])
def test_missing_file(agent, em, tmp_path, flag):
    missing = tmp_path / "does-not-exist.pem"
    args = {"--certificate": ("credential-process", "--certificate", missing, "--private-key", agent.path("p256.key")),
            "--private-key": ("credential-process", "--certificate", agent.path("p256.pem"), "--private-key", missing),
            "--intermediates": ("credential-process", *agent.identity_args(), "--intermediates", missing),
            "--pkcs8-password-file": ("credential-process", *agent.identity_args("p256.pem",
                                                                                 "p256-enc-aes256-sha256.key"),
                                      "--pkcs8-password-file", missing)}[flag]
    line = one_line_error(agent.run(*args, *agent.target_args()), EX_NOINPUT)
    assert "does-not-exist.pem" in line
    assert requests_seen(em) == 0


def test_key_readable_by_others_is_refused(agent, em, private_copy):
    key = private_copy("p256.key", 0o644)
    line = one_line_error(agent.credential_process("p256.pem", key), EX_NOPERM)
    assert str(key) in line or "p256.key" in line
    assert requests_seen(em) == 0


def test_key_readable_by_others_with_explicit_override(agent, em, private_copy):
    key = private_copy("p256.key", 0o644)
    result = agent.credential_process("p256.pem", key, "--allow-insecure-key-permissions")
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize("args", [("credential-process", "--no-such-flag"), ("no-such-command",),
                                  ("credential-process", "--session-duration", "60")])
def test_usage_errors(agent, em, args):
    extra = [] if args[0] != "credential-process" else [*agent.identity_args(), *agent.target_args()]
    result = agent.run(*args, *extra)
    assert result.returncode == EX_USAGE, result.stderr.decode()
    assert result.stdout == b""
    assert requests_seen(em) == 0


def test_missing_arns_are_a_usage_error(agent, em):
    one_line_error(agent.run("credential-process", *agent.identity_args()), EX_USAGE)


# ---------------------------------------------------------------------------------------------------------
# The service refuses


def test_role_in_another_account_is_refused_by_the_service(agent, em):
    line = one_line_error(agent.credential_process(arns={"role_arn": "arn:aws:iam::210987654321:role/rad-test-role"}),
                          EX_NOPERM)
    assert "403" in line or "AccessDenied" in line
    s = em.stats()
    assert s["requests"] == 1 and s["rejected"] == 1  # a rejection is not retried


def test_role_not_in_the_profile(agent, em):
    line = one_line_error(agent.credential_process(arns={"role_arn": "arn:aws:iam::123456789012:role/other"}),
                          EX_NOPERM)
    assert "is not in the profile's roles" in line, "the service's message should be passed on"


def test_a_signing_region_other_than_the_trust_anchors_is_refused_before_sending(agent, em):
    """The service would refuse it with 403 (its credential scope names another region): it is refused here,
    as a usage error naming the flag, and nothing is sent."""
    line = one_line_error(agent.credential_process("p256.pem", "p256.key", "--region", "eu-west-1"), EX_USAGE)
    assert line.startswith("rolesanywhere-agent: --region 'eu-west-1': the trust anchor and the profile are in "
                           f"'{em.arns['region']}'"), line
    assert requests_seen(em) == 0


def test_injected_403(agent, em):
    em.faults({"status": 403, "message": "Invalid signature (injected)"})
    line = one_line_error(agent.credential_process(), EX_NOPERM)
    assert "Invalid signature (injected)" in line
    assert requests_seen(em) == 1


def test_untrusted_server_certificate(agent, em):
    args = ["credential-process", *agent.identity_args()]
    target = agent.target_args()
    target[target.index("--ca-bundle") + 1] = agent.path("root-ca.pem")  # not the emulator's TLS CA
    one_line_error(agent.run(*args, *target), EX_UNAVAILABLE)
    assert requests_seen(em) == 0


# ---------------------------------------------------------------------------------------------------------
# Retries


def test_500_three_times_is_a_temporary_failure(agent, em):
    em.faults({"status": 500, "count": 3})
    line = one_line_error(agent.credential_process(), EX_TEMPFAIL)
    assert "500" in line
    s = em.stats()
    assert s["requests"] == 3 and s["faulted"] == 3
    assert all(r["headers"]["X-Amz-Date"] for r in s["recorded"])


def test_503_twice_then_success(agent, em):
    em.faults({"status": 503, "count": 2})
    result = agent.credential_process()
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["AccessKeyId"] == em.issued()[0]["accessKeyId"]
    s = em.stats()
    assert s["requests"] == 3 and s["accepted"] == 1
    authorizations = {r["headers"]["Authorization"] for r in s["recorded"]}
    assert len(authorizations) >= 1


def test_429_waits_for_retry_after(agent, em):
    em.faults({"status": 429, "retry_after": 2})
    start = time.monotonic()
    result = agent.credential_process()
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr.decode()
    assert elapsed >= 2.0, f"the retry came after {elapsed:.2f} s, before Retry-After"
    assert requests_seen(em) == 2


def test_long_retry_after_ends_at_once(agent, em):
    em.faults({"status": 429, "retry_after": 120, "count": 3})
    start = time.monotonic()
    one_line_error(agent.credential_process(), EX_TEMPFAIL)
    assert time.monotonic() - start < 10
    assert requests_seen(em) == 1


def test_connection_closed_then_success(agent, em):
    em.faults({"close": True})
    result = agent.credential_process()
    assert result.returncode == 0, result.stderr.decode()
    assert requests_seen(em) == 2


@pytest.mark.parametrize("fault", [{"malformed_json": True}, {"empty_credential_set": True}, {"expired": True}])
def test_unusable_answers(agent, em, fault):
    em.faults(dict(fault, count=3))
    one_line_error(agent.credential_process(), EX_UNAVAILABLE)
    assert requests_seen(em) >= 1


def test_slow_answer_hits_the_timeout(agent, em):
    em.faults({"delay_ms": 2500, "count": 3})
    start = time.monotonic()
    result = agent.credential_process("p256.pem", "p256.key", "--timeout", "1")
    assert result.returncode == EX_TEMPFAIL, result.stderr.decode()
    assert time.monotonic() - start < 15
    # Let the emulator finish the abandoned requests, so that they do not count in the next test's statistics.
    deadline = time.monotonic() + 15
    while any("outcome" not in r for r in em.stats()["recorded"]) and time.monotonic() < deadline:
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------------------
# Secrets


def test_canary_credentials_never_reach_stderr(agent, em):
    em.faults({"status": 503}, {"canary": True})
    result = agent.credential_process("p256.pem", "p256-enc-aes256-sha256.key", "--pkcs8-password-env",
                                      "RAD_IT_PASSPHRASE", "--debug", env={"RAD_IT_PASSPHRASE": "test-passphrase"})
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)
    assert document["SecretAccessKey"].startswith("CANARY-SECRET-")
    assert document["SessionToken"].startswith("CANARY-TOKEN-")
    stderr = result.stderr.decode()
    assert "debug" in stderr, "--debug should print diagnostics"
    for secret in ("CANARY-SECRET", "CANARY-TOKEN", "test-passphrase", document["AccessKeyId"]):
        assert secret not in stderr, f"{secret} leaked to stderr"
    signature = em.stats()["last_request"]["headers"]["Authorization"].rsplit("Signature=", 1)[1]
    assert signature not in stderr


def test_password_flag_is_not_visible_in_error_output(agent, em):
    result = agent.credential_process("p256.pem", "p256-enc-aes256-sha256.key", "--pkcs8-password", "wrong-secret-xyz",
                                      "--debug")
    assert result.returncode == EX_DATAERR
    assert b"wrong-secret-xyz" not in result.stderr
