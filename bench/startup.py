"""How long ``gembatch`` takes to start, as whole processes, next to a baseline.

    python bench/startup.py [--runs 7] [--jobs 1000]

Each command runs ``--runs`` times in a fresh process against a workspace of
``--jobs`` imported jobs (made once with ``gembatch import``); the median wall
time is printed beside the median of ``python -c "import click, rich.console"``
measured in the same run, and their ratio. Targets: ``--help`` and
``--version`` under 0.25 s and 3x the baseline; ``status`` under 0.5 s;
``sql "select 1"`` under 0.4 s.

Output goes to a pipe, as from a script: ``watch`` then prints one frame and exits.
The environment is passed on as it is: with ``PYTHONDONTWRITEBYTECODE`` set,
gembatch's own modules are compiled on every run (the run says so).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from store import write_file

BASELINE = [sys.executable, "-c", "import click, rich.console"]

# (label, arguments, target in seconds or None)
COMMANDS: list[tuple[str, list[str], float | None]] = [
    ("--help", ["--help"], 0.25),
    ("--version", ["--version"], 0.25),
    ("status", ["status"], 0.5),
    ('sql "select 1"', ["sql", "select 1"], 0.4),
    ("report", ["report"], None),
    ("watch (one frame)", ["watch"], None),
]


def gembatch_command() -> list[str]:
    """The console script beside this interpreter, as a user runs it; else ``-m``."""
    script = Path(sys.executable).parent / "gembatch"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gembatch"]


def run_once(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.decode()}")
    return took


def median_of(runs: int, argv: list[str], cwd: Path) -> float:
    # One run first, untimed: the page cache and .pyc files are warm for every figure alike.
    run_once(argv, cwd)
    return statistics.median(run_once(argv, cwd) for _ in range(runs))


def make_workspace(work: Path, jobs: int, gembatch: list[str]) -> None:
    write_file(work / "job-info.jsonl", jobs)
    run_once([*gembatch, "import"], work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="Runs per command (median).")
    parser.add_argument("--jobs", type=int, default=1000, help="Jobs in the workspace.")
    args = parser.parse_args()

    gembatch = gembatch_command()
    with tempfile.TemporaryDirectory(prefix="gembatch-startup-") as tmp:
        work = Path(tmp)
        make_workspace(work, args.jobs, gembatch)
        baseline = median_of(args.runs, BASELINE, work)
        print(f"gembatch start-up, {args.jobs:,} jobs, median of {args.runs} processes:")
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            print("  (PYTHONDONTWRITEBYTECODE is set: no .pyc files, every module compiled anew)")
        print(f"  {'baseline: import click, rich.console':<38} {baseline:7.3f} s")
        for label, argv, target in COMMANDS:
            took = median_of(args.runs, [*gembatch, *argv], work)
            verdict = ""
            if target is not None:
                verdict = f"  target < {target:.2f} s {'met' if took < target else 'MISSED'}"
            print(f"  {'gembatch ' + label:<38} {took:7.3f} s {took / baseline:6.1f}x{verdict}")


if __name__ == "__main__":
    main()
