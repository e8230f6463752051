"""Console output: every line starts with the coloured tier badge; the first names the masked target.

rich gives colour, tables and progress bars; it drops colour by itself when stdout is not a
terminal or NO_COLOR is set. Everything printed goes through the password masker.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from dbguard.guard.masking import mask_text
from dbguard.guard.tiers import TIER_COLOURS, Tier

PIPE_WIDTH = 160  # logs and CI have no terminal width; 80 columns would fold every URL


def make_console(file: IO[str] | None = None) -> Console:
    stream = file or sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    no_color = bool(os.environ.get("NO_COLOR")) or None
    return Console(file=stream, highlight=False, soft_wrap=True, emoji=False, width=width, no_color=no_color)


class Output:
    """Printer for one task run, bound to its tier."""

    def __init__(self, tier: Tier | None, console: Console | None = None, err: Console | None = None) -> None:
        self.tier = tier
        self.console = console or make_console()
        self.err = err or make_console(sys.stderr)

    def badge(self, tier: Tier | None = None) -> Text:
        t = tier or self.tier
        if t is None:
            return Text("[???]", style="bold")
        return Text(t.badge, style=f"bold {TIER_COLOURS[t]}")

    def _line(self, message: str, style: str = "", tier: Tier | None = None, *, stderr: bool = False) -> None:
        text = Text.assemble(self.badge(tier), " ", Text(mask_text(message), style=style))
        (self.err if stderr else self.console).print(text)

    def header(self, target_description: str, note: str = "") -> None:
        self._line(target_description + (f"  {note}" if note else ""), "bold")

    def info(self, message: str, tier: Tier | None = None) -> None:
        self._line(message, tier=tier)

    def ok(self, message: str) -> None:
        self._line(message, "green")

    def warn(self, message: str) -> None:
        self._line("warning: " + message, "yellow")

    def plan(self, message: str) -> None:
        self._line("plan: " + message, "cyan")

    def error(self, message: str) -> None:
        self._line("error: " + message, "bold red", stderr=True)

    def table(self, table: Table) -> None:
        self.console.print(table)

    @contextmanager
    def progress(self, *, bytes_mode: bool = False) -> Iterator[Progress]:
        """A rich progress bar: rows (M of N) or bytes, with elapsed time and speed."""
        columns = [
            TextColumn(str(self.badge().plain)),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
        ]
        if bytes_mode:
            columns += [DownloadColumn(), TransferSpeedColumn()]
        else:
            columns += [MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        with Progress(
            *columns, console=self.console, transient=not self.console.is_terminal, disable=not self.console.is_terminal
        ) as progress:
            yield progress


def add_row(table: Table, *cells: str | Text, style: str | None = None) -> None:
    """Add a row; plain strings are masked and never read as rich markup."""
    table.add_row(*(c if isinstance(c, Text) else Text(mask_text(c)) for c in cells), style=style)


def new_table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table
