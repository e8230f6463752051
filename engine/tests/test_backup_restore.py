"""Backups, verification, restore and retention on real PostgreSQL, fault cases included."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from dbguard.backup.dump import take_backup
from dbguard.backup.files import list_backups
from dbguard.cli.runner import EXIT_FAILED, EXIT_OK, EXIT_REFUSED
from dbguard.guard.tiers import Tier

from tests.support.cli import cli_environment, invoke_cli, module_argv
from tests.support.kill import kill_at, wait_for_no_sessions
from tests.support.project import PROJECT
from tests.support.setup import Tiers, cleared, human, robot, run, state_values


def env_for(tiers: Tiers, tmp_path: Path, **extra: str) -> dict[str, str]:
    return state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()} | extra


def seed(
    tiers: Tiers, tmp_path: Path, tier: Tier, scenario: str = "minimal", seed_value: int = 1, scale: str = "1"
) -> None:
    """Fill a tier's test database through the real tools (PROD through INT's code path, then re-stamped)."""
    from dbguard.migrations.schema import drop_app_schemas, raw, sa_connection, upgrade
    from dbguard.seeding.runner import make_plan, seed_database

    with sa_connection(tiers.target(tier)) as conn, conn.begin():
        drop_app_schemas(conn)
        upgrade(tiers.settings, conn, "head")
        seed_database(raw(conn), make_plan(PROJECT, scenario, seed=seed_value, scale=float(scale)))


def digest(tiers: Tiers, tier: Tier) -> str:
    return (
        tiers.sql(tier, "SELECT md5(string_agg(u::text, ',' ORDER BY id)) FROM users u")
        + "/"
        + tiers.sql(tier, "SELECT count(*) FROM comments")
    )


def test_backup_writes_a_private_file_and_a_complete_manifest(tiers: Tiers, tmp_path: Path) -> None:
    seed(tiers, tmp_path, Tier.PROD)
    proc = invoke_cli("db.backup", "--env", "prod", env=env_for(tiers, tmp_path))
    assert proc.returncode == 0, proc.stderr
    (dump,) = list((tmp_path / "backups").glob("prod-*.dump"))
    assert dump.name.startswith(f"prod-{tiers.names[Tier.PROD]}-") and dump.name.endswith("Z.dump")
    assert oct(dump.stat().st_mode & 0o777) == "0o600"
    manifest = json.loads(Path(str(dump) + ".json").read_text())
    assert set(manifest) >= {
        "sha256",
        "size_bytes",
        "tier",
        "source",
        "server_version",
        "pg_dump_version",
        "revision",
        "rows",
        "duration_s",
    }
    assert manifest["tier"] == "prod" and manifest["revision"] == "0002"
    assert manifest["rows"]["public.users"] == 3 and manifest["size_bytes"] == dump.stat().st_size
    assert (
        "app:***@" in manifest["source"] and str(tiers.prod.password) not in dump.with_suffix(".dump.json").read_text()
    )
    assert f"backup {dump}" in proc.stdout and "sha256" in proc.stdout


def test_a_prod_backup_is_verified_as_it_is_taken_an_stg_one_when_asked(tiers: Tiers, tmp_path: Path) -> None:
    """PROD's undo point is a dump: read back (pg_restore --list, every table's data in it) before it counts."""
    seed(tiers, tmp_path, Tier.PROD)
    seed(tiers, tmp_path, Tier.STG)
    env = env_for(tiers, tmp_path)
    for tier in ("prod", "stg"):
        assert invoke_cli("db.backup", "--env", tier, env=env).returncode == 0
    (prod,) = list_backups(tmp_path / "backups", "prod")
    (stg,) = list_backups(tmp_path / "backups", "stg")
    assert prod.verified_at and not stg.verified_at
    assert "(verified)" in invoke_cli("db.status", env=env).stdout


def test_prod_tool_sessions_are_read_only_on_the_server(tiers: Tiers) -> None:
    from dbguard.cluster.pgtools import require_bindir, run_tool
    from dbguard.errors import Failed

    target = tiers.target(Tier.PROD)
    bindir = require_bindir(tiers.settings.values)
    with pytest.raises(Failed, match="read-only transaction"):
        run_tool(
            bindir,
            "psql",
            ["-X", "-d", target.conninfo(with_password=False), "-c", "CREATE TABLE x (i int)"],
            target,
            read_only=True,
        )


def test_verify_names_corruption_truncation_and_non_dumps(tiers: Tiers, tmp_path: Path) -> None:
    seed(tiers, tmp_path, Tier.STG)
    env = env_for(tiers, tmp_path)
    assert invoke_cli("db.backup", "--env", "stg", env=env).returncode == 0
    (dump,) = list((tmp_path / "backups").glob("stg-*.dump"))
    ok = invoke_cli("db.verify", "latest", env=env)
    assert ok.returncode == 0 and "checksum matches, archive lists" in ok.stdout

    original = dump.read_bytes()
    corrupted = bytearray(original)
    corrupted[len(corrupted) // 2] ^= 0xFF
    dump.write_bytes(bytes(corrupted))
    proc = invoke_cli("db.verify", dump.name, env=env)
    assert proc.returncode == 1 and f"{dump.name} fails its checksum" in proc.stderr
    assert "the file is damaged or was changed" in proc.stderr

    dump.write_bytes(original[: len(original) // 2])
    proc = invoke_cli("db.verify", str(dump), env=env)
    assert proc.returncode == 1 and "the file is truncated or was changed" in proc.stderr

    fake = tmp_path / "backups" / "stg-fake-20260101T000000000Z.dump"
    fake.write_bytes(b"this is not a dump\n" * 10)
    import hashlib

    Path(str(fake) + ".json").write_text(
        json.dumps(
            {"sha256": hashlib.sha256(fake.read_bytes()).hexdigest(), "size_bytes": fake.stat().st_size, "tier": "stg"}
        )
    )
    proc = invoke_cli("db.verify", fake.name, env=env)
    assert proc.returncode == 1 and "is not a readable PostgreSQL archive" in proc.stderr

    stray = tmp_path / "notes.txt"
    stray.write_text("hello")
    proc = invoke_cli("db.verify", str(stray), env=env)
    assert proc.returncode == 2 and "has no manifest beside it" in proc.stderr
    proc = invoke_cli("db.verify", "missing.dump", env=env)
    assert proc.returncode == 2 and "backup file missing.dump does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_deep_verify_restores_and_compares_with_the_manifest(tiers: Tiers, tmp_path: Path) -> None:
    seed(tiers, tmp_path, Tier.STG)
    env = env_for(tiers, tmp_path)
    assert invoke_cli("db.backup", "--env", "stg", env=env).returncode == 0
    proc = invoke_cli("db.verify", "latest", "--deep", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "restored into a throwaway database" in proc.stdout and "match the manifest" in proc.stdout
    listing = invoke_cli("db.backups", env=env)
    assert "deep, " in listing.stdout
    (manifest_path,) = list((tmp_path / "backups").glob("stg-*.dump.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["rows"]["public.users"] = 999
    manifest_path.write_text(json.dumps(manifest))
    proc = invoke_cli("db.verify", "latest", "--deep", env=env)
    assert proc.returncode == 1 and "restored with different rows than its manifest in: public.users" in proc.stderr
    leftovers = tiers.local.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE '%\\_\\_check\\_%'")
    assert leftovers == "0"


def test_restore_prod_backup_into_stg_is_restamped_stg(tiers: Tiers, tmp_path: Path) -> None:
    seed(tiers, tmp_path, Tier.PROD, seed_value=11)
    seed(tiers, tmp_path, Tier.STG, seed_value=22)
    stg_before = tiers.sql(Tier.STG, "SELECT md5(string_agg(u::text, ',' ORDER BY id)) FROM users u")
    env = env_for(tiers, tmp_path)
    assert invoke_cli("db.backup", "--env", "prod", env=env).returncode == 0
    (prod_dump,) = list((tmp_path / "backups").glob("prod-*.dump"))
    proc = invoke_cli("db.restore", "--env", "stg", "--from", prod_dump.name, env=env)
    assert proc.returncode == 2 and "is a PROD backup" in proc.stderr and "db.refresh-staging" in proc.stderr
    proc = invoke_cli("db.restore", "--env", "stg", "--from", prod_dump.name, "--allow-prod-data", env=env)
    assert proc.returncode == 2 and "allowed only at an interactive terminal" in proc.stderr  # the flag alone: no
    from dbguard.backup.restore import restore_task

    result = run(  # a human at a terminal who types PROD's database name
        tiers.settings,
        "restore",
        "stg",
        human(tiers.names[Tier.PROD]),
        lambda ctx: restore_task(ctx, prod_dump.name, allow_prod_data=True),
    )
    assert result.code == EXIT_OK, result.text
    assert digest(tiers, Tier.STG) == digest(tiers, Tier.PROD)
    assert (
        tiers.sql(Tier.STG, "SELECT tier || ' ' || database_name FROM dbguard.tier_stamp")
        == f"stg {tiers.names[Tier.STG]}"
    )
    # STG's undo point is the replaced database itself, renamed (issue 15), where it was a dump of it
    assert not list((tmp_path / "backups").glob("stg-*.dump"))
    previous = tiers.names[Tier.STG] + "__previous"
    assert tiers.local.psql(previous, "SELECT md5(string_agg(u::text, ',' ORDER BY id)) FROM users u") == stg_before
    status = invoke_cli("db.status", env=env)
    assert "0002 (at head)" in status.stdout and previous in status.stdout
    leftovers = f"SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '{tiers.names[Tier.STG]}\\_\\_%'"
    assert tiers.local.psql("postgres", leftovers) == previous  # no scratch database is left, only the undo point


def test_restore_refusals_happen_before_anything_is_touched(tiers: Tiers, tmp_path: Path) -> None:
    seed(tiers, tmp_path, Tier.STG)
    env = env_for(tiers, tmp_path)
    assert invoke_cli("db.backup", "--env", "stg", env=env).returncode == 0
    (dump,) = list((tmp_path / "backups").glob("stg-*.dump"))
    manifest_path = Path(str(dump) + ".json")
    manifest = json.loads(manifest_path.read_text())
    before = digest(tiers, Tier.STG)

    newer = dict(manifest, server_version="99.1 (future)")
    manifest_path.write_text(json.dumps(newer))
    proc = invoke_cli("db.restore", "--env", "stg", "--from", dump.name, env=env)
    assert proc.returncode == 2 and "comes from PostgreSQL 99; the STG server runs PostgreSQL 15" in proc.stderr

    manifest_path.write_text(json.dumps(manifest))
    data = bytearray(dump.read_bytes())
    data[-10] ^= 0x01
    dump.write_bytes(bytes(data))
    proc = invoke_cli("db.restore", "--env", "stg", "--from", dump.name, env=env)
    assert proc.returncode == 1 and "fails its checksum" in proc.stderr
    assert digest(tiers, Tier.STG) == before
    assert len(list((tmp_path / "backups").glob("stg-*.dump"))) == 1  # no pre-restore backup was even taken


def test_restore_into_prod_is_interactive_only(tiers: Tiers, tmp_path: Path) -> None:
    from dbguard.backup.restore import restore_task

    seed(tiers, tmp_path, Tier.PROD)
    take_backup(tiers.settings, cleared(tiers.settings, "backup", Tier.PROD).target, None)
    db = tiers.names[Tier.PROD]
    result = run(tiers.settings, "restore", "prod", robot(), lambda ctx: restore_task(ctx, "latest"), confirm=db)
    assert result.code == EXIT_REFUSED and "allowed only at an interactive terminal" in result.stderr
    result = run(
        tiers.settings, "restore", "prod", human(db, agent="cursor-agent"), lambda ctx: restore_task(ctx, "latest")
    )
    assert result.code == EXIT_REFUSED and "needs a human's consent" in result.stderr
    result = run(tiers.settings, "restore", "prod", human(db), lambda ctx: restore_task(ctx, "latest"))
    assert result.code == EXIT_OK, result.text
    assert len(list_backups(tiers.settings.backups_dir, "prod")) == 2  # the target was backed up first


def test_killed_mid_dump_leaves_no_complete_looking_file(tiers: Tiers, tmp_path: Path) -> None:
    seed(tiers, tmp_path, Tier.STG)
    env = env_for(tiers, tmp_path)
    kill_at("backup:dumping", ["db.backup", "--env", "stg"], env, tmp_path)
    folder = tmp_path / "backups"
    assert not list(folder.glob("*.dump")) and not list(folder.glob("*.dump.json"))
    assert list(folder.glob(".*.partial"))  # only an obviously unfinished file
    assert invoke_cli("db.backup", "--env", "stg", env=env).returncode == 0
    assert not list(folder.glob(".*.partial")) and len(list(folder.glob("*.dump"))) == 1


def test_killed_mid_restore_leaves_the_target_and_the_next_run_cleans_up(tiers: Tiers, tmp_path: Path) -> None:
    seed(tiers, tmp_path, Tier.STG, seed_value=3)
    env = env_for(tiers, tmp_path)
    assert invoke_cli("db.backup", "--env", "stg", env=env).returncode == 0
    seed(tiers, tmp_path, Tier.STG, seed_value=4)
    before = digest(tiers, Tier.STG)
    backup = sorted((tmp_path / "backups").glob("stg-*.dump"))[0]
    kill_at("restore:before-swap", ["db.restore", "--env", "stg", "--from", backup.name], env, tmp_path)
    wait_for_no_sessions(tiers.local.psql, tiers.names[Tier.STG])
    assert digest(tiers, Tier.STG) == before
    scratch = f"SELECT count(*) FROM pg_database WHERE datname LIKE '{tiers.names[Tier.STG]}\\_\\_restore\\_%'"
    assert tiers.local.psql("postgres", scratch) == "1"  # left by the killed run
    proc = invoke_cli("db.restore", "--env", "stg", "--from", backup.name, env=env)
    assert proc.returncode == 0 and "removed scratch database(s) left by an interrupted run" in proc.stdout
    assert tiers.local.psql("postgres", scratch) == "0"
    assert digest(tiers, Tier.STG) != before


def test_server_stopping_mid_restore(tmp_path: Path, prod_server) -> None:  # type: ignore[no-untyped-def]
    """The STG server dies while pg_restore writes the scratch copy: one clear line, the target intact."""
    from tests.support.clusters import ThrowawayCluster
    from tests.support.setup import make_tiers

    own = ThrowawayCluster("stopme").start()
    try:
        tiers = make_tiers(tmp_path, own, prod_server)
        seed(tiers, tmp_path, Tier.STG, scenario="demo", scale="40")
        env = env_for(tiers, tmp_path)
        assert invoke_cli("db.backup", "--env", "stg", env=env).returncode == 0
        before = digest(tiers, Tier.STG)
        backup = next((tmp_path / "backups").glob("stg-*.dump"))
        from tests.support.cli import cli_environment, module_argv
        from tests.support.project import FIXTURE_ROOT

        proc = subprocess.Popen(
            module_argv("invoke", "db.restore", "--env", "stg", "--from", backup.name),
            cwd=FIXTURE_ROOT,
            env=cli_environment(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            n = own.psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE '%\\_\\_restore\\_%'")
            if n != "0":
                break
            time.sleep(0.02)
        own.stop()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == EXIT_FAILED, out + err
        assert "Traceback" not in err and len([ln for ln in err.splitlines() if "error:" in ln]) == 1
        own._run(str(own.bindir / "pg_ctl"), "start", "-D", str(own.data), "-l", str(own.base / "log"), "-w")
        assert digest(tiers, Tier.STG) == before
        proc2 = invoke_cli("db.restore", "--env", "stg", "--from", backup.name, env=env)
        assert proc2.returncode == 0, proc2.stdout + proc2.stderr
    finally:
        own.destroy()


def test_backups_folder_that_cannot_be_written(tiers: Tiers, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = invoke_cli("db.backup", "--env", "stg", env=env_for(tiers, tmp_path, BACKUP_DIR=str(blocker / "b")))
    assert proc.returncode == 2 and "the backups folder" in proc.stderr and "cannot be written" in proc.stderr


def test_disk_filling_during_a_dump_leaves_no_partial_file(tiers: Tiers, tmp_path: Path) -> None:
    seed(tiers, tmp_path, Tier.STG, scenario="demo", scale="5")
    small = tmp_path / "small"
    small.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], capture_output=True, check=False
        ).returncode
        == 0
    )
    try:
        env = env_for(tiers, tmp_path, BACKUP_DIR=str(small))
        if mounted:
            proc = invoke_cli("db.backup", "--env", "stg", env=env)
        else:  # no mount permission: a file-size limit makes the write fail the same way
            proc = subprocess.run(
                ["sh", "-c", 'ulimit -f 256; exec "$0" "$@"', *module_argv("invoke", "db.backup", "--env", "stg")],
                env=cli_environment(env),
                capture_output=True,
                text=True,
                check=False,
            )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "pg_dump failed" in proc.stderr and (
            "No space left on device" in proc.stderr or "File too large" in proc.stderr
        )
        assert os.listdir(small) in ([], ["lost+found"])
    finally:
        if mounted:
            subprocess.run(["umount", str(small)], check=False)


def test_prune_keeps_newest_and_the_only_verified(tiers: Tiers, tmp_path: Path) -> None:
    from dbguard.backup.retention import plan_prune
    from dbguard.backup.verify import verify_backup

    stg = cleared(tiers.settings, "backup", Tier.STG).target
    made = [take_backup(tiers.settings, stg, None) for _ in range(4)]
    verify_backup(tiers.settings, made[0], deep=False, server=None, out=None)
    env = env_for(tiers, tmp_path)
    proc = invoke_cli("db.prune-backups", "--keep", "2", env=env)
    assert proc.returncode == 0
    assert f"keeping {made[0].path.name}: it is the only verified backup of STG" in proc.stdout
    assert f"would delete {made[1].path.name}" in proc.stdout and "run again with --yes" in proc.stdout
    assert len(list_backups(tiers.settings.backups_dir, "stg")) == 4
    proc = invoke_cli("db.prune-backups", "--keep", "2", "--yes", env=env)
    assert proc.returncode == 0
    left = [b.path.name for b in list_backups(tiers.settings.backups_dir, "stg")]
    assert left == [made[0].path.name, made[2].path.name, made[3].path.name]
    assert plan_prune(tiers.settings, 5).delete == []
