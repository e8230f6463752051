"""Generate one big table's seed rows in a second process while this one seeds the others.

Making rows is Python-bound, so one process keeps one core busy. For the largest table of a big
seed, a forked child runs the same seed module with the same random stream (so the rows are
identical to an in-process run) and writes them, already in PostgreSQL's binary COPY format, to
an unnamed temporary file. When the runner reaches that table it only streams the file into COPY.

The binary formatting is psycopg's own (`psycopg._copy_base.BinaryFormatter`): not a public API,
so when it is missing this module reports itself unavailable and the runner stays in-process.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import traceback
from collections.abc import Callable
from itertools import chain
from typing import IO, Any

import psycopg

from dbguard.seeding.api import Fakes, SeedTable
from dbguard.seeding.copy_types import Converters, converted, settled

try:  # psycopg internals; the runner falls back to in-process generation without them
    from psycopg._copy_base import BinaryFormatter
    from psycopg.adapt import Transformer
    from psycopg.pq import Format

    AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the installed psycopg
    AVAILABLE = False

MIN_ROWS = 100_000  # below this, forking costs more than it saves
MAX_ROWS = 5_000_000  # above this the temporary file grows past a few hundred MB: stay in-process
CHUNK = 1 << 20

Rows = Callable[..., Any]  # runner.generate_rows
Key = tuple[str, Callable[[int], object]] | None


class ChildError(Exception):
    """What went wrong in the row-making process; `rows` says whether the seed module's rows caused it."""

    def __init__(self, message: str, *, rows: bool) -> None:
        super().__init__(message)
        self.rows = rows


def _produce(
    seed: SeedTable,
    fakes: Fakes,
    start: int,
    count: int,
    oids: list[int],
    converters: Converters,
    generate: Rows,
    key: Key,
    out: IO[bytes],
    errors: Any,
) -> None:
    try:
        tx = Transformer()
        tx.set_dumper_types(oids, Format.BINARY)
        formatter = BinaryFormatter(tx)
        rows = generate(seed, fakes, start, count, key)
        next(rows)  # the column names
        first = next(rows, None)
        converters = settled(oids, converters, first)
        for row in chain((first,), rows) if first is not None else rows:
            data = formatter.write_row(converted(row, converters))
            if data:
                out.write(data)
        out.write(formatter.end())
        out.flush()
        errors.send(None)
    except BaseException as exc:  # reported to the parent, which names the seed module when its rows are at fault
        from_rows = isinstance(exc, ValueError | TypeError | psycopg.Error)  # a row, or a value in it, COPY cannot take
        named = str(exc) if type(exc).__name__ == "RowError" else f"{type(exc).__name__}: {exc}"
        errors.send((f"{named}\n{traceback.format_exc(limit=3)}", from_rows))
    finally:
        errors.close()


class OffloadedTable:
    """A child process making one table's COPY stream; `stream_into(copy)` waits for it and sends it."""

    def __init__(
        self,
        seed: SeedTable,
        fakes: Fakes,
        start: int,
        count: int,
        oids: list[int],
        converters: Converters,
        generate: Rows,
        key: Key = None,
    ) -> None:
        self.file = tempfile.TemporaryFile(prefix="seed-")  # noqa: SIM115 -- lives until the table is copied
        context = multiprocessing.get_context("fork")
        self._errors, child_end = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_produce,
            daemon=True,
            args=(seed, fakes, start, count, oids, converters, generate, key, self.file, child_end),
        )
        self.process.start()
        child_end.close()

    def wait(self) -> ChildError | None:
        """None when the rows are ready, else the child's error."""
        try:
            sent = self._errors.recv()
        except EOFError:
            sent = ("the row-making process died", False)
        self.process.join()
        if sent is None and self.process.exitcode != 0:
            sent = (f"the row-making process ended with exit code {self.process.exitcode}", False)
        return None if sent is None else ChildError(sent[0].splitlines()[0], rows=sent[1])

    def stream_into(self, write: Callable[[bytes], None], advance: Callable[[int], object] | None, count: int) -> None:
        self.file.seek(0)
        while chunk := self.file.read(CHUNK):
            write(chunk)
        if advance is not None:
            advance(count)

    def close(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.file.close()


def worth_offloading(counts: dict[str, int]) -> str | None:
    """The table to make in a second process: the largest, if big enough and there is a core for it."""
    if not AVAILABLE or (os.cpu_count() or 1) < 2 or len(counts) < 2:
        return None
    table, count = max(counts.items(), key=lambda kv: kv[1])
    return table if MIN_ROWS <= count <= MAX_ROWS else None
