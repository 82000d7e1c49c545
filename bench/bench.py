#!/usr/bin/env python3
"""Measures the engine: start-up of a one-step runbook against `bash -c true`, per-step
overhead on a runbook of 10,000 steps, and the peak memory of that run.

Usage: python3 bench/bench.py [path/to/runbook-binary]   (default: target/release/runbook)
Prints a Markdown table for the README. Uses only the standard library.
"""

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = 30


def timed(argv, cwd):
    """Wall time of one run, and the peak RSS (KiB) of the child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(before, after)


def median_ms(argv, cwd, rounds=ROUNDS):
    samples = [timed(argv, cwd)[0] for _ in range(rounds)]
    return statistics.median(samples) * 1000


def peak_kib(argv, cwd):
    """Peak RSS of one run, measured in a fresh Python child so earlier runs do not count."""
    code = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/runbook")
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "one.rhai"), "w") as f:
            f.write('step("one", || 1);\n')
        with open(os.path.join(work, "many.rhai"), "w") as f:
            f.write('section("many", || {\n  for i in 0..10000 { step(`step ${i}`, || i); }\n});\n')
        run = [binary, "run", "--runs-dir", "runs", "--no-progress", "-q"]

        bash = median_ms(["bash", "-c", "true"], work)
        one = median_ms(run + ["one.rhai"], work)
        many = median_ms(run + ["many.rhai"], work, rounds=5)
        per_step_us = (many - one) * 1000 / 10000
        peak = peak_kib(run + ["many.rhai"], work)

    print("| measure | result |")
    print("|---|---|")
    print(f"| `bash -c true` (median of {ROUNDS}) | {bash:.1f} ms |")
    print(f"| one-step runbook, whole run (median of {ROUNDS}) | {one:.1f} ms ({one / bash:.1f}x bash) |")
    print(f"| 10,000-step runbook, whole run (median of 5) | {many:.0f} ms |")
    print(f"| engine overhead per step | {per_step_us:.1f} µs |")
    print(f"| peak memory of the 10,000-step run | {peak / 1024:.1f} MiB |")


if __name__ == "__main__":
    main()
