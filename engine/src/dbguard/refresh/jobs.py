"""A few threads working through jobs that wait for other jobs: the refresh's copies, checks and index builds.

What must always hold: a job starts only after every job it names in `after` has finished without
error; after the first error no job starts, the running ones are waited for, and the error is raised
in the caller's thread. Among the jobs that may start, the one with the highest priority does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Job:
    name: str
    run: Callable[[], object]
    after: set[str] = field(default_factory=set)
    priority: float = 0.0


def run_jobs(jobs: list[Job], workers: int) -> None:
    """Run `jobs` on `workers` threads, each as soon as what it waits for is done; raise the first error."""
    names = {j.name for j in jobs}
    missing = {a for j in jobs for a in j.after} - names
    if missing:
        raise ValueError(f"jobs wait for unknown jobs: {', '.join(sorted(missing))}")
    pending = {j.name: j for j in jobs}
    done: set[str] = set()
    errors: list[BaseException] = []
    running = 0
    cond = threading.Condition()

    def take() -> Job | None:
        nonlocal running
        with cond:
            while True:
                if errors or not pending:
                    return None
                ready = [j for j in pending.values() if j.after <= done]
                if ready:
                    job = max(ready, key=lambda j: j.priority)
                    del pending[job.name]
                    running += 1
                    return job
                if running == 0:  # nothing runs and nothing can start: a cycle
                    errors.append(ValueError(f"jobs wait for each other: {', '.join(sorted(pending))}"))
                    cond.notify_all()
                    return None
                cond.wait()

    def work() -> None:
        nonlocal running
        while (job := take()) is not None:
            try:
                job.run()
            except BaseException as exc:  # re-raised in the caller's thread
                with cond:
                    errors.append(exc)
                    running -= 1
                    cond.notify_all()
                return
            with cond:
                done.add(job.name)
                running -= 1
                cond.notify_all()

    threads = [threading.Thread(target=work, name=f"refresh-{i}", daemon=True) for i in range(max(workers, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
