"""S1 and S8 (docs/test-plan.md §8): a representative agent session — startup, IMDS, ECS and the fast path,
refused requests, refreshes, failed refreshes, a reload — at every log level and in both log formats, with canary
credentials from the emulator and an encrypted key whose passphrase comes from a file. Every byte the agent wrote
(stderr), every error body and every stderr of credential_process runs (failing and succeeding, --debug) is
searched for the canary secret and token, the IMDS and ECS tokens, the passphrase and PEM key blocks: 0 hits. An
access key id may appear only as its last 4 characters."""

import json
import re
import signal

import pytest

from radtest.agent import AgentProcess
from radtest.environment import wait_until
from radtest.rawhttp import CREDENTIALS_PATH, TOKEN_HEADER, TOKEN_PATH, TTL_HEADER, exchange, request

PASSPHRASE_KEY = "p256-enc-aes256-sha256.key"
LEVELS = [("debug", "text"), ("debug", "json"), ("info", "text"), ("info", "json"), ("warning", "text"),
          ("error", "json")]


def started(process, what, count=1):
    return process.wait_for_log(rf'event={what}\b|"event":"{what}"', count=count)


def written(path, after=None):
    """Wait (bounded) until the credentials file exists and, with `after`, has a newer mtime: how a session at
    warning or error level, which logs no success, is followed."""
    def ready():
        return path.exists() and (after is None or path.stat().st_mtime_ns > after)
    wait_until(ready, 20, interval=0.05, what=f"a write of {path}")
    return path.stat().st_mtime_ns


def forbidden_in(text, secrets):
    hits = [name for name, value in secrets.items() if value and value in text]
    if re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY", text):
        hits.append("PEM private key block")
    for akid in re.findall(r"ASIA[A-Z0-9]{16}", text):
        hits.append(f"full access key id {akid[:4]}...")
    return hits


@pytest.mark.parametrize("level,fmt", LEVELS, ids=[f"{l}-{f}" for l, f in LEVELS])
def test_s1_no_secret_in_any_log_level_or_format(em, pki, tmp_path, level, fmt):
    passphrase = (pki / "passphrase.txt").read_text().strip()
    em.faults({"canary": True, "count": 50})
    process = AgentProcess(tmp_path, em, pki)
    process.agent.update({"log_level": level, "log_format": fmt})
    process.profile("web", private_key=str(pki / PASSPHRASE_KEY), passphrase_file=str(pki / "passphrase.txt"),
                    credentials_file_profile="web", credentials_file=str(tmp_path / "aws" / "credentials"))
    process.start(wait_started=False)
    outputs = []
    try:
        quiet = level in ("warning", "error")
        credentials_file = tmp_path / "aws" / "credentials"
        if not quiet:
            started(process, "started")
            started(process, "refresh_ok")
        first_write = written(credentials_file)
        port = process.imds_port()
        token = exchange(port, request("PUT", TOKEN_PATH, [(TTL_HEADER, "300")]), close_wait=0).body.decode()
        imds = exchange(port, request("GET", CREDENTIALS_PATH + "rad-test-role", [(TOKEN_HEADER, token)]),
                        close_wait=0)
        assert imds.status == 200 and b"CANARY-SECRET-" in imds.body, imds
        ecs_token = process.ecs_token_file().read_text()
        ecs = exchange(process.ecs_port, request("GET", process.profiles["web"]["ecs_path"],
                                                 [("Authorization", ecs_token)]), close_wait=0)
        assert ecs.status == 200 and b"CANARY-TOKEN-" in ecs.body, ecs
        issued = json.loads(ecs.body)
        fast = process.credential_process("web", "--no-fallback")
        assert fast.returncode == 0 and b"CANARY-SECRET" in fast.stdout, fast
        outputs.append(fast.stderr)
        # Refusals with secrets in the request: error bodies and log lines must not carry them.
        refusals = [exchange(port, request("GET", CREDENTIALS_PATH, [(TOKEN_HEADER, token[:-2] + "AA")]), close_wait=0),
                    exchange(port, request("GET", CREDENTIALS_PATH, [(TOKEN_HEADER, token), ("Via", token)]), close_wait=0),
                    exchange(process.ecs_port, request("GET", process.profiles["web"]["ecs_path"] + "?t=" + ecs_token),
                             close_wait=0),
                    exchange(process.ecs_port, request("GET", process.profiles["web"]["ecs_path"],
                                                       [("Authorization", ecs_token + "x")]), close_wait=0)]
        outputs += [r.raw for r in refusals]
        for name in ("status",):
            result = process.run(name, "--socket", process.socket_path, "--json")
            assert result.returncode == 0, result
            outputs += [result.stdout, result.stderr]
        # A reload, a refresh, then failing refreshes (503, then a refusal), then recovery.
        process.signal(signal.SIGHUP)
        process.request_refresh()
        written(credentials_file, after=first_write)
        em.faults({"status": 503, "count": 3}, {"status": 403, "message": "Invalid signature (injected)"})
        process.request_refresh()
        if level != "error":
            started(process, "refresh_failed")
    finally:
        assert process.stop() == 0
    log = process.log()
    assert log.strip() or level == "error", "the agent wrote nothing at all"
    secrets = {"canary secret": "CANARY-SECRET", "canary token": "CANARY-TOKEN", "IMDS token": token,
               "ECS token": ecs_token, "passphrase": passphrase, "issued secret": issued["SecretAccessKey"],
               "issued token": issued["Token"]}
    for record in em.issued():
        secrets[f"issued secret {record['secretAccessKey'][-6:]}"] = record["secretAccessKey"]
        secrets[f"issued access key {record['accessKeyId'][-4:]}"] = record["accessKeyId"]
    hits = forbidden_in(log, secrets)
    for output in outputs:
        hits += forbidden_in(output.decode(errors="replace"), {k: v for k, v in secrets.items()
                                                                if "access key" not in k})
    print(f"\nS1 {level}/{fmt}: {len(log.splitlines())} log lines, {len(outputs)} other outputs, "
          f"{len(secrets)} secrets searched, {len(hits)} hits")
    assert not hits, f"secrets found: {hits}"
    if fmt == "json":
        for line in log.splitlines():
            if line.startswith("{"):
                json.loads(line)


def test_s8_credential_process_stderr_holds_no_secret(agent, em, pki, tmp_path):
    passphrase = (pki / "passphrase.txt").read_text().strip()
    env = {"RAD_S8_PASSPHRASE": passphrase}
    base = ["credential-process", "--certificate", str(pki / "p256.pem"), "--private-key", str(pki / PASSPHRASE_KEY),
            "--pkcs8-password-env", "RAD_S8_PASSPHRASE", "--debug", *agent.target_args()]
    runs = []
    em.faults({"canary": True})
    runs.append(("success", agent.run(*base, env=env), 0))
    em.faults({"status": 503, "count": 3})
    runs.append(("503 three times", agent.run(*base, env=env), 75))
    em.faults({"status": 403, "message": "Invalid signature (injected)"})
    runs.append(("403", agent.run(*base, env=env), 77))
    runs.append(("wrong passphrase", agent.run(*base, env={"RAD_S8_PASSPHRASE": passphrase + "x"}), 65))
    on_argv = [a if a != "--pkcs8-password-env" else "--pkcs8-password" for a in base]
    on_argv[on_argv.index("RAD_S8_PASSPHRASE")] = passphrase
    runs.append(("passphrase on argv", agent.run(*on_argv), 0))
    secrets = {"passphrase": passphrase, "canary secret": "CANARY-SECRET", "canary token": "CANARY-TOKEN"}
    for record in em.issued():
        secrets["issued secret"] = record["secretAccessKey"]
        secrets["issued token"] = record["sessionToken"]
        secrets["issued access key id"] = record["accessKeyId"]
    for name, result, code in runs:
        assert result.returncode == code, (name, result.stderr.decode())
        hits = forbidden_in(result.stderr.decode(errors="replace"), secrets)
        assert not hits, f"{name}: {hits} on stderr"
    print(f"\nS8: {len(runs)} credential_process runs (--debug), 0 secrets on stderr")
