#!/usr/bin/env python3
"""Smoke run of the benchmark suite: `sbx_bench --quick`, end to end.

    smoke_test.py SBX_BENCH

Asserts nothing about time. It checks that the run succeeds, that every
row of the table was measured (sbx, its baselines and the floor server)
with no failed call, and that the run left nothing behind: no temp
directory, no cgroup of the bench's sbxd, no sbxd or floor server still
running. Needs root, as the bench does.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

ROWS = [
    "oneshot", "oneshot_run", "oneshot_run_judge", "baseline_fork_exec", "baseline_unshare",
    "baseline_bwrap", "floor_oneshot", "create", "create_cold", "destroy", "exec",
    "floor_exec", "exec_fresh_first", "exec_fresh_second", "exec_after_100ms", "cli_exec",
    "cli_run", "floor_cli_run", "stdout", "stdin", "idle_create", "idle_memory",
    "idle_destroy", "load_health", "load_exec", "load_exec_rate",
]
# Rows measured against a baseline of the same run: they must carry a ratio.
WITH_RATIO = [
    "oneshot", "oneshot_run", "oneshot_run_judge", "floor_oneshot", "create", "exec",
    "floor_exec", "cli_exec", "cli_run", "floor_cli_run", "stdout", "stdin", "load_health",
]
FAILURE_WORDS = ("failed", "failure", "error:", "last error", "missing", "no floor")


def bench_dirs():
    return {name for name in os.listdir("/tmp") if name.startswith("sbx-bench-")}


def cgroups_named(prefix):
    found = []
    for top in ("/sys/fs/cgroup",):
        for root, dirs, _ in os.walk(top):
            depth = root[len(top):].count("/")
            for d in dirs:
                if d.startswith(prefix):
                    found.append(os.path.join(root, d))
            if depth >= 10:
                dirs[:] = []
    return found


def processes_with(text):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    problems = []
    before = bench_dirs()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.json")
        run = subprocess.run([argv[1], "--quick", "--json", out], capture_output=True,
                             text=True, timeout=280)
        sys.stdout.write(run.stdout)
        sys.stderr.write(run.stderr)
        if run.returncode != 0:
            problems.append(f"sbx_bench exited with {run.returncode}")
        parent = re.search(r"cgroup parent (sbx-bench-\d+)", run.stderr)
        if parent is None:
            problems.append("sbx_bench did not say which cgroup parent it used")
        rows = {}
        if os.path.exists(out):
            with open(out) as f:
                data = json.load(f)
            rows = {row["key"]: row for row in data.get("rows", [])}
            if not data.get("meta", {}).get("date"):
                problems.append("the JSON has no meta.date")
        else:
            problems.append(f"no JSON at {out}")

    if rows and sorted(rows) != sorted(ROWS):
        problems.append(f"rows: expected {sorted(ROWS)}, got {sorted(rows)}")
    for key in ROWS:
        row = rows.get(key)
        if row is None:
            continue
        value = row.get("value")
        if not value or value.get("median") is None:
            problems.append(f"{key}: not measured ({row.get('note', '')})")
        elif "samples" in value and not value["samples"]:
            problems.append(f"{key}: no samples")
        note = row.get("note", "").lower()
        # "0 errors" and "0 failed checks" are the good news.
        note = re.sub(r"\b0 (errors|failed checks)\b", "", note)
        if any(word in note for word in FAILURE_WORDS):
            problems.append(f"{key}: {row['note']}")
        if key in WITH_RATIO and row.get("ratio") is None:
            problems.append(f"{key}: no ratio to its baseline")

    left = bench_dirs() - before
    if left:
        problems.append(f"temp directories left: {sorted(left)}")
    if parent is not None:
        for path in cgroups_named(parent.group(1)):
            problems.append(f"cgroup left: {path}")
    for proc in processes_with("/tmp/sbx-bench-"):
        problems.append(f"process left: {proc}")

    for p in problems:
        print("FAIL:", p)
    if not problems:
        print(f"ok: {len(rows)} rows measured, nothing left behind")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
