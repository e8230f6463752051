"""PROD on a separate cluster that demands a password and TLS, as a managed PostgreSQL would."""

from __future__ import annotations

from pathlib import Path

from dbguard.cli.runner import EXIT_OK, EXIT_REFUSED
from dbguard.cluster.pgtools import require_bindir, run_tool
from dbguard.guard.config import prod_tls_finding, target_for
from dbguard.guard.connect import connect
from dbguard.guard.tiers import Tier

from tests.support.setup import Tiers, make_tiers, robot, run


def test_prod_over_tls_with_a_password_works_and_a_plain_connection_is_refused(
    tmp_path: Path,
    local_server,
    prod_server,  # type: ignore[no-untyped-def]
) -> None:
    remote = make_tiers(
        tmp_path,
        local_server,
        prod_server,
        prod_url=lambda db: prod_server.tcp_url(db, host="127.0.0.2", sslmode="require"),
    )
    target = target_for(remote.settings, Tier.PROD)
    assert not target.is_local and prod_tls_finding(target).ok
    with connect(target, read_only=True) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row == (True,)
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)
    result = run(remote.settings, "backup", "prod", robot(), lambda ctx: 0)
    assert result.code == EXIT_OK

    plain = prod_server.tcp_url(remote.names[Tier.PROD], host="127.0.0.2", sslmode="disable")
    result = run(remote.settings.with_values(PROD_DATABASE_URL=plain), "backup", "prod", robot(), lambda ctx: 0)
    assert result.code == EXIT_REFUSED and not result.ran
    assert "refused this connection" in result.stderr and "add sslmode=require to PROD_DATABASE_URL" in result.stderr
    assert prod_server.password not in result.text


def test_a_remote_prod_without_sslmode_fails_the_doctor_check(tiers: Tiers) -> None:
    from dbguard.reports.doctor import run_checks

    url = tiers.prod.tcp_url(tiers.names[Tier.PROD], host="127.0.0.2")
    report = run_checks(tiers.settings.with_values(PROD_DATABASE_URL=url))
    tls = [f for f in report.findings if f.check == "a remote PROD is reached over TLS"]
    assert len(tls) == 1 and not tls[0].ok and tls[0].required
    assert "sslmode=unset" in tls[0].message


def test_tools_get_the_password_through_a_passfile_not_argv(tiers: Tiers, tmp_path: Path) -> None:
    """pg tools started for PROD see the password only in a private passfile, never on argv or in PGPASSWORD."""
    target = target_for(tiers.settings, Tier.PROD)
    spy = tmp_path / "spy"
    spy.mkdir()
    log = tmp_path / "spy.log"
    real = require_bindir(tiers.settings.values)
    (spy / "psql").write_text(
        f'#!/bin/sh\necho "ARGV $*" >> {log}\nenv >> {log}\n'
        f'cat "$PGPASSFILE" | sed "s/^/PASSFILE /" >> {log}\nexec {real}/psql "$@"\n'
    )
    (spy / "psql").chmod(0o755)
    proc = run_tool(
        spy,
        "psql",
        ["-X", "-At", "-d", target.conninfo(with_password=False), "-c", "SELECT 42"],
        target,
        read_only=True,
    )
    assert proc.stdout.strip() == b"42"
    text = log.read_text()
    argv = [ln for ln in text.splitlines() if ln.startswith("ARGV")]
    assert argv and all(tiers.prod.password not in ln for ln in argv)  # type: ignore[operator]
    assert "PGPASSWORD" not in text
    assert f"PASSFILE *:*:*:*:{tiers.prod.password}" in text
    assert "PGOPTIONS=-c default_transaction_read_only=on" in text
    (passfile,) = {ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("PGPASSFILE=")}
    assert not Path(passfile).exists() and not Path(passfile).parent.exists()  # this run's passfile is gone
