"""db.import-sqlite: an app's SQLite file into a tier's schema at head, every quirk of SQLite's typing, one
transaction, the rows that do not fit reported by row, column and reason; refused on PROD without the typed
name, for an agent, off head, or without a file. The SQLite files are made here with the stdlib."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from dbguard.cli.runner import EXIT_FAILED, EXIT_OK, EXIT_REFUSED
from dbguard.guard.tiers import Tier
from dbguard.transfer.sqlite_import import import_sqlite_task

from tests.support.cli import invoke_cli
from tests.support.setup import Tiers, human, robot, run

EPOCH_2024_03_01 = 1709251200  # 2024-03-01 00:00:00 UTC
EPOCH_MS_2024_03_01_1030 = 1709289000000  # 2024-03-01 10:30:00 UTC, in milliseconds


def make_sqlite(path: Path, statements: str, rows: dict[str, list[tuple[object, ...]]]) -> Path:
    with sqlite3.connect(path) as conn:
        conn.executescript(statements)
        for table, values in rows.items():
            for row in values:
                conn.execute(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(row))})', row)
    conn.close()
    return path


TASKBOARD_SQLITE = """
CREATE TABLE "Users" (id INTEGER PRIMARY KEY, email TEXT, full_name TEXT, phone TEXT, last_login_ip TEXT,
                      preferences TEXT, created_at DATETIME, legacy_flag BOOLEAN);
CREATE TABLE projects (id INTEGER PRIMARY KEY, owner_id INTEGER, name TEXT, description TEXT, created_at TEXT);
CREATE TABLE tasks (id INTEGER PRIMARY KEY, project_id INTEGER, assignee_id INTEGER, title TEXT, status TEXT,
                    priority, due_date DATE, completed_at, created_at TEXT);
CREATE TABLE comments (id INTEGER PRIMARY KEY, task_id INTEGER, author_id INTEGER, body TEXT, created_at TEXT);
CREATE TABLE attachments (id INTEGER PRIMARY KEY, data BLOB);
"""


def taskboard_rows(*, bad: bool) -> dict[str, list[tuple[object, ...]]]:
    return {
        "Users": [
            (3, "ada@example.com", "Ada", None, "10.0.0.7", '{"theme": "dark", "n": [1, 2]}', EPOCH_2024_03_01, 1),
            (7, "bob@example.com", "Bob", "555-0100", None, "{}", "2024-03-01T09:15:00+02:00", "true"),
            (9, "cy@example.com", "Cy", None, None, "[]", "Fri, 01 Mar 2024 12:00:00 +0000", 0),
        ],
        "projects": [(1, 3, "Garden", None, "2024-01-02 03:04:05"), (2, 7, "Shed", "tools", "2024/01/03 10:00:00")],
        "tasks": [
            (10, 1, None, "dig", "todo", 2, "2024-03-01", None, "2024-03-01 08:00:00"),
            (11, 1, 3, "plant", "doing", "3", "2024/03/02", EPOCH_MS_2024_03_01_1030, "2024-03-01T08:00:00Z"),
            (12, 2, 7, "paint", "done", 4.0, EPOCH_2024_03_01, "2024-03-05 17:45:30.250", EPOCH_2024_03_01),
            (13, 2, 9, "sweep", "todo", "abc" if bad else 1, None, None, "2024-03-01 08:00:00"),
        ],
        "comments": [(100, 11, 9, "nice", "2024-03-02 10:00:00"), (101, 13, 3, "when?", "2024-03-02 11:00:00")],
        "attachments": [(1, b"\x00\x01")],
    }


def cells_of(stdout: str) -> list[list[str]]:
    """The rows of the tables printed (rich's box drawing), as lists of stripped cells."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines() if "│" in line]


def import_body(path: Path | str | None, *, skip_bad: bool = False):  # type: ignore[no-untyped-def]
    return lambda ctx: import_sqlite_task(ctx, from_=str(path) if path else None, skip_bad=skip_bad)


def app_rows(tiers: Tiers, tier: Tier = Tier.INT) -> dict[str, str]:
    return {
        t: tiers.sql(tier, f"SELECT coalesce(string_agg(x::text, E'\\n' ORDER BY x.id), '') FROM {t} x")
        for t in ("users", "projects", "tasks", "comments")
    }


def test_every_quirk_of_sqlite_typing_lands_exactly(tiers: Tiers, int_target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = make_sqlite(tmp_path / "app.db", TASKBOARD_SQLITE, taskboard_rows(bad=False))
    tiers.sql(Tier.INT, "SET TIME ZONE 'UTC'")

    result = run(tiers.settings, "import-sqlite", "int", robot(), import_body(path))
    assert result.code == EXIT_OK, result.text
    assert "SQLite table(s) with no PostgreSQL table, not imported: attachments" in result.stdout
    assert "Users: column(s) not imported: legacy_flag (no such PostgreSQL column)" in result.stdout
    assert "imported 11 row(s) from app.db into" in result.stdout
    audit = json.loads(Path(tiers.settings.values["AUDIT_LOG"]).read_text().splitlines()[-1])
    assert (audit["task"], audit["outcome"]) == ("import-sqlite", "ok")
    assert {"file": "app.db", "tables": 4, "rows": 11, "refused": 0}.items() <= audit["args"].items()
    utc = "SET TIME ZONE 'UTC'; "
    assert tiers.sql(
        Tier.INT,
        utc + "SELECT id, email, phone, last_login_ip, preferences, created_at FROM users ORDER BY id",
    ).splitlines() == [
        '3|ada@example.com||10.0.0.7|{"n": [1, 2], "theme": "dark"}|2024-03-01 00:00:00+00',
        "7|bob@example.com|555-0100||{}|2024-03-01 07:15:00+00",
        "9|cy@example.com|||[]|2024-03-01 12:00:00+00",
    ]
    assert tiers.sql(Tier.INT, utc + "SELECT id, owner_id, description, created_at FROM projects ORDER BY id") == (
        "1|3||2024-01-02 03:04:05+00\n2|7|tools|2024-01-03 10:00:00+00"
    )
    assert tiers.sql(
        Tier.INT,
        utc + "SELECT id, assignee_id, status, priority, due_date, completed_at, created_at FROM tasks ORDER BY id",
    ).splitlines() == [
        "10||todo|2|2024-03-01||2024-03-01 08:00:00+00",
        "11|3|doing|3|2024-03-02|2024-03-01 10:30:00+00|2024-03-01 08:00:00+00",
        "12|7|done|4|2024-03-01|2024-03-05 17:45:30.25+00|2024-03-01 00:00:00+00",
        "13|9|todo|1|||2024-03-01 08:00:00+00",
    ]
    assert tiers.sql(Tier.INT, "SELECT id, task_id, author_id, body FROM comments ORDER BY id") == (
        "100|11|9|nice\n101|13|3|when?"
    )
    # identity sequences end past the imported ids: the app's next insert does not collide
    assert tiers.sql(
        Tier.INT, "INSERT INTO users (email, full_name) VALUES ('new@example.com', 'New') RETURNING id"
    ).startswith("10")
    assert tiers.sql(Tier.INT, "INSERT INTO comments (task_id, author_id, body) VALUES (10, 3, 'x') RETURNING id") == (
        "102"
    )

    again = run(tiers.settings, "import-sqlite", "int", robot(), import_body(path))
    assert again.code == EXIT_REFUSED
    assert "already holds rows (in users, projects, tasks, comments) -> start from an empty schema: " in again.stderr
    assert "invoke db.reset --env int --no-seed" in again.stderr


def test_a_row_that_does_not_fit_is_reported_and_nothing_is_written(
    tiers: Tiers,
    int_target,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    path = make_sqlite(tmp_path / "bad.db", TASKBOARD_SQLITE, taskboard_rows(bad=True))

    dry = run(tiers.settings, "import-sqlite", "int", robot(), import_body(path), dry_run=True)
    assert dry.code == EXIT_FAILED
    assert ["tasks", "13", "priority", "text 'abc' in smallint column"] in cells_of(dry.stdout)
    assert "a real run would import nothing" in dry.stderr

    result = run(tiers.settings, "import-sqlite", "int", robot(), import_body(path))
    assert result.code == EXIT_FAILED
    cells = cells_of(result.stdout)
    assert ["tasks", "13", "priority", "text 'abc' in smallint column"] in cells
    assert ["comments", "101", "task_id", "13 is not a key of tasks (id)"] in cells
    assert "2 row(s) of bad.db do not fit (listed above); nothing was imported -> fix them in the file, " in (
        result.stderr
    )
    assert "or pass --skip-bad to import the rest" in result.stderr
    assert app_rows(tiers) == {"users": "", "projects": "", "tasks": "", "comments": ""}
    assert tiers.sql(Tier.INT, "SELECT last_value, is_called FROM users_id_seq") == "1|f"  # sequences untouched

    skipped = run(tiers.settings, "import-sqlite", "int", robot(), import_body(path, skip_bad=True))
    assert skipped.code == EXIT_OK, skipped.text
    assert "imported 9 row(s) from bad.db" in skipped.stdout
    assert "2 row(s) left out with --skip-bad (listed above)" in skipped.stdout
    assert tiers.sql(Tier.INT, "SELECT string_agg(id::text, ',' ORDER BY id) FROM tasks") == "10,11,12"
    assert tiers.sql(Tier.INT, "SELECT string_agg(id::text, ',' ORDER BY id) FROM comments") == "100"


QUIRKS_PG = """
CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE TABLE teams (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL, lead_id bigint);
CREATE TABLE people (id serial PRIMARY KEY, team_id bigint REFERENCES teams, mentor_id int REFERENCES people,
                     code varchar(5) UNIQUE, score numeric(5,2) CHECK (score >= 0), active boolean NOT NULL,
                     photo bytea, ref uuid, mood mood, seen_at timestamp, wakes time, data jsonb, born date,
                     ratio real, label text GENERATED ALWAYS AS (upper(code)) STORED);
ALTER TABLE teams ADD FOREIGN KEY (lead_id) REFERENCES people;
"""
QUIRKS_SQLITE = """
CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT, lead_id INTEGER);
CREATE TABLE people (id INTEGER PRIMARY KEY, team_id, mentor_id, code, score, active, photo, ref, mood, seen_at,
                     wakes, data, born, ratio, label);
"""
UUID_TEXT = "6f1c0d5e-8a5b-4e53-9a0e-2f0c9b1d7e11"


def quirk_rows(**bad: tuple[object, ...]) -> dict[str, list[tuple[object, ...]]]:
    people: list[tuple[object, ...]] = [
        (
            1,
            1,
            None,
            "ab",
            12.5,
            1,
            b"\x00\xff\x10",
            UUID_TEXT,
            "calm",
            "2024-03-01 10:00:00",
            "07:30",
            '{"a": 1}',
            "2024-02-29",
            0.5,
            "ignored",
        ),
        (
            2,
            1,
            1,
            "cd",
            "3",
            "true",
            "text as bytes",
            bytes.fromhex(UUID_TEXT.replace("-", "")),
            "busy",
            EPOCH_2024_03_01,
            "23:59:59.5",
            42,
            EPOCH_2024_03_01,
            2,
            None,
        ),
        (3, 2, 2, None, None, "F", None, None, None, "2024-03-01T12:00:00+01:00", None, None, None, None, None),
    ]
    people += list(bad.values())
    return {"teams": [(1, "red", 2), (2, "blue", 3)], "people": people}


def make_quirk_tables(tiers: Tiers) -> None:
    tiers.sql(Tier.INT, QUIRKS_PG)


def test_booleans_blobs_uuids_enums_json_and_a_table_cycle(tiers: Tiers, int_target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_quirk_tables(tiers)
    path = make_sqlite(tmp_path / "quirks.db", QUIRKS_SQLITE, quirk_rows())

    result = run(tiers.settings, "import-sqlite", "int", robot(), import_body(path))
    assert result.code == EXIT_OK, result.text
    assert "people: column(s) not imported: label (computed by PostgreSQL)" in result.stdout
    assert "is in a cycle: dropped for the load, added back" in result.stdout
    assert tiers.sql(
        Tier.INT,
        "SELECT id, team_id, mentor_id, code, score, active, encode(photo, 'hex'), ref, mood, seen_at, wakes, data, "
        "born, ratio, label FROM people ORDER BY id",
    ).splitlines() == [
        f"1|1||ab|12.50|t|00ff10|{UUID_TEXT}|calm|2024-03-01 10:00:00|07:30:00|" + '{"a": 1}|2024-02-29|0.5|AB',
        f"2|1|1|cd|3.00|t|{b'text as bytes'.hex()}|{UUID_TEXT}|busy|2024-03-01 00:00:00|23:59:59.5|42|2024-03-01|2|CD",
        "3|2|2|||f||||2024-03-01 11:00:00|||||",
    ]
    assert tiers.sql(Tier.INT, "SELECT id, name, lead_id FROM teams ORDER BY id") == "1|red|2\n2|blue|3"
    # the cycle's foreign key is back, and checked
    assert tiers.sql(
        Tier.INT, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'teams'::regclass AND contype = 'f'"
    )
    assert tiers.sql(Tier.INT, "SELECT nextval('people_id_seq'), nextval(pg_get_serial_sequence('teams', 'id'))") == (
        "4|3"
    )


def test_each_quirk_that_does_not_fit_names_its_row_column_and_reason(
    tiers: Tiers,
    int_target,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    make_quirk_tables(tiers)
    nothing = (None,) * 10
    rows = quirk_rows(
        a=(4, 1, None, "toolong", None, 2, None, None, *nothing[:7]),
        b=(5, 1, None, "ef", -1, 1, 7, "not-a-uuid", "sleepy", "soon", None, "{bad", "03/04/2024", "x", None),
        c=(6, 9, 77, "ab", 1000, None, None, None, None, None, None, None, None, None, None),
        d=(7, 1, None, "gh", 5, 1, None, None, None, None, None, None, "2024-03-01 10:00:00", None, None),
    )
    path = make_sqlite(tmp_path / "misfits.db", QUIRKS_SQLITE, rows)
    with sqlite3.connect(path) as lite:  # SQLite keeps TEXT that is not UTF-8 as it was given
        lite.execute("UPDATE people SET code = CAST(x'fffe' AS TEXT) WHERE id = 7")
    lite.close()
    result = run(tiers.settings, "import-sqlite", "int", robot(), import_body(path))
    assert result.code == EXIT_FAILED
    cells = cells_of(result.stdout)
    refusals = [c for c in cells if len(c) == 4 and c[0] == "people"]
    assert refusals == [
        ["people", "4", "code", "text of 7 characters is longer than character varying(5)"],
        ["people", "4", "active", "integer 2 in boolean column"],
        ["people", "5", "photo", "integer 7 in bytea column"],
        ["people", "5", "ref", "text 'not-a-uuid' in uuid column"],
        ["people", "5", "mood", "text 'sleepy' is not one of enum mood's values (calm, busy)"],
        [
            "people",
            "5",
            "seen_at",
            "text 'soon' in timestamp without time zone column (not ISO 8601, RFC 2822 or a unix epoch)",
        ],
        ["people", "5", "data", "text '{bad' is not JSON"],
        ["people", "5", "born", "text '03/04/2024' in date column (not ISO 8601, RFC 2822 or a unix epoch)"],
        ["people", "5", "ratio", "text 'x' in real column"],
        ["people", "6", "score", "integer 1000 out of range for numeric(5,2)"],
        ["people", "6", "active", "NULL in a NOT NULL column"],
        ["people", "7", "code", "text that is not UTF-8 (2 bytes) in character varying(5) column"],
        ["people", "7", "born", "text '2024-03-01 10:00:00' in date column (it has a time of day the date would drop)"],
    ]
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM people") == "0"

    # what only PostgreSQL checks (here a CHECK and a foreign key to a row the file lacks) is found by its row
    rows = quirk_rows(e=(8, 1, None, "ij", -1, 1, *nothing[:9]), f=(9, 1, 42, "kl", 1, 1, *nothing[:9]))
    path = make_sqlite(tmp_path / "server.db", QUIRKS_SQLITE, rows)
    result = run(tiers.settings, "import-sqlite", "int", robot(), import_body(path, skip_bad=True))
    assert result.code == EXIT_OK, result.text
    cells = cells_of(result.stdout)
    assert ["people", "8", "", 'new row for relation "people" violates check constraint "people_score_check"'] in cells
    assert ["people", "9", "mentor_id", "42 is not a key of people (id)"] in cells
    assert tiers.sql(Tier.INT, "SELECT string_agg(id::text, ',' ORDER BY id) FROM people") == "1,2,3"


def test_refusals_name_their_fix_and_touch_nothing(tiers: Tiers, int_target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = make_sqlite(tmp_path / "app.db", TASKBOARD_SQLITE, taskboard_rows(bad=False))

    missing = run(tiers.settings, "import-sqlite", "int", robot(), import_body(tmp_path / "nope.db"))
    assert missing.code == EXIT_REFUSED
    assert f"no SQLite file at {tmp_path / 'nope.db'} -> pass --from the app's .db file" in missing.stderr
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("hello, not a database\n" * 100)
    wrong = run(tiers.settings, "import-sqlite", "int", robot(), import_body(not_sqlite))
    assert wrong.code == EXIT_REFUSED and "is not a SQLite database (file is not a database)" in wrong.stderr
    none = run(tiers.settings, "import-sqlite", "int", robot(), import_body(None))
    assert none.code == EXIT_REFUSED and "which SQLite file? --from is missing -> pass --from FILE.db" in none.stderr

    other = make_sqlite(tmp_path / "other.db", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);", {})
    unrelated = run(tiers.settings, "import-sqlite", "int", robot(), import_body(other))
    assert unrelated.code == EXIT_REFUSED
    assert "no table of other.db has a table of the same name in" in unrelated.stderr

    prod = run(tiers.settings, "import-sqlite", "prod", robot(agent="claude-code"), import_body(path))
    assert prod.code == EXIT_REFUSED and not prod.ran
    assert "automated agent (claude-code); it needs a human's consent" in prod.stderr
    unconfirmed = run(tiers.settings, "import-sqlite", "prod", robot(), import_body(path))
    assert unconfirmed.code == EXIT_REFUSED and not unconfirmed.ran
    assert tiers.names[Tier.PROD] in unconfirmed.stderr
    wrong_name = run(tiers.settings, "import-sqlite", "prod", human("app_prod"), import_body(path))
    assert wrong_name.code == EXIT_REFUSED and not wrong_name.ran

    from dbguard.migrations.schema import downgrade, sa_connection

    with sa_connection(int_target) as conn, conn.begin():
        downgrade(tiers.settings, conn, "0001")
    behind = run(tiers.settings, "import-sqlite", "int", robot(), import_body(path))
    assert behind.code == EXIT_REFUSED
    assert "the schema is not at head: pending revision(s) 0002 -> invoke db.migrate --env int" in behind.stderr
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM users") == "0"


@pytest.mark.slow
def test_the_cli_backs_up_stg_first_and_prints_the_summary(tiers: Tiers, tmp_path: Path) -> None:
    from dbguard.migrations.schema import sa_connection, upgrade

    with sa_connection(tiers.target(Tier.STG)) as conn, conn.begin():
        upgrade(tiers.settings, conn, "head")
    path = make_sqlite(tmp_path / "app.db", TASKBOARD_SQLITE, taskboard_rows(bad=False))
    env = {k: v for k, v in tiers.settings.values.items() if isinstance(v, str)}
    result = invoke_cli("db.import-sqlite", "--env", "stg", "--from", str(path), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[STG]" in result.stdout and "imported 11 row(s) from app.db" in result.stdout
    backups = list((tmp_path / "backups").glob("*stg*.dump"))
    assert len(backups) == 1
    manifest = json.loads(backups[0].with_name(backups[0].name + ".json").read_text())
    assert "import-sqlite" in json.dumps(manifest)
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM tasks") == "4"


@pytest.mark.skipif(shutil.which("pgloader") is None, reason="pgloader is not installed (apt-get install pgloader)")
def test_pgloader_on_the_same_file_commits_a_partial_load_and_loses_foreign_keys(
    tiers: Tiers,
    int_target,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """What docs/operations.md says of pgloader, measured: into the same schema at head (`data only`), on the
    same file (without the one column pgloader cannot place: it stops at an unknown column), pgloader exits 0
    with two tables empty (SQLite's epoch numbers and RFC 2822 dates refused by PostgreSQL, each failing its
    table's batch), orphans committed in the others, and three foreign keys it dropped for the load gone for
    good; db.import-sqlite loads every row and keeps every foreign key."""
    path = make_sqlite(tmp_path / "app.db", TASKBOARD_SQLITE, taskboard_rows(bad=False))
    with sqlite3.connect(path) as lite:
        lite.execute('ALTER TABLE "Users" DROP COLUMN legacy_flag')
    lite.close()
    path.chmod(0o644)
    tmp_path.chmod(0o755)
    theirs = f"{tiers.names[Tier.INT]}_pgloader"
    tiers.local.create_database(theirs)
    from dbguard.guard.targets import parse_database_url
    from dbguard.migrations.schema import sa_connection, upgrade

    target = parse_database_url(tiers.local.socket_url(theirs), tier=Tier.INT, source="test")
    with sa_connection(target) as conn, conn.begin():
        upgrade(tiers.settings, conn, "head")
    command = tmp_path / "app.load"
    command.write_text(
        f"load database from sqlite://{path} "
        f"into postgresql://postgres@unix:{tiers.local.socket_dir}:{tiers.local.port}/{theirs} "
        "with data only, create no tables, create no indexes, reset sequences, downcase identifiers;\n"
    )
    pgloader = subprocess.run(
        ["pgloader", "--root-dir", str(tmp_path / "pgloader"), str(command)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert pgloader.returncode == 0, pgloader.stdout + pgloader.stderr
    count = "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM projects), (SELECT count(*) FROM tasks), "
    count += "(SELECT count(*) FROM comments), (SELECT count(*) FROM pg_constraint WHERE contype = 'f')"
    assert tiers.local.psql(theirs, count) == "0|2|0|2|2"
    assert 'timestamp out of range: "1709251200-01-01"' in pgloader.stdout + pgloader.stderr

    ours = run(tiers.settings, "import-sqlite", "int", robot(), import_body(path))
    assert ours.code == EXIT_OK, ours.text
    assert tiers.sql(Tier.INT, count) == "3|2|4|2|5"


def test_prod_takes_the_typed_name_and_a_backup_first(tiers: Tiers, tmp_path: Path) -> None:
    from dbguard.migrations.schema import sa_connection, upgrade

    with sa_connection(tiers.target(Tier.PROD)) as conn, conn.begin():
        upgrade(tiers.settings, conn, "head")
    path = make_sqlite(tmp_path / "app.db", TASKBOARD_SQLITE, taskboard_rows(bad=False))

    caller = human(tiers.names[Tier.PROD])
    result = run(tiers.settings, "import-sqlite", "prod", caller, import_body(path))
    assert result.code == EXIT_OK, result.text
    assert caller._prompts  # type: ignore[attr-defined]  # the name was asked for, and typed
    backups = list((tmp_path / "backups").glob("*prod*.dump"))
    assert len(backups) == 1 and result.contexts[0].facts["backup"] == backups[0].name
    assert tiers.sql(Tier.PROD, "SELECT count(*) FROM tasks") == "4"


@pytest.mark.parametrize(
    ("base", "value", "expected"),
    [
        ("timestamptz", 1709289000000, datetime(2024, 3, 1, 10, 30, tzinfo=UTC)),  # epoch milliseconds
        ("timestamptz", 1709289000.5, datetime(2024, 3, 1, 10, 30, 0, 500000, tzinfo=UTC)),  # REAL seconds
        ("timestamptz", "1709289000", datetime(2024, 3, 1, 10, 30, tzinfo=UTC)),  # epoch as text
        ("timestamptz", "2024-03-01T11:30:00+01:00", datetime(2024, 3, 1, 10, 30, tzinfo=UTC)),
        ("timestamp", "2024-03-01T11:30:00+01:00", datetime(2024, 3, 1, 10, 30)),  # to UTC, then naive
        ("timestamp", "Fri, 01 Mar 2024 10:30:00 GMT", datetime(2024, 3, 1, 10, 30)),
        ("date", "2024/03/01", date(2024, 3, 1)),
        ("bool", " Yes ", True),
        ("bool", 0.0, False),
        ("int8", "  -42 ", -42),
        ("int4", 7.0, 7),
        ("numeric", 0.1, Decimal("0.1")),  # the REAL's shortest text, not its binary expansion
        ("text", 3.5, "3.5"),
        ("bytea", "é", "é".encode()),
    ],
)
def test_a_value_that_fits_means_what_it_meant_in_sqlite(base: str, value: object, expected: object) -> None:
    from dbguard.transfer.sqlite_types import PgColumn, converter_for

    assert converter_for(PgColumn("c", 0, base, base))(value) == expected


@pytest.mark.parametrize(
    ("base", "typmod", "value", "reason"),
    [
        ("int2", -1, 40000, "integer 40000 out of range for smallint"),
        ("int8", -1, 1.5, "real 1.5 in smallint column"),
        ("text", -1, "a\x00b", "text 'a\\x00b' in smallint column (PostgreSQL text cannot hold a NUL character)"),
        ("text", -1, b"\xff\xfe", "blob of 2 bytes in smallint column (not UTF-8 text)"),
        ("jsonb", -1, "NaN", "text 'NaN' is not JSON"),
        ("bool", -1, "maybe", "text 'maybe' in smallint column"),
        ("numeric", (6 << 16 | 2) + 4, "9999.995", "text '9999.995' out of range for smallint"),
        ("date", -1, 1709289000, "integer 1709289000 in smallint column (it has a time of day the date would drop)"),
    ],
)
def test_a_value_that_does_not_fit_says_why(base: str, typmod: int, value: object, reason: str) -> None:
    from dbguard.transfer.sqlite_types import Misfit, PgColumn, converter_for

    with pytest.raises(Misfit) as caught:
        converter_for(PgColumn("c", 0, base, "smallint", typmod))(value)
    assert caught.value.reason == reason


SHAPES_SQLITE = """
CREATE TABLE users (id, email, username, api_token, display_name, role, invited_by_id, favorite_recipe_id, created_at);
CREATE TABLE recipes (id, author_id, title, difficulty, tags, nutrition, prep_minutes, cook_minutes, total_minutes,
                      published_at);
CREATE TABLE ingredients (id INTEGER PRIMARY KEY, name TEXT) WITHOUT ROWID;
CREATE TABLE recipe_ingredients (recipe_id, position, ingredient_id, quantity, unit);
CREATE TABLE recipe_bookmarks (user_id, recipe_id, saved_at, note);
CREATE TABLE social_accounts (id INTEGER PRIMARY KEY, user_id, provider, handle);
CREATE TABLE cooking_log (id, cooked_on, user_id, recipe_id, rating, notes);
CREATE TABLE meal_plans (id INTEGER PRIMARY KEY, user_id, recipe_id, plan_date, meal_time, servings);
"""
U1, U2 = "0b9e5f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "7d3c2b1a-0f9e-4d8c-b7a6-5f4e3d2c1b0a"
R1, R2 = "c0ffee00-1234-4abc-9def-000000000001", "c0ffee00-1234-4abc-9def-000000000002"


def shapes_rows() -> dict[str, list[tuple[object, ...]]]:
    u2_bytes = bytes.fromhex(U2.replace("-", ""))
    return {
        "users": [
            (U1, "ada@example.com", "ada", "tok-1", "Ada", "admin", None, R1, EPOCH_2024_03_01),
            (u2_bytes, "bo@example.com", "bo", "tok-2", "Bo", "cook", U1.upper(), None, "2024-03-01T10:00:00+01:00"),
        ],
        "recipes": [
            (R1.replace("-", ""), U1, "Soup", "easy", '["hot", "quick"]', '{"kcal": 120}', 10, "20", 30, None),
            (R2, U2, "Cake", "hard", "{sweet}", "{}", 30, 45.0, 75, "2024-03-02 12:00:00"),
        ],
        "ingredients": [(1, "salt"), (2, "flour")],
        "recipe_ingredients": [(R1, 1, 1, "0.5", "g"), (R1, 2, 2, 1.25, "kg"), (R2, 1, 2, 3, "cup")],
        "recipe_bookmarks": [(U2, R1, EPOCH_2024_03_01, None)],
        "social_accounts": [(1, U1, "github", "ada")],
        "cooking_log": [(1, "2024-05-01", U1, R1, 5, None), (2, "2026-01-02", U2, R2, "4", "yum")],
        "meal_plans": [(1, U1, R2, "2024-06-01", "18:30", 2)],
    }


def test_the_shapes_app_uuid_keys_as_text_or_bytes_enums_arrays_a_cycle_partitions_and_a_second_schema(
    tiers: Tiers, tmp_path: Path
) -> None:
    from dataclasses import replace

    from dbguard.migrations.schema import drop_app_schemas, sa_connection, upgrade

    from tests.support.project import SHAPES_ROOT

    settings = replace(tiers.settings, root=SHAPES_ROOT)
    with sa_connection(tiers.target(Tier.INT)) as conn, conn.begin():
        drop_app_schemas(conn, settings.project.metadata)
        upgrade(settings, conn, "head")
    path = make_sqlite(tmp_path / "recipes.db", SHAPES_SQLITE, shapes_rows())

    result = run(settings, "import-sqlite", "int", robot(), import_body(path))
    assert result.code == EXIT_OK, result.text
    assert "recipes: column(s) not imported: total_minutes (computed by PostgreSQL)" in result.stdout
    assert "imported 14 row(s) from recipes.db" in result.stdout
    q = tiers.sql
    assert q(Tier.INT, "SELECT id, role, invited_by_id, favorite_recipe_id, created_at FROM users ORDER BY email") == (
        f"{U1}|admin||{R1}|2024-03-01 00:00:00\n{U2}|cook|{U1}||2024-03-01 09:00:00"
    )
    assert q(
        Tier.INT, "SELECT id, difficulty, tags, nutrition, total_minutes, published_at FROM recipes ORDER BY id"
    ) == (f'{R1}|easy|{{hot,quick}}|{{"kcal": 120}}|30|\n{R2}|hard|{{sweet}}|{{}}|75|2024-03-02 12:00:00')
    assert q(Tier.INT, "SELECT recipe_id, position, quantity FROM recipe_ingredients ORDER BY 1, 2") == (
        f"{R1}|1|0.50\n{R1}|2|1.25\n{R2}|1|3.00"
    )
    assert q(Tier.INT, "SELECT tableoid::regclass, rating FROM cooking_log ORDER BY id") == (
        "cooking_log_2024|5\ncooking_log_2026|4"
    )
    assert q(Tier.INT, "SELECT user_id, saved_at FROM recipe_bookmarks") == f"{U2}|2024-03-01 00:00:00"
    assert q(Tier.INT, "SELECT plan_date, meal_time, servings FROM kitchen.meal_plans") == "2024-06-01|18:30:00|2"
    # the cycle's foreign keys are back, and the identity sequences past the imported ids
    assert (
        q(
            Tier.INT,
            "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid IN ('users'::regclass, 'recipes'::regclass)",
        )
        == "fk_recipes_author_id_users,fk_users_favorite_recipe_id_recipes,fk_users_invited_by_id_users"
    )
    assert q(Tier.INT, "SELECT nextval(pg_get_serial_sequence('ingredients', 'id'))") == "3"
    assert q(Tier.INT, "SELECT nextval(pg_get_serial_sequence('kitchen.meal_plans', 'id'))") == "2"


def test_a_deferrable_cycle_is_checked_before_the_commit(tiers: Tiers, int_target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tiers.sql(
        Tier.INT,
        "CREATE TABLE alpha (id int PRIMARY KEY, beta_id int); "
        "CREATE TABLE beta (id int PRIMARY KEY, alpha_id int REFERENCES alpha DEFERRABLE); "
        "ALTER TABLE alpha ADD FOREIGN KEY (beta_id) REFERENCES beta DEFERRABLE INITIALLY DEFERRED",
    )
    schema = (
        "CREATE TABLE alpha (id INTEGER PRIMARY KEY, beta_id); CREATE TABLE beta (id INTEGER PRIMARY KEY, alpha_id);"
    )
    dangling = make_sqlite(tmp_path / "dangling.db", schema, {"alpha": [(1, 1), (2, 99)], "beta": [(1, 2)]})
    result = run(tiers.settings, "import-sqlite", "int", robot(), import_body(dangling, skip_bad=True))
    assert result.code == EXIT_FAILED
    assert [
        "alpha",
        "-",
        "",
        'insert or update on table "alpha" violates foreign key constraint "alpha_beta_id_fkey"',
    ] in [[*c[:3], c[3].split(" (Key")[0]] for c in cells_of(result.stdout) if len(c) == 4]
    assert "nothing was imported -> fix them in the file" in result.stderr
    assert tiers.sql(Tier.INT, "SELECT (SELECT count(*) FROM alpha) + (SELECT count(*) FROM beta)") == "0"

    whole = make_sqlite(tmp_path / "whole.db", schema, {"alpha": [(1, 1), (2, 1)], "beta": [(1, 2)]})
    assert run(tiers.settings, "import-sqlite", "int", robot(), import_body(whole)).code == EXIT_OK
    assert tiers.sql(Tier.INT, "SELECT string_agg(id || ':' || beta_id, ',' ORDER BY id) FROM alpha") == "1:1,2:1"


@pytest.mark.slow
def test_killed_before_the_commit_the_tier_holds_nothing_and_the_next_run_imports(
    tiers: Tiers,
    int_target,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    from tests.support.kill import kill_at, wait_for_no_sessions

    make_quirk_tables(tiers)
    path = make_sqlite(tmp_path / "quirks.db", QUIRKS_SQLITE, quirk_rows())
    env = {k: v for k, v in tiers.settings.values.items() if isinstance(v, str)}
    args = ["db.import-sqlite", "--env", "int", "--from", str(path)]
    kill_at("import-sqlite:loaded", args, env, tmp_path)  # rows in, cycle's key added back, sequences set
    wait_for_no_sessions(tiers.local.psql, tiers.names[Tier.INT])
    assert tiers.sql(Tier.INT, "SELECT (SELECT count(*) FROM people) + (SELECT count(*) FROM teams)") == "0"
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conname LIKE 'teams%'") == (
        "1"
    )

    again = invoke_cli(*args, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM people") == "3"
    assert tiers.sql(Tier.INT, "SELECT nextval('people_id_seq')") == "4"
