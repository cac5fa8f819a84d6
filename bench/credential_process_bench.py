#!/usr/bin/env python3
"""Time `rolesanywhere-agent credential-process` runs and read each run's peak RSS from wait4()."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--pki", required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--ca-bundle", required=True)
    ap.add_argument("--arns", required=True, help="JSON from ra_emulator.py --print-arns")
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    arns = json.loads(args.arns)
    results = {}
    for key in ("p256", "rsa2048"):
        cmd = [args.agent, "credential-process",
               "--certificate", f"{args.pki}/{key}.pem", "--private-key", f"{args.pki}/{key}.key",
               "--trust-anchor-arn", arns["trust_anchor_arn"], "--profile-arn", arns["profile_arn"],
               "--role-arn", arns["role_arn"], "--endpoint", args.endpoint, "--ca-bundle", args.ca_bundle]
        walls, rss = [], []
        for i in range(args.runs + 3):
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - start
            if os.waitstatus_to_exitcode(status) != 0:
                print(f"bench: run failed: {proc.stderr.read().decode().strip()}", file=sys.stderr)
                return 1
            proc.stderr.close()
            if i >= 3:  # warm-up runs fill the page cache
                walls.append(elapsed * 1000)
                rss.append(usage.ru_maxrss / 1024)
        walls.sort()
        p90 = walls[int(len(walls) * 0.9) - 1]
        results[key] = {"median_ms": statistics.median(walls), "p90_ms": p90, "peak_rss_mib": max(rss)}
        print(f"credential-process {key:8s} over HTTPS: median {statistics.median(walls):6.2f} ms, "
              f"p90 {p90:6.2f} ms, peak RSS {max(rss):5.2f} MiB ({args.runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
