"""Append-only, tamper-evident audit log: one JSON line per task run, each chained to the one before.

Every line carries `seq` and `prev` (the sha256 of the previous line's bytes); a `.head` file
beside the log records the last line's seq and hash, so even a removed last line is noticed.
Appends hold an exclusive lock and go out in one write followed by fsync, so concurrent runs
never interleave partial lines.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbguard.errors import Refused
from dbguard.guard.masking import mask_text, mask_value

GENESIS = "0" * 64
_TAIL_CHUNK = 65536


def line_hash(raw: bytes) -> str:
    return hashlib.sha256(raw.rstrip(b"\n")).hexdigest()


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@dataclass
class VerifyResult:
    lines: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class AuditLog:
    path: Path

    @property
    def head_path(self) -> Path:
        return self.path.with_name(self.path.name + ".head")

    def check_writable(self) -> None:
        """Refuse to run a task that could not be audited."""
        fix = f"make {self.path.parent} writable, or set AUDIT_LOG to a writable path"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.close(fd)
        except OSError as exc:
            raise Refused(
                f"the audit log {self.path} cannot be written ({exc.strerror}); refusing to run unaudited", fix
            ) from None
        if not os.access(self.path, os.W_OK) or (self.head_path.exists() and not os.access(self.head_path, os.W_OK)):
            raise Refused(
                f"the audit log {self.path} cannot be written (permission denied); refusing to run unaudited", fix
            )

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Chain `record` onto the log and return the line as written."""
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            last = _last_line(fd)
            if last is None:
                seq, prev = 1, GENESIS
            else:
                try:
                    seq = int(json.loads(last)["seq"]) + 1
                except (ValueError, KeyError, TypeError):
                    seq = 0  # the tail is damaged: keep appending, `verify` will name the damage
                prev = line_hash(last)
            line = {"seq": seq, "prev": prev, **record}
            raw = (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode()
            os.write(fd, raw)
            os.fsync(fd)
            self._write_head(seq, line_hash(raw))
            return line
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _write_head(self, seq: int, digest: str) -> None:
        tmp = self.head_path.with_name(self.head_path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"seq": seq, "hash": digest}) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.head_path)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for raw in self.path.read_bytes().splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"seq": None, "outcome": "unreadable"})
        return out

    def verify(self) -> VerifyResult:
        """Name every edited, removed or reordered line."""
        if not self.path.exists():
            return VerifyResult(0)
        raws = self.path.read_bytes().splitlines()
        result = VerifyResult(len(raws))
        prev_raw: bytes | None = None
        prev_seq = 0
        for number, raw in enumerate(raws, start=1):
            try:
                line = json.loads(raw)
                seq, prev = int(line["seq"]), str(line["prev"])
            except (ValueError, KeyError, TypeError):
                result.problems.append(f"line {number}: not a valid audit line (edited or damaged)")
                prev_raw, prev_seq = raw, prev_seq + 1
                continue
            expected_prev = GENESIS if prev_raw is None else line_hash(prev_raw)
            if seq != prev_seq + 1:
                if seq > prev_seq + 1:
                    what = f"{seq - prev_seq - 1} line(s) before it were removed"
                else:
                    what = "lines were reordered or duplicated"
                result.problems.append(f"line {number}: sequence number {seq} follows {prev_seq}: {what}")
            elif prev != expected_prev:
                where = "the first line" if prev_raw is None else f"line {number - 1}"
                result.problems.append(f"line {number}: its chain hash does not match {where}: {where} was edited")
            prev_raw, prev_seq = raw, seq
        if self.head_path.exists():
            try:
                head = json.loads(self.head_path.read_text())
                head_seq, head_hash = int(head["seq"]), str(head["hash"])
            except (ValueError, KeyError, TypeError):
                result.problems.append(f"{self.head_path.name}: unreadable")
            else:
                if head_seq > prev_seq:
                    result.problems.append(
                        f"the last {head_seq - prev_seq} line(s) were removed "
                        f"(the log ends at seq {prev_seq}, the head says {head_seq})"
                    )
                elif head_seq == prev_seq and prev_raw is not None and line_hash(prev_raw) != head_hash:
                    result.problems.append(f"line {len(raws)}: the last line was edited")
        elif raws:
            result.problems.append(f"{self.head_path.name} is missing: the end of the log cannot be checked")
        return result


def _last_line(fd: int) -> bytes | None:
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return None
    chunk = min(size, _TAIL_CHUNK)
    while True:
        os.lseek(fd, size - chunk, os.SEEK_SET)
        data = os.read(fd, chunk)
        lines = data.rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or chunk == size:
            return lines[-1]
        chunk = min(size, chunk * 4)


def make_record(
    *,
    root: Path,
    task: str,
    tier: str,
    target: str,
    args: dict[str, Any],
    outcome: str,
    duration_s: float,
    error: str | None,
) -> dict[str, Any]:
    """The fields of one audit line, every string masked."""
    return {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "commit": git_commit(root),
        "task": task,
        "tier": tier,
        "target": mask_text(target),
        "args": mask_value(args),
        "outcome": outcome,
        "duration_s": round(duration_s, 3),
        "error": mask_text(error) if error else None,
    }
