"""db.ownership: the ownership matrix as a table (who writes, who only reads, isolated or shared, row owner).

`--markdown` prints it as the Markdown table the docs hold (a test keeps the docs' copy equal to it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import MetaData

from dbguard.cli.console import add_row, new_table
from dbguard.ownership import Ownership, matrix, missing, undeclared
from dbguard.roles.apply import MODELS_FIX
from dbguard.roles.names import role_names

if TYPE_CHECKING:
    from dbguard.cli.runner import TaskContext


COLUMNS = ("table", "kind", "writers", "readers", "row owner")


def cells(owner: Ownership) -> tuple[str, str, str, str]:
    rows = owner.row_owner or (f"via {owner.rows_via}" if owner.rows_via else "-")
    return owner.kind, ", ".join(owner.writers), ", ".join(owner.readers) or "-", rows


def as_markdown(metadata: MetaData) -> str:
    """The matrix as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [f"| `{name}` | " + " | ".join(cells(owner)) + " |" for name, owner in matrix(metadata)]
    return "\n".join(lines) + "\n"


def ownership_task(ctx: TaskContext, *, markdown: bool = False) -> int:
    settings, out = ctx.settings, ctx.out
    metadata = settings.project.metadata
    names = role_names(settings, ctx.tier)
    if markdown:
        out.console.print(as_markdown(metadata), end="", markup=False, highlight=False, soft_wrap=True)
    else:
        table = new_table("ownership matrix", *COLUMNS)
        for name, owner in matrix(metadata):
            add_row(table, name, *cells(owner))
        out.table(table)
        out.info(
            f"components: {', '.join(names.components)} (roles {', '.join(names.groups)}; "
            f"log in as {', '.join(names.logins)}; {names.migrator} owns the tables)"
        )
    absent, unknown = missing(metadata), undeclared(metadata, names.components)
    if absent:
        out.error(f"no ownership entry: {', '.join(absent)} -> {MODELS_FIX}")
    if unknown:
        out.error(f"components not in [tool.dbguard] components: {', '.join(unknown)}")
    return 1 if absent or unknown else 0
