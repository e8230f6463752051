"""invoke tasks: the engine's guarded `db` collection. Add the app's own tasks beside it."""

from dbguard.cli.tasks import namespace

__all__ = ["namespace"]
