"""The `db` invoke collection, built from `dbguard.cli.catalog.TASKS`: argument parsing only.

invoke reads a task's options from its body's signature (`Task.argspec` uses inspect.signature,
which honours `__signature__`), so each declared task becomes a function whose signature is its
options. Importing this module imports invoke and the catalog, nothing heavier.
"""

from collections.abc import Callable
from inspect import Parameter, Signature

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task

from dbguard.cli.catalog import TASKS, TaskSpec, Value


def invoke_task(spec: TaskSpec) -> Task[Callable[..., None]]:
    def run(c: Context, **values: Value) -> None:
        code = spec.run(values)
        if code:
            raise Exit(code=code)

    context = Parameter("c", Parameter.POSITIONAL_OR_KEYWORD)
    options = [Parameter(o.name, Parameter.POSITIONAL_OR_KEYWORD, default=o.parser_default) for o in spec.options]
    run.__signature__ = Signature([context, *options])  # type: ignore[attr-defined]
    run.__doc__ = spec.doc
    run.__name__ = run.__qualname__ = spec.name.replace("-", "_")
    return Task(
        run,
        name=spec.name,
        positional=[o.name for o in spec.options if o.positional],
        help={o.name: o.help for o in spec.options},
    )


db = Collection("db", *(invoke_task(spec) for spec in TASKS))
namespace = Collection(db)
