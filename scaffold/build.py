"""Build the copier template (`template/`) from this runnable repository: `python -m scaffold.build [--check]`.

The repository stays a runnable example app; copier needs the same files with the names turned into
questions. This script makes that copy: each skeleton file of the example app is escaped for Jinja
and its names (package, project, database prefix) replaced by the answers; the few files that differ
for a new app come from `scaffold/overrides/`. Files of the example itself are kept only when the
answer `with_example` is true. `--check` fails when `template/` is not what this script would write
(the test suite runs it), so the template can never drift from the example app.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template"
OVERRIDES = ROOT / "scaffold" / "overrides"

# Skeleton: every new app gets these (names replaced).
SKELETON = (
    ".env.example",
    ".gitignore",
    ".editorconfig",
    ".pre-commit-config.yaml",
    ".github/workflows/ci.yml",
    "alembic.ini",
    "app/__init__.py",
    "app/database.py",
    "docker-compose.yml",
    "docker/initdb/10-tiers.sql",
    "docs/migrations.md",
    "docs/operations.md",
    "docs/sanitizing.md",
    "docs/troubleshooting.md",
    "docs/updating.md",
    "migrations/env.py",
    "migrations/script.py.mako",
    "noxfile.py",
    "seeds/__init__.py",
    "tasks.py",
)
# The example app: kept when `with_example` is true.
EXAMPLE = (
    "app/__main__.py",
    "app/models.py",
    "app/worker.py",
    "seeds/comments.py",
    "seeds/projects.py",
    "seeds/scenarios.py",
    "seeds/tasks.py",
    "seeds/users.py",
    "migrations/versions/0001_initial_schema.py",
    "migrations/versions/0002_user_contact_and_task_completion.py",
    "migrations/versions/0003_notification_jobs.py",
    "tests/test_app.py",
    "tests/test_components.py",
)
# Written for new apps only: (source in overrides/, destination in the app, kept when)
OWN = (
    ("README.md.jinja", "README.md", None),
    ("pyproject.toml.jinja", "pyproject.toml", None),
    (".ci/run.jinja", ".ci/run", None),
    ("app/models_blank.py.jinja", "app/models.py", False),
    ("seeds/scenarios_blank.py", "seeds/scenarios.py", False),
    ("tests/test_database_blank.py.jinja", "tests/test_database.py", False),
    ("migrations/versions/.gitkeep", "migrations/versions/.gitkeep", False),
)
ANSWERS_FILE = "{{ _copier_conf.answers_file }}.jinja"
ANSWERS = "# Changes here will be overwritten by Copier; do not edit by hand\n{{ _copier_answers|to_nice_yaml -}}\n"

# (pattern, replacement) in file contents; the replacements are Jinja expressions
NAMES = (
    (r"\bfrom app\b", "from {{ package_name }}"),
    (r"\bimport app\b", "import {{ package_name }}"),
    (r"\bapp(\.models|\.database|\.__main__|\.worker)\b", r"{{ package_name }}\1"),
    (r"\bapp/(models|database|__main__|worker)\.py\b", r"{{ package_name }}/\1.py"),
    (r"-m app\b", "-m {{ package_name }}"),
    (r'"-m", "app"', '"-m", "{{ package_name }}"'),
    (r'TYPED = \["app",', 'TYPED = ["{{ package_name }}",'),
    (r"\bapp_(int|stg|prod)\b", r"{{ db_prefix }}_\1"),
    (r"\bapp_(int|stg|prod)_", r"{{ db_prefix }}_\1_"),  # role names: <APP_NAME>_<tier>_...
    (r"^APP_NAME=app$", "APP_NAME={{ db_prefix }}"),
    (r"name: app-pgdata", "name: {{ project_slug }}-pgdata"),
    (r"guarded-db-template", "{{ project_slug }}"),
    (r"-e \./engine\b", "'{{ engine_source }}'"),
)
# Only in the template repository: the engine's and the scaffold's paths, and the session that tests the template
NOXFILE_TYPED = (r"\nTYPED \+= .*# the template repository only\n", "\n")
NOXFILE_TEMPLATE_SESSION = '\n\n@nox.session(venv_backend="none")\ndef template('


@dataclass(frozen=True)
class Entry:
    """One file of the template: where it goes (a Jinja path) and its content."""

    path: str
    text: str


def escape(text: str) -> str:
    """Make literal text safe for Jinja: every delimiter becomes a string expression."""
    pieces = re.split(r"(\{\{|\}\}|\{%|%\}|\{#|#\})", text)
    return "".join("{{ '" + p + "' }}" if p in {"{{", "}}", "{%", "%}", "{#", "#}"} else p for p in pieces)


def jinjafy(relative: str, text: str) -> str:
    out = escape(text)
    for pattern, replacement in NAMES:
        out = re.sub(pattern, replacement, out, flags=re.MULTILINE)
    if relative == "noxfile.py":
        out = re.sub(NOXFILE_TYPED[0], NOXFILE_TYPED[1], out).split(NOXFILE_TEMPLATE_SESSION)[0].rstrip() + "\n"
    return out


def destination(relative: str, when: bool | None) -> str:
    """The Jinja path: the app package takes its name; conditional files vanish when the answer says so."""
    path = re.sub(r"^app/", "{{ package_name }}/", relative)
    if when is None:
        return path
    folder, _, name = path.rpartition("/")
    condition = "with_example" if when else "not with_example"
    named = "{% if " + condition + " %}" + name + "{% endif %}"
    return f"{folder}/{named}" if folder else named


def entries() -> list[Entry]:
    found: list[Entry] = [Entry(ANSWERS_FILE, ANSWERS)]
    for relative in SKELETON:
        text = (ROOT / relative).read_text(encoding="utf-8")
        found.append(Entry(destination(relative, None) + ".jinja", jinjafy(relative, text)))
    for relative in EXAMPLE:
        text = (ROOT / relative).read_text(encoding="utf-8")
        found.append(Entry(destination(relative, True) + ".jinja", jinjafy(relative, text)))
    for source, relative, when in OWN:
        text = (OVERRIDES / source).read_text(encoding="utf-8")
        found.append(Entry(destination(relative, when) + ".jinja", text if source.endswith(".jinja") else escape(text)))
    return found


def build(target: Path = TEMPLATE) -> None:
    if target.exists():
        shutil.rmtree(target)
    for entry in entries():
        path = target / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(entry.text, encoding="utf-8")
        if entry.path.startswith(".ci/run"):
            path.chmod(0o755)


def differences(target: Path = TEMPLATE) -> list[str]:
    """Paths where `target` differs from what `build` would write."""
    wanted = {e.path: e.text for e in entries()}
    present = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()} if target.exists() else set()
    diffs = sorted(set(wanted) ^ present)
    diffs += [p for p in sorted(set(wanted) & present) if (target / p).read_text(encoding="utf-8") != wanted[p]]
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scaffold.build", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if template/ is out of date; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences()
        if stale:
            print(
                f"template/ is out of date ({len(stale)} file(s), e.g. {stale[0]}) -> python -m scaffold.build",
                file=sys.stderr,
            )
            return 1
        return 0
    build()
    print(f"wrote {TEMPLATE.relative_to(ROOT)}/ ({len(entries())} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
