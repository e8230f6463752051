"""db.ownership: the ownership matrix as a table (who writes, who only reads, isolated or shared, row owner)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dbguard.cli.console import add_row, new_table
from dbguard.ownership import matrix, missing, undeclared
from dbguard.roles.apply import MODELS_FIX
from dbguard.roles.names import role_names

if TYPE_CHECKING:
    from dbguard.cli.runner import TaskContext


def ownership_task(ctx: TaskContext) -> int:
    settings, out = ctx.settings, ctx.out
    metadata = settings.project.metadata
    names = role_names(settings)
    table = new_table("ownership matrix", "table", "kind", "writers", "readers", "row owner")
    for name, owner in matrix(metadata):
        add_row(
            table, name, owner.kind, ", ".join(owner.writers), ", ".join(owner.readers) or "-", owner.row_owner or "-"
        )
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
