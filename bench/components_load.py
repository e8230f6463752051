"""Load test of the example's two components on one database, through their own roles (issue 13, item 6).

`python -m bench.components_load [--seconds 3] [--rounds 3] [--users 4] [--workers 2]`, from the repository
root. It starts a throwaway embedded cluster in a temporary folder, builds INT there as a user would
(`invoke db.reset --env int`, `invoke db.roles --env int`), then runs rounds, interleaved:

- ours: the app component (`--users` threads, each acting for one user through dbguard.runtime.act_as)
  adds tasks to its user's project and moves its tasks along, as `<app>_int_app_login`; the worker
  component (`--workers` threads, app/worker.py's enqueue and work_batch) queues and works the
  notification jobs, as `<app>_int_worker_login`; a probe thread tries a write the matrix does not allow
  (the worker inserting into users) again and again;
- naive: the same threads, all connected as the tier URL's user (the owner: no roles, no row-level
  security), the probe's write rolled back after it went through.

Each round counts writes per second (rows inserted or updated by both components during the timed
window), then lets the workers drain the queue and checks: every task an app thread saw committed is in
tasks exactly once (0 lost, 0 duplicated); every assigned unfinished task has exactly one job and every
job was worked exactly once; 0 errors on the allowed paths; ours: every disallowed write refused, and
no app thread ever saw or changed another user's project. It exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dbguard.cli.console import Output
from dbguard.cli.runner import TaskContext, run_task
from dbguard.guard.caller import Caller
from dbguard.runtime import act_as, open_app_database
from dbguard.settings import Settings, load_settings
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.models import NotificationJob, Project, Task, User
from app.worker import Job, enqueue, work_batch

ROOT = Path(__file__).resolve().parent.parent
CALLER = Caller(interactive=False, ci=True, agent=None, consent=None)
INSUFFICIENT_PRIVILEGE = "42501"
MOVE_ALONG = text(
    "UPDATE tasks SET status = 'doing' "
    "WHERE id = (SELECT max(id) FROM tasks WHERE project_id = :p AND status = 'todo' AND id < :t)"
)
DISALLOWED = text("INSERT INTO users (email, full_name) VALUES (:email, 'Probe')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(tmp: Path) -> dict[str, str]:
    """A process environment whose every tier lives in `tmp`: an embedded cluster of its own, no URLs."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    return env | {
        "DB_TOOLS_ENV_FILE": "/dev/null",
        "EMBEDDED_PG_DIR": str(tmp / "pg"),
        "EMBEDDED_PG_PORT": str(free_port()),
        "AUDIT_LOG": str(tmp / "audit.jsonl"),
        "BACKUP_DIR": str(tmp / "backups"),
        "NO_COLOR": "1",
        "CI": "true",
    }


def invoke(env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(["invoke", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(f"invoke {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")


def owner_engine(settings: Settings) -> Engine:
    """The naive way: the tier URL's user (the owner of everything), through the same guard."""
    made: list[Engine] = []

    def body(ctx: TaskContext) -> int:
        made.append(ctx.target.sa_engine(pool_size=16))
        return 0

    if run_task("app-connect", "int", {"component": "naive"}, body, settings=settings, caller=CALLER, out=Output(None)):
        sys.exit("the guard refused the naive side's connection")
    return made[0]


@dataclass
class Tally:
    """What one round's threads did and saw; threads add to it under `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    writes: int = 0
    committed_titles: list[str] = field(default_factory=list)
    notified: Counter[int] = field(default_factory=Counter)
    allowed_errors: list[str] = field(default_factory=list)
    probes: int = 0
    probes_refused: int = 0
    foreign_rows_seen: int = 0

    def add(self, writes: int = 0, titles: list[str] | None = None) -> None:
        with self.lock:
            self.writes += writes
            self.committed_titles.extend(titles or [])

    def error(self, where: str, exc: BaseException) -> None:
        with self.lock:
            self.allowed_errors.append(f"{where}: {str(exc).splitlines()[0]}")


@dataclass(frozen=True)
class Side:
    name: str
    app: Engine
    worker: Engine
    enforced: bool  # roles and row-level security in force (ours)


def app_thread(side: Side, tally: Tally, stop: threading.Event, label: str, user: int, project: int, people: list[int]):
    rng = random.Random(label)
    i = 0
    while not stop.is_set():
        i += 1
        title = f"{label}-{i}"
        try:
            with Session(side.app) as s, s.begin():
                act_as(s, user)
                task = Task(project_id=project, title=title, assignee_id=rng.choice(people))
                s.add(task)
                s.flush()
                writes = 1
                if i % 5 == 0:  # move one of this thread's earlier tasks along
                    writes += s.execute(
                        MOVE_ALONG,
                        {"p": project, "t": task.id},
                    ).rowcount  # type: ignore[attr-defined]
                if side.enforced and i % 10 == 0:  # row-level security: another user's projects stay out of reach
                    seen = s.scalar(select(func.count()).select_from(Project).where(Project.owner_id != user)) or 0
                    changed = s.execute(
                        text("UPDATE projects SET name = name WHERE owner_id <> :u"), {"u": user}
                    ).rowcount  # type: ignore[attr-defined]
                    if seen or changed:
                        with tally.lock:
                            tally.foreign_rows_seen += int(seen) + int(changed)
            tally.add(writes, [title])
        except DBAPIError as exc:
            tally.error(f"app {label}", exc)


def worker_loop(side: Side, tally: Tally, stop: Callable[[], bool]) -> None:
    def notify(job: Job) -> None:
        with tally.lock:
            tally.notified[job.id] += 1

    while True:
        try:
            with Session(side.worker) as s:
                with s.begin():
                    queued = enqueue(s)
                with s.begin():
                    done = work_batch(s, notify, 50)
            tally.add(queued + done)
        except DBAPIError as exc:
            tally.error("worker", exc)
            done = 0
        if not done and stop():
            return
        if not done:
            time.sleep(0.005)


def probe_thread(side: Side, tally: Tally, stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        with Session(side.worker) as s:
            try:
                s.execute(DISALLOWED, {"email": f"probe-{side.name}-{time.monotonic_ns()}-{i}@example.com"})
                refused = False
            except DBAPIError as exc:
                refused = getattr(exc.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE
                if not refused:
                    tally.error("probe", exc)
            finally:
                s.rollback()  # the naive side's write went through: leave no trace of it
        with tally.lock:
            tally.probes += 1
            tally.probes_refused += refused
        time.sleep(0.01)


@dataclass(frozen=True)
class RoundResult:
    side: str
    seconds: float
    writes: int
    lost: int
    duplicated: int
    jobs_missing: int
    jobs_twice: int
    allowed_errors: list[str]
    probes: int
    probes_refused: int
    foreign_rows_seen: int

    @property
    def rate(self) -> float:
        return self.writes / self.seconds


def one_round(
    side: Side, owner: Engine, round_no: int, seconds: float, users: list[tuple[int, int]], workers: int
) -> RoundResult:
    tally = Tally()
    stop_app = threading.Event()
    drained = threading.Event()
    people = [u for u, _ in users]
    prefix = f"load-{side.name}-{round_no}"
    apps = [
        threading.Thread(target=app_thread, args=(side, tally, stop_app, f"{prefix}-u{u}", u, p, people))
        for u, p in users
    ]
    workers_ = [threading.Thread(target=worker_loop, args=(side, tally, drained.is_set)) for _ in range(workers)]
    probe = threading.Thread(target=probe_thread, args=(side, tally, stop_app))
    threads = [*apps, *workers_, probe]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    with tally.lock:
        writes = tally.writes
    elapsed = time.monotonic() - started
    stop_app.set()
    for t in [*apps, probe]:
        t.join()
    drained.set()  # workers stop once a pass finds nothing left to do
    for t in workers_:
        t.join()
    with Session(owner) as s:  # checked as the owner: sees every row
        titles = Counter(s.scalars(select(Task.title).where(Task.title.like(f"{prefix}-%"))).all())
        committed = Counter(tally.committed_titles)
        lost = sum(1 for t in committed if titles[t] == 0)
        duplicated = sum(n - 1 for n in titles.values() if n > 1)
        ours = select(Task.id).where(
            Task.title.like(f"{prefix}-%"), Task.assignee_id.is_not(None), Task.status != "done"
        )
        jobs = dict(
            s.execute(
                select(Task.id, func.count(NotificationJob.id))
                .outerjoin(
                    NotificationJob,
                    (NotificationJob.task_id == Task.id) & (NotificationJob.assignee_id == Task.assignee_id),
                )
                .where(Task.id.in_(ours))
                .group_by(Task.id)
            ).all()
        )
        job_ids = s.scalars(select(NotificationJob.id).where(NotificationJob.task_id.in_(ours))).all()
        undone = s.scalar(select(func.count()).select_from(NotificationJob).where(NotificationJob.state != "done")) or 0
    jobs_missing = (
        sum(1 for n in jobs.values() if n != 1) + int(undone) + sum(1 for j in job_ids if tally.notified[j] == 0)
    )
    jobs_twice = sum(1 for n in tally.notified.values() if n > 1)
    return RoundResult(
        side.name,
        elapsed,
        writes,
        lost,
        duplicated,
        jobs_missing,
        jobs_twice,
        tally.allowed_errors,
        tally.probes,
        tally.probes_refused,
        tally.foreign_rows_seen,
    )


def users_with_projects(owner: Engine, n: int) -> list[tuple[int, int]]:
    """(user, one of their projects) for `n` users who own a project."""
    with Session(owner) as s:
        rows = s.execute(
            select(Project.owner_id, func.min(Project.id))
            .group_by(Project.owner_id)
            .order_by(Project.owner_id)
            .limit(n)
        ).all()
        assert s.scalar(select(func.count()).select_from(User)), "the database holds no users"
    if len(rows) < n:
        sys.exit(f"only {len(rows)} users own a project; --users {n} needs more")
    return [(int(u), int(p)) for u, p in rows]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.components_load", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed window of each round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side, interleaved")
    parser.add_argument("--users", type=int, default=4, help="app threads, one user each")
    parser.add_argument("--workers", type=int, default=2, help="worker threads")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="components-load-"))
    os.chmod(tmp, 0o755)  # the embedded server runs as an unprivileged user when we are root
    env = environment(tmp)
    try:
        invoke(env, "db.reset", "--env", "int")
        invoke(env, "db.roles", "--env", "int")
        settings = load_settings(ROOT, environ=env)
        owner = owner_engine(settings)
        app = open_app_database("app", settings=settings, caller=CALLER, out=Output(None)).engine
        worker = open_app_database("worker", settings=settings, caller=CALLER, out=Output(None)).engine
        sides = {"ours": Side("ours", app, worker, True), "naive": Side("naive", owner, owner, False)}
        users = users_with_projects(owner, args.users)
        worker_loop(Side("warm-up", owner, owner, False), Tally(), lambda: True)  # the seeded tasks' jobs, done first
        results: list[RoundResult] = []
        for r in range(args.rounds):
            for name in ("ours", "naive"):
                result = one_round(sides[name], owner, r, args.seconds, users, args.workers)
                results.append(result)
                print(
                    f"round {r + 1} {name:<5}: {result.rate:8.0f} writes/s ({result.writes} in {result.seconds:.1f}s); "
                    f"lost {result.lost}, duplicated {result.duplicated}, jobs missing {result.jobs_missing}, "
                    f"worked twice {result.jobs_twice}, errors on allowed paths {len(result.allowed_errors)}, "
                    f"disallowed writes refused {result.probes_refused}/{result.probes}, "
                    f"other users' rows reached {result.foreign_rows_seen if name == 'ours' else '-'}",
                    flush=True,
                )
                for line in result.allowed_errors[:3]:
                    print(f"    {line}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            subprocess.run(["invoke", "db.down"], cwd=ROOT, env=env, capture_output=True, check=False)
            shutil.rmtree(tmp, ignore_errors=True)
    ours = [r for r in results if r.side == "ours"]
    naive = [r for r in results if r.side == "naive"]
    med_ours = statistics.median(r.rate for r in ours)
    med_naive = statistics.median(r.rate for r in naive)
    print(
        f"median writes/s: ours {med_ours:.0f}, naive {med_naive:.0f}: ours runs at {med_ours / med_naive:.2f}x the "
        f"naive rate; {args.users} app threads, {args.workers} workers, {args.rounds} x {args.seconds:g}s per side; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    failed = [
        r
        for r in results
        if r.lost
        or r.duplicated
        or r.jobs_missing
        or r.jobs_twice
        or r.allowed_errors
        or (r.side == "ours" and (r.probes_refused != r.probes or r.foreign_rows_seen))
    ]
    naive_let_through = sum(r.probes - r.probes_refused for r in naive)
    print(f"naive: {naive_let_through} of {sum(r.probes for r in naive)} disallowed writes went through")
    print("checks: " + ("FAILED" if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
