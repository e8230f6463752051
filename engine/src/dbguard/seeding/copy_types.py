"""Binary COPY of seed rows: which column types it handles, and turning plain seed values into them.

A seed module writes plain Python values ("10.0.0.1", a dict); binary COPY needs the object that
psycopg's binary dumper for the column's type expects. The conversions are looked up once per
table, and applied only to the columns that need one.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from dbguard.guard.connect import Connection

INET, CIDR, JSON, JSONB, UUID = 869, 650, 114, 3802, 2950
BINARY_OIDS = {16, 17, 20, 21, 23, 25, 700, 701, 1043, 1082, 1114, 1184, 1700, INET, CIDR, JSON, JSONB, UUID}
Converters = list[tuple[int, Callable[[Any], Any]]]


@cache
def _as_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(value.split("/", 1)[0])  # pooled values repeat: parse each once


CONVERTERS: dict[int, Callable[[Any], Any]] = {
    INET: lambda v: _as_ip(v) if isinstance(v, str) else v,
    CIDR: lambda v: ipaddress.ip_network(v) if isinstance(v, str) else v,
    JSON: lambda v: json.loads(v) if isinstance(v, str) else v,
    JSONB: lambda v: json.loads(v) if isinstance(v, str) else v,
    UUID: lambda v: uuid.UUID(v) if isinstance(v, str) else v,
}


def column_oids(conn: Connection, table: str, columns: tuple[str, ...]) -> list[int]:
    rows = conn.execute(
        "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0", (table,)
    ).fetchall()
    by_name = {str(name): int(oid) for name, oid in rows}
    missing = [c for c in columns if c not in by_name]
    if missing:
        raise ValueError(f"no column(s) {', '.join(missing)} in table {table}")
    return [by_name[c] for c in columns]


def binary_capable(oids: list[int]) -> bool:
    return all(oid in BINARY_OIDS for oid in oids)


def converters_for(oids: list[int]) -> Converters:
    return [(i, CONVERTERS[oid]) for i, oid in enumerate(oids) if oid in CONVERTERS]


def converted(row: Sequence[Any], converters: Converters) -> Sequence[Any]:
    """The row with each converted column replaced (the row itself when nothing needs converting)."""
    if not converters:
        return row
    values = list(row)
    for i, convert in converters:
        if values[i] is not None:
            values[i] = convert(values[i])
    return values
