"""The audit log: chained lines, tamper detection, atomic concurrent appends."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from dbguard.audit.log import AuditLog, make_record


def record(i: int) -> dict:  # type: ignore[type-arg]
    return make_record(
        root=Path("."),
        task="status",
        tier="int",
        target="postgresql://u:pw-secret-1@h/db",
        args={"n": i, "url": "postgresql://u:pw-secret-1@h/db"},
        outcome="ok",
        duration_s=0.1,
        error=None,
    )


def filled(tmp_path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "logs" / "audit.jsonl")
    log.check_writable()
    for i in range(n):
        log.append(record(i))
    return log


def rewrite(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_lines_carry_every_field_and_chain(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    lines = log.read()
    assert [ln["seq"] for ln in lines] == [1, 2, 3]
    assert set(lines[0]) >= {
        "ts",
        "user",
        "host",
        "pid",
        "commit",
        "task",
        "tier",
        "target",
        "args",
        "outcome",
        "duration_s",
        "error",
        "prev",
    }
    assert lines[0]["prev"] == "0" * 64
    assert "pw-secret-1" not in log.path.read_text()
    assert log.verify().ok


def test_an_edited_line_is_named(tmp_path: Path) -> None:
    log = filled(tmp_path)
    raws = log.path.read_bytes().splitlines()
    raws[1] = raws[1].replace(b'"outcome": "ok"', b'"outcome": "refused"')
    rewrite(log, raws)
    result = log.verify()
    assert result.problems == ["line 3: its chain hash does not match line 2: line 2 was edited"]


def test_a_removed_line_is_named(tmp_path: Path) -> None:
    log = filled(tmp_path)
    raws = log.path.read_bytes().splitlines()
    rewrite(log, raws[:2] + raws[3:])
    assert log.verify().problems == ["line 3: sequence number 4 follows 2: 1 line(s) before it were removed"]


def test_removed_last_lines_are_noticed(tmp_path: Path) -> None:
    log = filled(tmp_path)
    raws = log.path.read_bytes().splitlines()
    rewrite(log, raws[:3])
    assert log.verify().problems == ["the last 2 line(s) were removed (the log ends at seq 3, the head says 5)"]


def test_an_edited_last_line_is_noticed(tmp_path: Path) -> None:
    log = filled(tmp_path)
    raws = log.path.read_bytes().splitlines()
    raws[-1] = raws[-1].replace(b'"task": "status"', b'"task": "backup"')
    rewrite(log, raws)
    assert log.verify().problems == ["line 5: the last line was edited"]


def test_reordered_lines_are_named(tmp_path: Path) -> None:
    log = filled(tmp_path)
    raws = log.path.read_bytes().splitlines()
    raws[1], raws[2] = raws[2], raws[1]
    rewrite(log, raws)
    problems = log.verify().problems
    assert problems[0] == "line 2: sequence number 3 follows 1: 1 line(s) before it were removed"
    assert "line 3: sequence number 2 follows 3: lines were reordered or duplicated" in problems


def _append_many(path: str, n: int) -> None:
    log = AuditLog(Path(path))
    for i in range(n):
        log.append(record(i) | {"pad": "x" * 3000})


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.check_writable()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(log.path), 40)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    raws = log.path.read_bytes().splitlines()
    assert len(raws) == 160
    assert all(json.loads(r)["pad"] == "x" * 3000 for r in raws)
    assert log.verify().ok
