"""Keys, certificates and configuration files the agent must refuse before anything goes on the wire
(docs/test-plan.md §6, rows B11 and B13).

B11 runs `credential-process` on every malformed, mismatched, unsupported or unsafe key and certificate: each is
refused with the documented exit code and one line naming the file or the reason, and the emulator sees 0
CreateSession requests. The supported formats (PKCS#1, SEC1, PKCS#8, encrypted PKCS#8 in every PRF/cipher/scrypt
variant, PKCS#12, combined PEM, DER, P-256/P-384/P-521, RSA-2048) are accepted, which the emulator only allows
after verifying the signature: P-384 and P-521 sign the SHA-256 digest that AWS4-X509-ECDSA-SHA256 requires.

B13 runs `serve --config` on broken configuration files: exit 78 and `FILE:LINE: what is wrong`.
"""

import datetime
import json
import os
import re

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from radtest import certificates
from radtest.agent import AgentProcess, render_config

EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_NOPERM, EX_CONFIG = 64, 65, 66, 77, 78
ENCRYPTED = ["p256-enc-aes128-sha1.key", "p256-enc-aes192-sha384.key", "p256-enc-aes256-sha256.key",
             "p256-enc-aes256-sha512.key", "p256-enc-scrypt.key"]


def one_line(result, codes, what):
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode in codes, f"{what}: exit {result.returncode}, stderr {stderr!r}"
    assert result.stdout == b"", what
    lines = [line for line in stderr.splitlines() if "warning:" not in line]
    assert len(lines) == 1 and lines[0].startswith("rolesanywhere-agent: "), f"{what}: {stderr!r}"
    return lines[0]


def key_cases(pki, d):
    """name -> (certificate, key, extra args, accepted exit codes, regex the one line must match)."""
    (d / "random.der").write_bytes(os.urandom(700))
    os.chmod(d / "random.der", 0o600)
    (d / "big.pem").write_text("-----BEGIN PRIVATE KEY-----\n" + ("A" * 64 + "\n") * 17000 + "-----END PRIVATE KEY-----\n")
    os.chmod(d / "big.pem", 0o600)
    (d / "malformed.key").write_text("-----BEGIN PRIVATE KEY-----\nnot base64 at all !!\n-----END PRIVATE KEY-----\n")
    os.chmod(d / "malformed.key", 0o600)
    (d / "empty.key").write_text("")
    os.chmod(d / "empty.key", 0o600)
    os.mkfifo(d / "fifo.key", 0o600)
    # A link that another user owns (and so may point anywhere); links that only root or the caller can change
    # are followed (tests/secrets S5).
    os.symlink(pki / "p256.key", d / "link.key")
    os.lchown(d / "link.key", 65534, 65534)
    for mode in (0o644, 0o660, 0o640, 0o604):
        target = d / f"p256-{mode:o}.key"
        target.write_bytes((pki / "p256.key").read_bytes())
        os.chmod(target, mode)
    # A leaf on brainpoolP256r1 (the test PKI has none).
    now = certificates.now()
    certificates.issue_pair(pki, d, "brainpool", now - datetime.timedelta(hours=1),
                            now + datetime.timedelta(days=1), curve=ec.BrainpoolP256R1())
    wrong = d / "wrong.pass"
    wrong.write_text("definitely-not-it\n")
    os.chmod(wrong, 0o600)
    p = lambda name: str(pki / name)  # noqa: E731
    cases = {
        "malformed PEM key": (p("p256.pem"), str(d / "malformed.key"), [], {EX_DATAERR}, r"malformed\.key"),
        "random DER key": (p("p256.pem"), str(d / "random.der"), [], {EX_DATAERR}, r"random\.der"),
        "empty key": (p("p256.pem"), str(d / "empty.key"), [], {EX_DATAERR}, r"empty\.key"),
        "1 MB PEM key": (p("p256.pem"), str(d / "big.pem"), [], {EX_DATAERR}, r"big\.pem"),
        "garbage certificate": (p("garbage.pem"), p("p256.key"), [], {EX_DATAERR}, r"garbage\.pem"),
        "truncated certificate": (p("truncated.pem"), p("p256.key"), [], {EX_DATAERR}, r"truncated\.pem"),
        "random DER certificate": (str(d / "random.der"), p("p256.key"), [], {EX_DATAERR}, r"random\.der"),
        "RSA key with an EC certificate": (p("p256.pem"), p("rsa2048.key"), [], {EX_DATAERR}, r"does not belong"),
        "two P-256 keys": (p("p256.pem"), p("mismatch.key"), [], {EX_DATAERR}, r"does not belong"),
        "secp256k1": (p("secp256k1.pem"), p("secp256k1.key"), [], {EX_DATAERR}, r"(?i)curve|secp256k1|support"),
        "brainpoolP256r1": (str(d / "brainpool.pem"), str(d / "brainpool.key"), [], {EX_DATAERR},
                            r"(?i)curve|brainpool|support"),
        "Ed25519": (p("ed25519.pem"), p("ed25519.key"), [], {EX_DATAERR}, r"(?i)ed25519|support|algorithm"),
        "RSA-1024": (p("rsa1024.pem"), p("rsa1024.key"), [], {EX_DATAERR}, r"(?i)1024|too small|bits"),
        "no digitalSignature": (p("no-digital-signature.pem"), p("no-digital-signature.key"), [], {EX_DATAERR},
                                r"(?i)digitalSignature|key usage"),
        "CA certificate as leaf": (p("ca-as-leaf.pem"), p("ca-as-leaf.key"), [], {EX_DATAERR}, r"(?i)\bCA\b"),
        "v1 certificate": (p("v1.pem"), p("v1.key"), [], {EX_DATAERR}, r"(?i)v1|version"),
        "expired": (p("expired.pem"), p("expired.key"), [], {EX_DATAERR}, r"\d{4}-\d\d-\d\d"),
        "not yet valid": (p("not-yet-valid.pem"), p("not-yet-valid.key"), [], {EX_DATAERR}, r"\d{4}-\d\d-\d\d"),
        "chain in the wrong order": (p("p256-via-intermediate.pem"), p("p256-via-intermediate.key"),
                                     ["--intermediates", p("intermediates-wrong-order.pem")], {EX_DATAERR},
                                     r"(?i)order|chain|intermediate"),
        "key is a FIFO": (p("p256.pem"), str(d / "fifo.key"), [], {EX_DATAERR, EX_NOINPUT}, r"fifo\.key"),
        "key is /dev/zero": (p("p256.pem"), "/dev/zero", [], {EX_DATAERR, EX_NOINPUT}, r"/dev/zero"),
        "key is another user's symlink": (p("p256.pem"), str(d / "link.key"), [], {EX_NOPERM},
                                          r"symbolic link .*link\.key is owned by uid 65534"),
        "key is a directory": (p("p256.pem"), str(d), [], {EX_DATAERR, EX_NOINPUT}, re.escape(str(d))),
        "RSA PKCS#1 key, wrong passphrase given": (p("rsa2048.pem"), p("rsa2048-enc-aes256-sha256.key"),
                                                   ["--pkcs8-password-file", str(wrong)], {EX_DATAERR},
                                                   r"(?i)passphrase|decrypt"),
        "legacy PBES1 encryption": (p("p256.pem"), p("p256-enc-pbes1.key"),
                                    ["--pkcs8-password-file", p("passphrase.txt")], {EX_DATAERR}, r"PBES1"),
        "PKCS#12, wrong passphrase": (p("p256-modern.p12"), None, ["--pkcs8-password-file", str(wrong)],
                                      {EX_DATAERR}, r"(?i)passphrase|password|decrypt|mac"),
    }
    for mode in (0o644, 0o660, 0o640, 0o604):
        cases[f"key mode {mode:04o}"] = (p("p256.pem"), str(d / f"p256-{mode:o}.key"), [], {EX_NOPERM},
                                         rf"p256-{mode:o}\.key.*{mode:04o}")
    for name in ENCRYPTED:
        cases[f"{name}, no passphrase"] = (p("p256.pem"), p(name), [], {EX_DATAERR, EX_USAGE},
                                           r"(?i)encrypted|passphrase")
        cases[f"{name}, wrong passphrase"] = (p("p256.pem"), p(name), ["--pkcs8-password-file", str(wrong)],
                                              {EX_DATAERR}, r"(?i)passphrase|decrypt")
    return cases


def test_b11_every_bad_key_and_certificate_is_refused_before_the_network(agent, em, pki, tmp_path):
    cases = key_cases(pki, tmp_path)
    figures, failures = [], []
    for name, (certificate, key, extra, codes, pattern) in cases.items():
        args = ["--certificate", certificate] + (["--private-key", key] if key else [])
        result = agent.run("credential-process", *args, *extra, *agent.target_args(), timeout=30)
        try:
            line = one_line(result, codes, name)
            assert re.search(pattern, line), f"{name}: the message is not specific: {line}"
            assert b"-----BEGIN" not in result.stderr and b"definitely-not-it" not in result.stderr, name
            assert em.stats()["requests"] == 0, f"{name}: a CreateSession went out"
        except AssertionError as e:
            failures.append(str(e).splitlines()[0])
            continue
        figures.append(f"{result.returncode} {name}: {line[len('rolesanywhere-agent: '):][:150]}")
    print(f"\nB11: {len(figures)} refusals, 0 CreateSession\n" + "\n".join(figures))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("certificate,key,extra", [
    ("p256.pem", "p256.key", []), ("p384.pem", "p384.key", []), ("p521.pem", "p521.key", []),
    ("rsa2048.pem", "rsa2048.key", []), ("rsa2048.pem", "rsa2048-pkcs1.key", []), ("p256.pem", "p256-sec1.key", []),
    ("p256.der", "p256.key", []), ("p256-combined.pem", None, []),
    ("p256-modern.p12", None, ["--pkcs8-password-file", "passphrase.txt"]),
    *[("p256.pem", name, ["--pkcs8-password-file", "passphrase.txt"]) for name in ENCRYPTED],
])
def test_b11_supported_formats_sign_and_verify(agent, em, pki, certificate, key, extra):
    extra = [str(pki / e) if e.endswith(".txt") else e for e in extra]
    args = ["--certificate", str(pki / certificate)] + (["--private-key", str(pki / key)] if key else [])
    result = agent.run("credential-process", *args, *extra, *agent.target_args())
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["Version"] == 1
    stats = em.stats()
    assert stats["accepted"] == 1, stats.get("rejections")  # the emulator verified the signature


# ---------------------------------------------------------------------------------------------------------
# B13: configuration files


def config_cases(em, pki, d):
    """name -> (agent overrides, profile overrides, extra raw text, key expected on the reported line)."""
    eu = em.arns["profile_arn"].replace(":us-east-1:", ":eu-west-1:")
    return {
        "unknown agent key": ({"no_such_key": 1}, {}, "", "no_such_key"),
        "unknown profile key": ({}, {"certficate": "x"}, "", "certficate"),
        "trust anchor and profile in different regions": ({}, {"profile_arn": eu}, "", None),
        "session_duration 899": ({}, {"session_duration": 899}, "", "session_duration"),
        "session_duration 43201": ({}, {"session_duration": 43201}, "", "session_duration"),
        "session_duration a string": ({}, {"session_duration": "3600"}, "", "session_duration"),
        "log_level": ({"log_level": "verbose"}, {}, "", "log_level"),
        "hop_limit 0": ({"hop_limit": 0}, {}, "", "hop_limit"),
        "hop_limit 256": ({"hop_limit": 256}, {}, "", "hop_limit"),
        "socket_mode for others": ({"socket_mode": "0666"}, {}, "", "socket_mode"),
        "listen address": ({}, {"imds_listen": "127.0.0.1"}, "", "imds_listen"),
        "port out of range": ({"ecs_listen": "127.0.0.1:70000"}, {}, "", "ecs_listen"),
        "refresh window": ({"refresh_window": [0.9, 0.5]}, {}, "", "refresh_window"),
        "malformed ARN": ({}, {"role_arn": "arn:aws:iam::role"}, "", "role_arn"),
        "missing required key": ({}, {"trust_anchor_arn": None}, "", None),
        "TOML syntax error": ({}, {}, "[profiles.web\n", None),
        "unknown table": ({}, {}, "[agnet]\nx = 1\n", None),
    }


def test_b13_config_mistakes_are_exit_78_with_file_and_line(em, pki, tmp_path):
    figures = []
    for name, (agent_overrides, profile_overrides, raw, key) in config_cases(em, pki, tmp_path).items():
        directory = tmp_path / re.sub(r"\W+", "-", name)
        process = AgentProcess(directory, em, pki)
        process.agent.update(agent_overrides)
        settings = process.profile("web")
        for k, v in profile_overrides.items():
            if v is None:
                settings.pop(k, None)
            else:
                settings[k] = v
        text = render_config(process.agent, process.profiles) + raw
        process.write_config(text)
        result = process.run("serve", "--config", process.config_path, timeout=20)
        stderr = result.stderr.decode(errors="replace")
        assert result.returncode == EX_CONFIG, f"{name}: exit {result.returncode}: {stderr}"
        match = re.search(re.escape(str(process.config_path)) + r":(\d+)", stderr)
        assert match, f"{name}: no FILE:LINE in {stderr!r}"
        if key is not None:
            lines = text.splitlines()
            line_number = int(match[1])
            assert key in lines[line_number - 1], f"{name}: line {line_number} is {lines[line_number - 1]!r}"
        assert em.stats()["requests"] == 0, name
        figures.append(f"{name}: {stderr.strip().splitlines()[-1][:160]}")
    print("\nB13:\n" + "\n".join(figures))


@pytest.mark.parametrize("mode", [0o664, 0o666, 0o622])
def test_b13_config_writable_by_others_is_refused(em, pki, tmp_path, mode):
    process = AgentProcess(tmp_path, em, pki)
    process.profile("web")
    process.write_config()
    os.chmod(process.config_path, mode)
    result = process.run("serve", "--config", process.config_path, timeout=20)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == EX_CONFIG, stderr
    assert str(process.config_path) in stderr and "writable" in stderr, stderr
    assert em.stats()["requests"] == 0
