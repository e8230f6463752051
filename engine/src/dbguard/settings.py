"""Settings from the environment and `.env` (python-dotenv; real environment variables win).

Nothing here writes to `os.environ`: a value from `.env` can configure the tools but can never
pose as something only a human's shell may say (DB_HUMAN_CONSENT, CI, agent markers), because
those are read from `Settings.environ`, the real process environment, alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from dotenv import dotenv_values

from dbguard.project import Project, find_root, load_project

DEFAULTS: dict[str, str] = {
    "APP_NAME": "app",
    "AUDIT_LOG": "logs/database_audit.jsonl",
    "BACKUP_DIR": "backups",
    "BACKUP_KEEP": "10",
    "EMBEDDED_PG_DIR": ".local/postgres",
    "EMBEDDED_PG_PORT": "54329",
    "MIGRATION_LOCK_TIMEOUT": "5s",
    "MIGRATION_STATEMENT_TIMEOUT": "15min",
    "LADDER_RECORD": ".local/ladder-passes.jsonl",
    "MIGRATIONS_DIR": "",  # empty: the [tool.dbguard] migrations entry
    "SANITIZE_POLICY": "",  # empty: the [tool.dbguard] sanitize_policy entry
    "SANITIZE_SALT_FILE": ".local/sanitize-salt",
    "STG_TARGET_IS_SAFE": "",
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
    env_file = Path(real["DB_TOOLS_ENV_FILE"]) if real.get("DB_TOOLS_ENV_FILE") else root / ".env"
    from_file = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if env_file.is_file() else {}
    return Settings(root=root, values={**from_file, **real}, environ=real)
