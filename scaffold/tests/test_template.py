"""The copier template: in step with the example app, renders clean apps, and updates keep the app's edits."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from scaffold.build import ROOT, differences

pytest.importorskip("copier")


def git(folder: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def template_repo(tmp: Path) -> Path:
    """This repository's working tree (tracked and new files) as a git repository of its own."""
    files = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    repo = tmp / "template-repo"
    for name in files:
        source = ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    git(repo.parent, "init", "-q", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    return repo


def copy_app(template: Path, destination: Path, **data: object) -> Path:
    from copier import run_copy

    run_copy(str(template), str(destination), data=dict(data), defaults=True, unsafe=True, quiet=True)
    return destination


def test_the_template_is_in_step_with_the_example_app() -> None:
    assert differences() == [], "template/ is out of date: run python -m scaffold.build"


def test_a_new_app_has_its_own_names_and_no_template_leftovers(tmp_path: Path) -> None:
    app = copy_app(template_repo(tmp_path), tmp_path / "acme", project_name="Acme Billing")
    assert (app / "acme_billing" / "models.py").is_file() and not (app / "app").exists()
    for leftover in ("engine", "scaffold", "template", "copier.yml", "docs/benchmarks.md", "docs/architecture.md"):
        assert not (app / leftover).exists(), leftover
    texts = {p: p.read_text() for p in app.rglob("*") if p.is_file() and ".git" not in p.parts}
    for path, text in texts.items():
        assert "guarded-db-template" not in text, path
        assert "from app." not in text and "app.models" not in text, path
        assert "{{" not in text or path.name == "ci.yml", path  # only GitHub's own ${{ }} expressions remain
    assert 'name = "acme-billing"' in (app / "pyproject.toml").read_text()
    assert "acme_billing_int" in (app / "docker" / "initdb" / "10-tiers.sql").read_text()
    assert "APP_NAME=acme_billing" in (app / ".env.example").read_text()
    assert git(app, "log", "--oneline").count("\n") == 1  # git-initialised, one commit
    answers = yaml.safe_load((app / ".copier-answers.yml").read_text())
    assert answers["package_name"] == "acme_billing" and answers["with_example"] is True


def test_without_the_example_the_app_is_empty_but_complete(tmp_path: Path) -> None:
    app = copy_app(template_repo(tmp_path), tmp_path / "blank", project_name="Blank", with_example=False)
    assert not list((app / "migrations" / "versions").glob("*.py"))
    assert not (app / "seeds" / "users.py").exists() and (app / "seeds" / "scenarios.py").is_file()
    assert "class Base(DeclarativeBase)" in (app / "blank" / "models.py").read_text()
    assert "## Your first model, migration and seed module" in (app / "README.md").read_text()
    assert (app / "tests" / "test_database.py").is_file()


def test_an_update_brings_template_changes_and_keeps_the_apps_edits(tmp_path: Path) -> None:
    from copier import run_update

    template = template_repo(tmp_path)
    app = copy_app(template, tmp_path / "acme", project_name="Acme Billing")
    # the team edits its app
    tasks_py = app / "tasks.py"
    tasks_py.write_text(tasks_py.read_text() + "\n# acme: our own tasks go here\n")
    (app / "acme_billing" / "billing.py").write_text('"""Invoices."""\n')
    git(app, "add", "-A")
    git(app, "commit", "-qm", "our edits")
    # the template moves on: a skeleton file changes, and a line the app also changed
    noxfile = template / "noxfile.py"
    noxfile.write_text(noxfile.read_text().replace('"""nox sessions', '"""nox sessions (v2)', 1))
    subprocess.run(["python3", "-m", "scaffold.build"], cwd=template, check=True, capture_output=True)
    git(template, "add", "-A")
    git(template, "commit", "-qm", "v2")

    run_update(str(app), defaults=True, unsafe=True, quiet=True, overwrite=True)

    assert "nox sessions (v2)" in (app / "noxfile.py").read_text()  # the template's change arrived
    assert "# acme: our own tasks go here" in tasks_py.read_text()  # the app's edit stayed
    assert (app / "acme_billing" / "billing.py").is_file()
    answers = yaml.safe_load((app / ".copier-answers.yml").read_text())
    assert answers["_commit"] == git(template, "rev-parse", "--short", "HEAD").strip()


def test_a_conflicting_update_shows_the_conflict_instead_of_losing_the_edit(tmp_path: Path) -> None:
    from copier import run_update

    template = template_repo(tmp_path)
    app = copy_app(template, tmp_path / "acme", project_name="Acme Billing")
    noxfile = app / "noxfile.py"
    noxfile.write_text(noxfile.read_text().replace('"""nox sessions', '"""ACME sessions', 1))
    git(app, "commit", "-qam", "our wording")
    tnox = template / "noxfile.py"
    tnox.write_text(tnox.read_text().replace('"""nox sessions', '"""Template sessions', 1))
    subprocess.run(["python3", "-m", "scaffold.build"], cwd=template, check=True, capture_output=True)
    git(template, "commit", "-qam", "v2")

    run_update(str(app), defaults=True, unsafe=True, quiet=True, overwrite=True, conflict="inline")

    text = noxfile.read_text()
    assert "<<<<<<<" in text and "ACME sessions" in text and "Template sessions" in text
