"""CLI start-up benchmark: `invoke --list` and `invoke db.status` against invoke with an empty tasks.py.

The floor is `python -m invoke --list` in a folder whose tasks.py is empty: what invoke itself costs.
Ours is the same in the template's root, and `python -m invoke db.status` there on the embedded
default (a cluster of its own in a temporary folder, started once, untimed, by `invoke db.up`; all
three tiers reachable). Runs interleave (ours, floor, ours, floor, ...) after one warm-up run of
each, so a slow moment of the machine hits both sides; medians are reported.

    cd engine && python -m bench.cli_bench [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine

TEMPLATE_ROOT = Path(__file__).resolve().parents[2]
BENCH_PORT = "54377"
LIST_TARGET, STATUS_TARGET = 2.0, 0.5  # x the floor; seconds


def child_environment(state: Path) -> dict[str, str]:
    """The embedded default, whatever the caller's shell or .env say; local state kept in `state`."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL") and k != "PYTEST_CURRENT_TEST"}
    return env | {
        "DB_TOOLS_ENV_FILE": "/dev/null",
        "EMBEDDED_PG_DIR": str(state / "embedded"),
        "EMBEDDED_PG_PORT": BENCH_PORT,
        "AUDIT_LOG": str(state / "audit.jsonl"),
        "BACKUP_DIR": str(state / "backups"),
        "NO_COLOR": "1",
    }


def invoke(cwd: Path, env: dict[str, str], *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    return time.perf_counter() - started, proc


def checked(seconds_and_proc: tuple[float, subprocess.CompletedProcess[str]]) -> float:
    seconds, proc = seconds_and_proc
    if proc.returncode != 0:
        sys.exit(f"invoke failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return seconds


def runs(times: list[float]) -> str:
    return ", ".join(f"{t:.3f}" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7, help="timed runs of each side (at least 5)")
    rounds = max(5, parser.parse_args().rounds)
    state = Path(tempfile.mkdtemp(prefix="cli-bench-"))
    state.chmod(0o755)  # the embedded server's unprivileged user keeps its data inside
    floor_dir = state / "floor"
    floor_dir.mkdir()
    (floor_dir / "tasks.py").write_text("")
    env = child_environment(state)
    try:
        checked(invoke(TEMPLATE_ROOT, env, "db.up"))
        status = invoke(TEMPLATE_ROOT, env, "db.status")[1]
        reachable = sum(" yes " in line for line in status.stdout.splitlines())
        floor: list[float] = []
        listing: list[float] = []
        showing: list[float] = []
        invoke(floor_dir, env, "--list")  # warm-up: the floor exits 1 ("No tasks found"), which is its cost
        checked(invoke(TEMPLATE_ROOT, env, "--list"))
        for _ in range(rounds):
            listing.append(checked(invoke(TEMPLATE_ROOT, env, "--list")))
            floor.append(invoke(floor_dir, env, "--list")[0])
            showing.append(checked(invoke(TEMPLATE_ROOT, env, "db.status")))
            floor.append(invoke(floor_dir, env, "--list")[0])
    finally:
        invoke(TEMPLATE_ROOT, env, "db.down")
        shutil.rmtree(state, ignore_errors=True)
    base, listed, shown = statistics.median(floor), statistics.median(listing), statistics.median(showing)
    print(f"machine: {machine()}; {rounds} interleaved runs of each, medians")
    print(f"floor : invoke --list, empty tasks.py  {base:.3f}s (runs {runs(floor)})")
    print(
        f"list  : invoke --list, template root   {listed:.3f}s -> {listed / base:.2f}x the floor "
        f"(target <= {LIST_TARGET:g}x; runs {runs(listing)})"
    )
    print(
        f"status: invoke db.status, embedded     {shown:.3f}s -> {shown / base:.2f}x the floor "
        f"(target <= {STATUS_TARGET:g}s; {reachable} of 3 tiers reachable; runs {runs(showing)})"
    )


if __name__ == "__main__":
    main()
