"""The app's declaration: where its parts are. The engine reads this and never imports the app by name.

An app declares itself once, in the `[tool.dbguard]` table of its `pyproject.toml`:

    [tool.dbguard]
    metadata = "app.models:Base.metadata"     # the SQLAlchemy MetaData of the app's tables
    seeds = "seeds"                           # package of seed modules, each defining SEED
    scenarios = "seeds.scenarios:SCENARIOS"   # {scenario: {table: rows}}
    migrations = "migrations"                 # Alembic's folder (env.py + versions/)
    sanitize_policy = "sanitize_policy.toml"  # optional overrides of the PII-class rules
    components = ["app", "worker"]            # the processes told apart by roles (dbguard.ownership)

Renaming the app package or replacing every model changes these lines, nothing in the engine.
The project root is the folder of that `pyproject.toml`: `DBGUARD_PROJECT` names it explicitly,
otherwise it is searched from the current directory upwards (as git finds its repository).
"""

from __future__ import annotations

import importlib
import os
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from dbguard.errors import Refused

TABLE = "tool.dbguard"
DEFAULTS = {
    "metadata": "app.models:Base.metadata",
    "seeds": "seeds",
    "scenarios": "seeds.scenarios:SCENARIOS",
    "migrations": "migrations",
    "sanitize_policy": "sanitize_policy.toml",
}


def _declaration(pyproject: Path) -> dict[str, Any] | None:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    found = data.get("tool", {}).get("dbguard")
    return found if isinstance(found, dict) else None


def find_root(start: Path | None = None, environ: dict[str, str] | None = None) -> Path:
    """The nearest folder at or above `start` whose pyproject.toml has a [tool.dbguard] table."""
    env = os.environ if environ is None else environ
    if env.get("DBGUARD_PROJECT"):
        return Path(env["DBGUARD_PROJECT"]).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and _declaration(candidate) is not None:
            return folder
    raise Refused(
        f"no project found: no pyproject.toml with a [{TABLE}] table in {here} or above",
        "run the command inside your app's folder (or set DBGUARD_PROJECT to it)",
    )


@dataclass(frozen=True)
class Project:
    """One app as the engine sees it: its root and the declared locations of its parts."""

    root: Path
    declared: dict[str, str] = field(hash=False, compare=False)
    components: tuple[str, ...] = ("app",)  # each gets its own database roles (dbguard.roles)

    def spec(self, key: str) -> str:
        return str(self.declared.get(key) or DEFAULTS[key])

    def path(self, key: str) -> Path:
        p = Path(self.spec(key)).expanduser()
        return p if p.is_absolute() else self.root / p

    def load(self, key: str) -> Any:
        """Import `module:attr.attr` (or a bare module) named by the declaration, from the project root."""
        spec = self.spec(key)
        module_name, _, attribute = spec.partition(":")
        module = self.module(module_name)
        value: Any = module
        try:
            for part in filter(None, attribute.split(".")):
                value = getattr(value, part)
        except AttributeError:
            raise Refused(
                f"[{TABLE}] {key} = '{spec}': {module_name} has no {attribute}",
                f"fix {key} in {self.root / 'pyproject.toml'}",
            ) from None
        return value

    def module(self, name: str) -> ModuleType:
        root = str(self.root)
        if root not in sys.path:
            sys.path.insert(0, root)
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                raise Refused(
                    f"[{TABLE}] names the module '{name}', which cannot be imported from {self.root}",
                    f"fix the [{TABLE}] table in {self.root / 'pyproject.toml'}",
                ) from None
            raise

    @property
    def metadata(self) -> Any:
        """The app's SQLAlchemy MetaData."""
        return self.load("metadata")

    @property
    def scenarios(self) -> dict[str, dict[str, int]]:
        return dict(self.load("scenarios"))

    @property
    def seeds_package(self) -> ModuleType:
        return self.module(self.spec("seeds"))

    @property
    def migrations_dir(self) -> Path:
        return self.path("migrations")

    @property
    def sanitize_policy_file(self) -> Path:
        return self.path("sanitize_policy")


@cache
def load_project(root: Path) -> Project:
    """The project whose pyproject.toml is in `root` (defaults apply where it declares nothing)."""
    declared = _declaration(root / "pyproject.toml") or {}
    components = declared.get("components", ["app"])
    if not isinstance(components, list) or not components or not all(isinstance(c, str) for c in components):
        raise Refused(
            f'[{TABLE}] components must be a non-empty list of names, such as ["app", "worker"]',
            f"fix components in {root / 'pyproject.toml'}",
        )
    plain = {k: str(v) for k, v in declared.items() if k != "components"}
    return Project(root, plain, tuple(components))
