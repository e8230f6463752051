"""The template tests itself (`nox -s template`): render new apps and run what their READMEs promise.

Three apps are rendered into a temporary folder from this repository's working tree:
- `with_example`: the example task manager, as a team starting from it gets it;
- `blank`: no example; then the README's "your first model, migration and seed module" is followed
  as written (its code blocks pasted where it says);
- `shaped`: no example, then another app's schema dropped in (the engine tests' lending library:
  another package layout, other tables and types).
Each app gets its own virtual environment (on top of this one's packages, so nothing is downloaded
twice), runs its README's two Quickstart commands verbatim, its lint and type-check sessions, and
its migration ladder. Each app's embedded PostgreSQL lives in its own folder and is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LENDING = ROOT / "engine" / "tests" / "projects" / "lending"


def render(destination: Path, **answers: object) -> Path:
    """`copier copy` of this repository's working tree into `destination`."""
    from copier import run_copy  # noqa: PLC0415 -- only this script needs copier

    run_copy(str(ROOT), str(destination), data=dict(answers), defaults=True, unsafe=True, quiet=True)
    return destination


def quickstart(app: Path) -> list[str]:
    """The README's two Quickstart commands, as written."""
    section = (app / "README.md").read_text().split("## Quickstart", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def shell(app: Path, venv: Path, command: str, log: list[str]) -> None:
    """Run one command in the app's folder with its virtual environment active; raise on failure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    for key in [k for k in env if k.endswith("_DATABASE_URL")]:
        del env[key]  # each app uses its own embedded default
    env["DB_TOOLS_ENV_FILE"] = "/dev/null"
    began = time.perf_counter()
    proc = subprocess.run(
        ["bash", "-c", command], cwd=app, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    log.append(f"  {app.name}: {command}  ({time.perf_counter() - began:.1f}s, exit {proc.returncode})")
    if proc.returncode != 0:
        raise RuntimeError(f"{app.name}: `{command}` failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def python_blocks(markdown: str) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)
    return [re.sub(r"^   ", "", b, flags=re.MULTILINE) for b in blocks]


def follow_first_model(app: Path, package: str) -> list[str]:
    """Do what the blank app's README section says: the model, its migration, the seed module, the scenario."""
    readme = (app / "README.md").read_text()
    section = readme.split("## Your first model, migration and seed module", 1)[1].split("\n## ", 1)[0]
    model, seed = python_blocks(section)
    models = app / package / "models.py"
    text = models.read_text()
    imports = {  # the imports the README's step names
        "from sqlalchemy import MetaData\n": "from dbguard.ownership import owned\n"
        "from dbguard.pii import PII, pii_column\n"
        "from sqlalchemy import BigInteger, Identity, MetaData, Text\n",
        "from sqlalchemy.orm import DeclarativeBase\n": "from sqlalchemy.orm import DeclarativeBase, Mapped\n",
    }
    for old, new in imports.items():
        text = text.replace(old, new)
    models.write_text(text + "\n\n" + model)
    (app / "seeds" / "customers.py").write_text('"""customers: one row each."""\n\n' + seed)
    scenarios = app / "seeds" / "scenarios.py"
    counts = {"minimal": "3", "demo": "200", "load": "100_000"}
    text = scenarios.read_text()
    for name, count in counts.items():
        text = text.replace(f'"{name}": {{}}', f'"{name}": {{"customers": {count}}}')
    scenarios.write_text(text)
    return ['invoke db.revision -m "customers"', "invoke db.reset --env stg && invoke db.status"]


def drop_in_lending(app: Path, package: str) -> list[str]:
    """Another schema: the lending library's models, seed modules and migration, in this app's layout."""
    models = (LENDING / "lending" / "schema.py").read_text()
    (app / package / "models.py").write_text(models)
    for path in (LENDING / "lending" / "catalog_seeds").glob("*.py"):
        text = path.read_text().replace("from lending.schema import", f"from {package}.models import")
        name = "scenarios.py" if path.name == "__init__.py" else path.name
        (app / "seeds" / name).write_text(text)
    for path in (LENDING / "migrations" / "versions").glob("*.py"):
        shutil.copy(path, app / "migrations" / "versions" / path.name)
    pyproject = app / "pyproject.toml"  # its components, as the lending app lists them
    listed = re.search(r"^components = .*$", (LENDING / "pyproject.toml").read_text(), flags=re.MULTILINE)
    assert listed is not None, "the lending fixture lists its components"
    text = re.sub(r"^components = .*$", listed.group(0), pyproject.read_text(), count=1, flags=re.MULTILINE)
    pyproject.write_text(text)
    return ["invoke db.reset --env stg && invoke db.status"]


def exercise(app: Path, package: str, log: list[str], extra: Callable[[Path, str], list[str]] | None) -> None:
    venv = app.parent / f"{app.name}-venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    first, second = quickstart(app)
    try:
        shell(app, venv, first, log)
        shell(app, venv, second, log)
        for command in extra(app, package) if extra else []:
            shell(app, venv, command, log)
        if extra:
            shell(app, venv, "pytest -q", log)
        shell(app, venv, "nox -s lint typecheck migrations", log)
    finally:
        shell(app, venv, "invoke db.down || true", [])


APPS: dict[str, tuple[dict[str, object], Callable[[Path, str], list[str]] | None]] = {
    "with_example": ({"project_name": "Acme Billing", "with_example": True}, None),
    "blank": ({"project_name": "Blank Slate", "with_example": False}, follow_first_model),
    "shaped": ({"project_name": "Shelf Life", "with_example": False}, drop_in_lending),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s template --", description=__doc__)
    parser.add_argument("apps", nargs="*", choices=[*APPS, []], help="which apps (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the rendered apps (their folder is printed)")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="template-selftest-"))
    log: list[str] = []
    failed = []
    for name in args.apps or list(APPS):
        answers, extra = APPS[name]
        app = render(base / name, **answers)
        package = re.sub(r"[^a-z0-9]+", "_", str(answers["project_name"]).lower()).strip("_")
        try:
            exercise(app, package, log, extra)
            log.append(f"{name}: ok")
        except RuntimeError as exc:
            failed.append(name)
            log.append(f"{name}: FAILED\n{exc}")
    print("\n".join(log))
    if args.keep:
        print(f"apps kept in {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{len(APPS) - len(failed) if not args.apps else len(args.apps) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
