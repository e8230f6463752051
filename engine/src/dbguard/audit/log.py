"""Append-only, tamper-evident audit log: JSON lines, each chained to the one before.

A run the guard allowed leaves a `started` line before its work and its outcome line after it (the
same `run` id), so a run killed mid-way still shows; a refused run leaves one line. Every line
carries `seq` and `prev` (the sha256 of the previous line's bytes); a `.head` file beside the log
records the last line's seq and hash, and the tier databases keep anchors of the chain's head
(dbguard.audit.anchor), so deleting, truncating or rewriting the log is noticed. Appends hold an
exclusive lock and go out in one write followed by fsync, so concurrent runs never interleave.
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
from typing import TYPE_CHECKING, Any

from dbguard.errors import Refused
from dbguard.guard.masking import mask_text, mask_value

if TYPE_CHECKING:
    from dbguard.audit.anchor import Anchor

GENESIS = "0" * 64
_TAIL_CHUNK = 65536


def line_hash(raw: bytes) -> str:
    return hashlib.sha256(raw.rstrip(b"\n")).hexdigest()


def encode(line: dict[str, Any]) -> bytes:
    """A line's bytes in the log; `line_hash(encode(line))` is the hash the next line chains to."""
    return (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode()


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
            raw = encode(line)
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

    def verify(self, anchors: list[Anchor] | None = None) -> VerifyResult:
        """Name every edited, removed or reordered line; `anchors` (from the tier databases) catch a
        log deleted, truncated, or rewritten and re-hashed as a whole."""
        raws = self.path.read_bytes().splitlines() if self.path.exists() else []
        result = self._verify_chain(raws)
        by_seq: dict[int, bytes] = {}
        for raw in raws:
            try:
                by_seq[int(json.loads(raw)["seq"])] = raw
            except (ValueError, KeyError, TypeError):
                continue
        last = max(by_seq, default=0)
        for anchor in anchors or []:
            where = f"{anchor.tier.value.upper()} database {anchor.database}"
            if anchor.seq > last:
                result.problems.append(
                    f"{where} records line {anchor.seq} of this log, but the log ends at {last}: "
                    "lines were deleted, or the log was truncated or replaced"
                )
            elif anchor.seq in by_seq and line_hash(by_seq[anchor.seq]) != anchor.hash:
                result.problems.append(f"line {anchor.seq} is not the line {where} recorded: the log was rewritten")
        return result

    def _verify_chain(self, raws: list[bytes]) -> VerifyResult:
        if not raws and not self.head_path.exists():
            return VerifyResult(0)
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
