"""Settings from the environment and `.env` (python-dotenv; real environment variables win).

Nothing here writes to `os.environ`: a value from `.env` can configure the tools but can never
pose as something only a human's shell may say (DB_HUMAN_CONSENT, CI, agent markers), because
those are read from `Settings.environ`, the real process environment, alone.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from dotenv.parser import parse_stream

from dbguard.errors import Refused
from dbguard.guard.tiers import APP_ENV_TIERS
from dbguard.project import Project, find_root, load_project

DEFAULTS: dict[str, str] = {
    "APP_NAME": "app",
    "AUDIT_LOG": "logs/database_audit.jsonl",
    "BACKUP_DIR": "backups",
    "BACKUP_KEEP": "10",
    "COMPONENT_IDLE_TIMEOUT": "60s",  # db.roles: a component's session idle inside a transaction is ended after this
    "EMBEDDED_PG_DIR": ".local/postgres",
    "EMBEDDED_PG_PORT": "54329",
    "EXPORT_KEY_FILE": ".local/export-key",  # signs the manifests of db.export-user's files (made on first use)
    "IMPORT_LOCK_TIMEOUT": "5s",  # db.import-user / db.import-sqlite: a table lock not granted in this time refuses
    "IMPORT_STATEMENT_TIMEOUT": "15min",
    "MIGRATION_LOCK_RETRIES": "3",  # a migration that hit lock_timeout is tried again this many times
    "MIGRATION_LOCK_TIMEOUT": "5s",
    "MIGRATION_STATEMENT_TIMEOUT": "15min",
    "LADDER_RECORD": ".local/ladder-passes.jsonl",
    "MIGRATIONS_DIR": "",  # empty: the [tool.dbguard] migrations entry
    "SANITIZE_POLICY": "",  # empty: the [tool.dbguard] sanitize_policy entry
    "SANITIZE_SALT_FILE": ".local/sanitize-salt",
    "STG_TARGET_IS_SAFE": "",
    "STG_UNDO_KEEP": "2",
    "SWAP_WAIT_SECONDS": "10",
}


@dataclass(frozen=True)
class Settings:
    """Merged configuration (`values`) and the untouched process environment (`environ`)."""

    root: Path
    values: Mapping[str, str] = field(hash=False)
    environ: Mapping[str, str] = field(hash=False)

    def get(self, key: str) -> str:
        value = self.values.get(key)
        return value if value not in (None, "") else DEFAULTS.get(key, "")

    def path(self, key: str) -> Path:
        p = Path(self.get(key)).expanduser()
        return p if p.is_absolute() else self.root / p

    def url(self, variable: str) -> str | None:
        value = (self.values.get(variable) or "").strip()
        return value or None

    @property
    def project(self) -> Project:
        """The app's declared parts (`[tool.dbguard]` in the root's pyproject.toml)."""
        return load_project(self.root)

    @property
    def migrations_dir(self) -> Path:
        """MIGRATIONS_DIR where set (a test or a one-off), else the app's declared migrations folder."""
        return self.path("MIGRATIONS_DIR") if self.values.get("MIGRATIONS_DIR") else self.project.migrations_dir

    @property
    def sanitize_policy_file(self) -> Path:
        """SANITIZE_POLICY where set, else the app's declared sanitizing policy file."""
        return self.path("SANITIZE_POLICY") if self.values.get("SANITIZE_POLICY") else self.project.sanitize_policy_file

    @property
    def app_name(self) -> str:
        return self.values.get("APP_NAME") or self.project.declared.get("app_name") or self.get("APP_NAME")

    @property
    def audit_log(self) -> Path:
        return self.path("AUDIT_LOG")

    @property
    def backups_dir(self) -> Path:
        return self.path("BACKUP_DIR")

    @property
    def backup_keep(self) -> int:
        return int(self.get("BACKUP_KEEP"))

    @property
    def stg_undo_keep(self) -> int:
        """How many undo points of STG (databases set aside by a reset, restore or refresh) are kept."""
        return int(self.get("STG_UNDO_KEEP"))  # checked when read (check_values)

    @property
    def env_file(self) -> Path:
        return self.root / ".env"

    def with_values(self, **values: str | None) -> Settings:
        """A copy with some values replaced (None removes one). Handy for tests and tools."""
        merged = dict(self.values)
        for key, value in values.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return replace(self, values=merged)


def load_settings(root: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read `.env` under `root` (if present), then let the real environment override it.

    DB_TOOLS_ENV_FILE (environment only) names another file; tests point it at their own.
    """
    real = dict(os.environ if environ is None else environ)
    root = (root or find_root(environ=real)).resolve()
    named = real.get("DB_TOOLS_ENV_FILE")
    env_file = Path(named) if named else root / ".env"
    if named and not env_file.exists():
        raise Refused(
            f"DB_TOOLS_ENV_FILE names {env_file}, which does not exist",
            "point DB_TOOLS_ENV_FILE at your settings file, or unset it to use .env",
        )
    from_file = read_env_file(env_file) if env_file.is_file() else {}
    settings = Settings(root=root, values={**from_file, **real}, environ=real)
    check_values(settings)
    return settings


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (python-dotenv's grammar). A line it cannot read is an error naming the line, never
    a silent drop: an unterminated quote would otherwise swallow the URL after it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise Refused(f"{path} is not UTF-8 text", f"save {path.name} as UTF-8") from None
    except OSError as exc:
        raise Refused(f"{path} cannot be read ({exc.strerror})", f"make {path} readable") from None
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise Refused(
                f"{path.name} line {binding.original.line} is not KEY=VALUE (an unterminated quote?)",
                f"fix line {binding.original.line} of {path}",
            )
        if binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return values


_DURATION = re.compile(r"^\d+\s*(us|ms|s|min|h|d)?$")
_WHOLE = {
    "BACKUP_KEEP": (1, 10_000),
    "EMBEDDED_PG_PORT": (1024, 65535),
    "MIGRATION_LOCK_RETRIES": (0, 20),
    "STG_UNDO_KEEP": (1, 100),
}


def check_values(settings: Settings) -> None:
    """Settings are checked when they are read: each bad one is one line naming it and the fix."""
    for key, (low, high) in _WHOLE.items():
        raw = settings.get(key)
        if not raw.strip().isdigit() or not low <= int(raw) <= high:
            raise Refused(f"{key} must be a whole number from {low} to {high}, not {raw[:40]!r}", _fix(key))
    for key in (
        "MIGRATION_LOCK_TIMEOUT",
        "MIGRATION_STATEMENT_TIMEOUT",
        "IMPORT_LOCK_TIMEOUT",
        "IMPORT_STATEMENT_TIMEOUT",
        "COMPONENT_IDLE_TIMEOUT",
    ):
        raw = settings.get(key)
        if not _DURATION.match(raw.strip()):
            raise Refused(f"{key} must be a PostgreSQL duration such as 5s or 15min, not {raw[:40]!r}", _fix(key))
    raw = settings.get("SWAP_WAIT_SECONDS")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise Refused(
            f"SWAP_WAIT_SECONDS must be a number of seconds from 0 to 3600, not {raw[:40]!r}", _fix("SWAP_WAIT_SECONDS")
        )
    raw = (settings.values.get("APP_ENV") or "").strip().lower()
    if raw and raw not in APP_ENV_TIERS:
        raise Refused(f"APP_ENV must be one of {', '.join(sorted(APP_ENV_TIERS))}, not {raw[:40]!r}", _fix("APP_ENV"))
    raw = (settings.values.get("STG_TARGET_IS_SAFE") or "").strip().lower()
    if raw not in {"", "0", "1", "true", "false", "yes", "no"}:
        raise Refused(f"STG_TARGET_IS_SAFE must be 1 or empty, not {raw[:40]!r}", _fix("STG_TARGET_IS_SAFE"))


def _fix(key: str) -> str:
    return f"correct {key} in the environment or .env (see .env.example)"
