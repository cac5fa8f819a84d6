#!/usr/bin/env python3
"""Time `rolesanywhere-agent credential-process` runs and measure their peak RSS.

Cold: the command signs by itself (P-256 and RSA-2048 over HTTPS against the emulator), and P-256 once more
trusting the system store as a call to AWS does (no --ca-bundle; the emulator's CA found in a hashed directory
named by SSL_CERT_DIR, the system's own bundle file left as it is); beside them `sign-string` with the same
P-256 key, the same work without the network. Warm (--socket): the
fast path, `credential-process --profile NAME --socket PATH --no-fallback`, answered from a running agent's
cache. Prints one line per case and, with --json, writes {case: {median_ms, p90_ms, peak_rss_mib, runs}}.

Peak RSS comes from GNU time (%M) in a few separate runs, not from wait4() of the timed runs: Linux carries a
child's pre-exec high-water mark across execve, so wait4() of a child forked from this Python process reports
Python's own ~12 MiB. time's pre-exec image is about 1.5 MiB, which bounds the error from above.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WARMUP_RUNS = 10  # they fill the page cache and wake the agent's thread up


RSS_RUNS = 5


def peak_rss_mib(cmd, env):
    """The largest peak RSS of RSS_RUNS runs under GNU time."""
    peaks = []
    for _ in range(RSS_RUNS):
        result = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, check=True, env=env)
        peaks.append(int(result.stderr.decode().strip().splitlines()[-1]) / 1024)
    return max(peaks)


def measure(cmd, runs, env=None):
    walls = []
    for i in range(runs + WARMUP_RUNS):
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=env)
        _, status = os.waitpid(proc.pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"run failed: {proc.stderr.read().decode().strip()}")
        proc.stderr.close()
        if i >= WARMUP_RUNS:
            walls.append(elapsed * 1000)
    walls.sort()
    return {"median_ms": round(statistics.median(walls), 3), "p90_ms": round(walls[int(len(walls) * 0.9) - 1], 3),
            "peak_rss_mib": round(peak_rss_mib(cmd, env), 2), "runs": runs}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--pki", help="cold runs: the test PKI directory")
    ap.add_argument("--endpoint")
    ap.add_argument("--ca-bundle")
    ap.add_argument("--arns", help="JSON from ra_emulator.py --print-arns")
    ap.add_argument("--system-store-dir", help="cold runs: a hashed directory holding the emulator's CA")
    ap.add_argument("--socket", help="warm runs: the running agent's socket")
    ap.add_argument("--config", help="warm runs: also find the socket through this configuration file")
    ap.add_argument("--profile", default="bench")
    args = ap.parse_args()
    cases = {}
    environments = {}
    if args.socket:
        cases["warm_fast_path"] = [args.agent, "credential-process", "--profile", args.profile, "--socket",
                                   args.socket, "--no-fallback"]
        if args.config:
            # As ~/.aws/config usually has it: no --socket, the front scans the configuration for it.
            cases["warm_fast_path_config"] = [args.agent, "credential-process", "--profile", args.profile,
                                              "--config", args.config, "--no-fallback"]
    else:
        arns = json.loads(args.arns)
        for key in ("p256", "rsa2048"):
            cases[f"cold_{key}"] = [
                args.agent, "credential-process", "--certificate", f"{args.pki}/{key}.pem", "--private-key",
                f"{args.pki}/{key}.key", "--trust-anchor-arn", arns["trust_anchor_arn"], "--profile-arn",
                arns["profile_arn"], "--role-arn", arns["role_arn"], "--endpoint", args.endpoint, "--ca-bundle",
                args.ca_bundle]
        # The same start, files and signature without the network: what the cold call spends before and
        # around its HTTPS exchange.
        cases["sign_string_p256"] = [args.agent, "sign-string", "--certificate", f"{args.pki}/p256.pem",
                                     "--private-key", f"{args.pki}/p256.key"]
        if args.system_store_dir:
            cases["cold_p256_system_store"] = cases["cold_p256"][:-2]
            environments["cold_p256_system_store"] = {
                **{k: v for k, v in os.environ.items() if k not in ("AWS_CA_BUNDLE", "SSL_CERT_FILE")},
                "SSL_CERT_DIR": args.system_store_dir}
    results = {}
    for name, cmd in cases.items():
        try:
            r = results[name] = measure(cmd, args.runs, environments.get(name))
        except RuntimeError as e:
            print(f"bench: {name}: {e}", file=sys.stderr)
            return 1
        print(f"credential-process {name:22s}: median {r['median_ms']:6.2f} ms, p90 {r['p90_ms']:6.2f} ms, "
              f"peak RSS {r['peak_rss_mib']:5.2f} MiB ({args.runs} runs)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
