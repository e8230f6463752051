"""The ownership matrix as data (issue 13 item 1): declared beside each table, complete or refused, printed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from dbguard.errors import Refused
from dbguard.guard.tiers import Tier
from dbguard.ownership import Ownership, bad_row_owners, matrix, missing, owned, ownership_of, parents, undeclared
from dbguard.project import load_project
from dbguard.roles.apply import checked_matrix
from dbguard.roles.drift import check_ownership
from dbguard.roles.names import role_names, roles_policy
from dbguard.roles.passwords import component_password
from dbguard.roles.urls import component_url
from dbguard.settings import Settings
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table

from tests.support.cli import invoke_cli
from tests.support.project import FIXTURE_ROOT, PROJECT, PROJECTS
from tests.support.setup import make_settings, state_values


def test_the_fixture_apps_declare_every_table_and_their_components() -> None:
    rows = dict(matrix(PROJECT.metadata))
    assert list(rows) == ["public.comments", "public.projects", "public.tasks", "public.users"]
    assert rows["public.users"] == Ownership(("app",), ("worker",))
    assert rows["public.tasks"].writers == ("app", "worker") and rows["public.tasks"].kind == "shared"
    assert rows["public.projects"].row_owner == "owner_id"
    assert missing(PROJECT.metadata) == [] and PROJECT.components == ("app", "worker")
    lending = load_project(PROJECTS / "lending")
    assert lending.components == ("desk", "catalog")
    assert missing(lending.metadata) == [] and undeclared(lending.metadata, lending.components) == []


def test_privileges_follow_the_entry() -> None:
    entry = Ownership(("app",), ("worker",))
    assert entry.privileges("app") == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert entry.privileges("worker") == {"SELECT"}
    assert entry.privileges("cli") == frozenset()
    assert Ownership(("worker",), isolated=True).kind == "isolated"


@pytest.mark.parametrize(
    ("kwargs", "wrong"),
    [
        ({"writers": ()}, "at least one writer"),
        ({"writers": ("app",), "readers": ("app",)}, "both writes and only reads"),
        ({"writers": ("app", "worker"), "isolated": True}, "exactly one writer"),
        ({"writers": ("app",), "readers": ("worker",), "isolated": True}, "exactly one writer"),
        ({"writers": ("App",)}, "lower-case identifiers"),
        ({"writers": ("app; drop",)}, "lower-case identifiers"),
        ({"writers": ("app", "app")}, "listed twice"),
    ],
)
def test_an_impossible_entry_is_refused_where_it_is_declared(kwargs: dict[str, object], wrong: str) -> None:
    with pytest.raises(ValueError, match=wrong):
        Ownership(**kwargs)  # type: ignore[arg-type]


def test_missing_undeclared_and_bad_row_owners_are_found() -> None:
    metadata = MetaData()
    Table("a", metadata, Column("id", Integer, primary_key=True), info=owned("app", readers=("cli",)))
    Table("b", metadata, Column("id", Integer, primary_key=True), schema="ops")
    Table("c", metadata, Column("id", Integer, primary_key=True), info=owned("app", row_owner="user_id"))
    assert missing(metadata) == ["ops.b"]
    assert undeclared(metadata, ["app"]) == ["public.a: cli"]
    assert bad_row_owners(metadata) == ["public.c.user_id"]
    assert ownership_of(metadata.tables["ops.b"]) is None


def test_db_roles_refuses_an_incomplete_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    metadata = MetaData()
    Table("loose", metadata, Column("id", Integer, primary_key=True))
    monkeypatch.setattr(type(settings.project), "metadata", property(lambda self: metadata))
    with pytest.raises(Refused, match=r"without an ownership entry: public\.loose"):
        checked_matrix(settings, Tier.STG)
    (finding,) = check_ownership(settings)
    assert not finding.ok and "public.loose" in finding.message and "owned(" in finding.fix
    Table("other", metadata, Column("id", Integer, primary_key=True), info=owned("cli", row_owner="user_id"))
    _entries, names = check_ownership(settings)
    assert not names.ok and names.message == "public.other: cli, public.other.user_id (row_owner: no such column)"


def test_components_must_be_a_list_of_names(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.dbguard]\ncomponents = "app"\n')
    with pytest.raises(Refused, match="components must be a non-empty list"):
        load_project(tmp_path)


def test_db_ownership_prints_the_matrix(tmp_path: Path) -> None:
    proc = invoke_cli("db.ownership", env=state_values(tmp_path), cwd=FIXTURE_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for row in ("public.users", "shared", "public.projects", "owner_id", "app, worker"):
        assert row in proc.stdout
    assert "app_int_migrator owns the tables" in proc.stdout


def test_role_names_and_the_embedded_password_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, APP_NAME="My-App")
    names = role_names(settings, Tier.STG)
    assert (names.migrator, names.group("worker"), names.login("worker")) == (
        "my_app_stg_migrator",
        "my_app_stg_worker",
        "my_app_stg_worker_login",
    )
    assert role_names(settings, Tier.PROD).login("worker") == "my_app_prod_worker_login"  # a tier's own roles
    (tmp_path / "pyproject.toml").write_text('[tool.dbguard]\ncomponents = ["app", "worker"]\n')
    settings = Settings(root=tmp_path, values=settings.values, environ=settings.environ)  # state under tmp_path
    first = component_password(settings, Tier.STG, "worker", embedded=True)
    assert first and component_password(settings, Tier.STG, "worker", embedded=True) == first  # kept
    path = tmp_path / ".local" / "role-passwords" / "my_app_stg_worker_login"
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    os.chmod(path, 0o644)
    with pytest.raises(Refused, match="can be read by others"):
        component_password(settings, Tier.STG, "worker", embedded=True)
    assert component_password(settings, Tier.STG, "worker", embedded=False) is None


def test_component_url_needs_the_tier_password_for_a_tier_with_its_own_url(tmp_path: Path) -> None:
    url = "postgresql://owner:ownerpw@db.example.com:5432/app_stg"
    settings = make_settings(tmp_path, STG_DATABASE_URL=url)
    with pytest.raises(Refused, match="STG_WORKER_DATABASE_PASSWORD is not set"):
        component_url(settings, Tier.STG, "worker")
    with pytest.raises(Refused, match="'cli' is not one of the components"):
        component_url(settings, Tier.STG, "cli")
    given = component_url(settings.with_values(STG_WORKER_DATABASE_PASSWORD="w-pass"), Tier.STG, "worker")
    assert given.startswith("postgresql://app_stg_worker_login:w-pass@/app_stg?") and "ownerpw" not in given


def test_restore_lists_leave_out_only_db_roles_policies() -> None:
    assert roles_policy("215; 3256 16420 POLICY public projects dbguard_own_rows postgres")
    assert roles_policy("216; 0 0 COMMENT public POLICY dbguard_own_rows ON projects postgres")
    assert not roles_policy("217; 3256 16421 POLICY public projects team_policy postgres")
    assert not roles_policy("218; 1259 16400 TABLE public dbguard_like postgres")


def test_the_ladder_fails_a_table_without_an_ownership_entry(tiers, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from dbguard.cli.console import Output
    from dbguard.ladder.rungs import climb
    from dbguard.ownership import INFO_KEY

    from tests.support.setup import cleared

    def entry_check() -> list[str]:
        ladder = climb(tiers.settings, cleared(tiers.settings, "ladder", Tier.INT), Output(Tier.INT))
        return [f"{c.status}: {c.detail}" for c in ladder.checks if c.name == "every table has an ownership entry"]

    assert entry_check() == ["pass: all declared"]
    monkeypatch.delitem(PROJECT.metadata.tables["comments"].info, INFO_KEY)
    (failed,) = entry_check()
    assert failed.startswith("fail: no entry: public.comments") and "owned(...)" in failed
    monkeypatch.setitem(PROJECT.metadata.tables["users"].info, INFO_KEY, Ownership(("app", "cli")))
    (failed,) = entry_check()
    assert "public.users: cli (not in [tool.dbguard] components)" in failed


def test_the_docs_render_the_example_apps_matrix_as_db_ownership_prints_it(tmp_path: Path) -> None:
    from dbguard.roles.show import as_markdown

    from tests.support.project import TEMPLATE_ROOT

    table = as_markdown(load_project(TEMPLATE_ROOT).metadata)
    assert "| `public.notification_jobs` | isolated | worker | - | - |" in table
    assert table in (TEMPLATE_ROOT / "docs" / "operations.md").read_text(), "run invoke db.ownership --markdown"
    proc = invoke_cli("db.ownership", "--markdown", env=state_values(tmp_path), cwd=TEMPLATE_ROOT)
    assert proc.returncode == 0 and table in proc.stdout, proc.stdout + proc.stderr


def test_rows_via_follows_one_foreign_key_to_a_row_owned_table() -> None:
    md = MetaData()
    Table("users", md, Column("id", Integer, primary_key=True), info=owned("app"))
    Table(
        "projects",
        md,
        Column("id", Integer, primary_key=True),
        Column("owner_id", ForeignKey("users.id")),
        info=owned("app", row_owner="owner_id"),
    )
    Table(
        "tasks",
        md,
        Column("id", Integer, primary_key=True),
        Column("project_id", ForeignKey("projects.id")),
        info=owned("app", rows_via="project_id"),
    )
    Table(
        "notes",
        md,
        Column("id", Integer, primary_key=True),
        Column("task_id", ForeignKey("tasks.id")),
        info=owned("app", rows_via="task_id"),
    )
    Table(
        "tags",
        md,
        Column("id", Integer, primary_key=True),
        Column("user_id", ForeignKey("users.id")),
        info=owned("app", rows_via="user_id"),
    )  # users: not row-owned
    Table(
        "labels",
        md,
        Column("id", Integer, primary_key=True),
        Column("project", Integer),
        info=owned("app", rows_via="project"),
    )  # not a foreign key
    assert parents(md) == {
        "public.tasks": ("project_id", "public.projects", "id"),
        "public.notes": ("task_id", "public.tasks", "id"),
    }
    assert [b.split(" ")[0] for b in bad_row_owners(md)] == ["public.tags.user_id", "public.labels.project"]
    with pytest.raises(ValueError, match="not both"):
        owned("app", row_owner="owner_id", rows_via="project_id")
