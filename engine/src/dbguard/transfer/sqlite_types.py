"""One SQLite value into one PostgreSQL column: the value PostgreSQL will hold, or the reason it does not fit.

SQLite types values, not columns: a column declared INTEGER may hold 'abc', a DATETIME column holds text,
integers or reals. Every converter here takes any of SQLite's five storage classes (NULL, INTEGER, REAL,
TEXT, BLOB) and either returns a value that means exactly what the SQLite one meant in the column's
PostgreSQL type, or raises `Misfit` with a reason a person can act on ("text 'abc' in integer column").
Nothing is rounded away, truncated or guessed silently: a value that would lose information, or whose
meaning is ambiguous (03/04/2024), does not fit. The one rounding kept is PostgreSQL's own: a numeric
column's scale.

Dates and times: ISO 8601 text (a space or a T, fractions, Z or an offset), YYYY/MM/DD, RFC 2822, and unix
epoch numbers (seconds; an integer of 100,000,000,000 or more counts as milliseconds). Text without an
offset is UTC, as SQLite's own CURRENT_TIMESTAMP writes it. A timestamp with an offset going into a
`timestamp` column (no time zone) is turned into UTC first.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

from psycopg.types.json import Json, Jsonb

Convert = Callable[[Any], Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECONDS_FROM = 100_000_000_000  # an epoch this large in seconds would be the year 5138
INTEGER_TEXT = re.compile(r"[+-]?\d+")
NUMBER_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
SLASHED_ISO = re.compile(r"\d{4}/\d{2}/\d{2}")
TRUE_TEXT = frozenset({"1", "t", "true", "y", "yes", "on"})
FALSE_TEXT = frozenset({"0", "f", "false", "n", "no", "off"})
INTEGER_RANGES = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1), "int8": (-(2**63), 2**63 - 1)}
INTEGER_NAMES = {"int2": "smallint", "int4": "integer", "int8": "bigint"}


class Misfit(ValueError):
    """A value that does not fit its PostgreSQL column; `reason` is the report's text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotUtf8(bytes):
    """A SQLite TEXT value whose bytes are not UTF-8 (SQLite stores what it is given)."""


@dataclass(frozen=True)
class PgColumn:
    """A column of the PostgreSQL table, as its catalog says (domains resolved to their base type)."""

    name: str
    oid: int  # the column's own type, which COPY is told
    base: str  # the base type's name: int8, bool, timestamptz, ... ("enum" for an enum)
    label: str  # how the report names the type: integer, boolean, varchar(40), enum status
    typmod: int = -1
    not_null: bool = False
    labels: tuple[str, ...] = ()  # an enum's values


def describe(value: Any) -> str:
    """A SQLite value as the report shows it: its storage class and a short form of it."""
    if value is None:
        return "NULL"
    if isinstance(value, NotUtf8):
        return f"text that is not UTF-8 ({len(value)} bytes)"
    if isinstance(value, bytes):
        return f"blob of {len(value)} bytes"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"real {value!r}"
    text = str(value)
    return f"text {text[:40] + '...' if len(text) > 40 else text!r}"


def _misfit(value: Any, column: PgColumn, why: str = "") -> Misfit:
    return Misfit(f"{describe(value)} in {column.label} column" + (f" ({why})" if why else ""))


def _text_of(value: Any, column: PgColumn) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise _misfit(value, column, "" if isinstance(value, NotUtf8) else "not UTF-8 text") from None
    return value if isinstance(value, str) else str(value)


# -- numbers and booleans ------------------------------------------------------------------------
def _integer(column: PgColumn) -> Convert:
    low, high = INTEGER_RANGES[column.base]

    def convert(value: Any) -> int:
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and INTEGER_TEXT.fullmatch(value.strip()):
            number = int(value.strip())
        else:
            raise _misfit(value, column)
        if not low <= number <= high:
            raise Misfit(f"{describe(value)} out of range for {column.label}")
        return number

    return convert


def _numeric(column: PgColumn) -> Convert:
    precision, scale = ((column.typmod - 4) >> 16, (column.typmod - 4) & 0xFFFF) if column.typmod >= 4 else (0, 0)

    def convert(value: Any) -> Decimal:
        if isinstance(value, bool | bytes) or value is None:
            raise _misfit(value, column)
        if isinstance(value, float) and not math.isfinite(value):
            raise _misfit(value, column)
        text = repr(value) if isinstance(value, float) else str(value).strip()
        if isinstance(value, str) and not NUMBER_TEXT.fullmatch(text):
            raise _misfit(value, column)
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise _misfit(value, column) from None
        if precision:
            rounded = number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
            if abs(rounded) >= Decimal(10) ** (precision - scale):
                raise Misfit(f"{describe(value)} out of range for {column.label}")
        return number

    return convert


def _float(column: PgColumn) -> Convert:
    def convert(value: Any) -> float:
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and NUMBER_TEXT.fullmatch(value.strip()):
            return float(value)
        raise _misfit(value, column)

    return convert


def _boolean(column: PgColumn) -> Convert:
    def convert(value: Any) -> bool:
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in TRUE_TEXT:
                return True
            if word in FALSE_TEXT:
                return False
        raise _misfit(value, column)

    return convert


# -- text and bytes ------------------------------------------------------------------------------
def _text(column: PgColumn) -> Convert:
    limit = column.typmod - 4 if column.base in ("varchar", "bpchar") and column.typmod >= 4 else 0

    def convert(value: Any) -> str:
        text = _text_of(value, column)
        if "\x00" in text:
            raise _misfit(value, column, "PostgreSQL text cannot hold a NUL character")
        if limit and len(text) > limit:
            raise Misfit(f"text of {len(text)} characters is longer than {column.label}")
        return text

    return convert


def _bytea(column: PgColumn) -> Convert:
    def convert(value: Any) -> bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode()
        raise _misfit(value, column)

    return convert


def _json(column: PgColumn) -> Convert:
    wrap = Jsonb if column.base == "jsonb" else Json

    def convert(value: Any) -> Json | Jsonb:
        if isinstance(value, int | float) and math.isfinite(value):
            return wrap(value)
        if isinstance(value, str | bytes):
            text = _text_of(value, column)
            try:
                json.loads(text, parse_constant=_no_constant)
            except ValueError:
                raise Misfit(f"{describe(value)} is not JSON") from None
            if column.base == "jsonb" and "\\u0000" in text:
                raise _misfit(value, column, "jsonb cannot hold \\u0000")
            return wrap(text, dumps=_as_is)  # the text checked, sent as it is (json keeps it byte for byte)
        raise _misfit(value, column)

    return convert


def _as_is(text: str) -> str:
    return text


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON, and PostgreSQL refuses them


def _uuid(column: PgColumn) -> Convert:
    def convert(value: Any) -> uuid.UUID:
        try:
            if isinstance(value, bytes) and len(value) == 16:
                return uuid.UUID(bytes=value)
            if isinstance(value, str):
                return uuid.UUID(value.strip())
        except ValueError:
            pass
        raise _misfit(value, column)

    return convert


def _network(column: PgColumn) -> Convert:
    def convert(value: Any) -> Any:
        if not isinstance(value, str):
            raise _misfit(value, column)
        text = value.strip()
        try:
            if column.base == "cidr":
                return ipaddress.ip_network(text)
            return ipaddress.ip_interface(text) if "/" in text else ipaddress.ip_address(text)
        except ValueError:
            raise _misfit(value, column) from None

    return convert


def _enum(column: PgColumn) -> Convert:
    labels = frozenset(column.labels)

    def convert(value: Any) -> str:
        if isinstance(value, str) and value in labels:
            return value
        raise Misfit(f"{describe(value)} is not one of {column.label}'s values ({', '.join(column.labels)})")

    return convert


# -- dates and times -----------------------------------------------------------------------------
def moment(value: Any) -> datetime | None:
    """A SQLite date or timestamp as a datetime (aware when the value said its offset), None when it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        seconds = value / 1000 if isinstance(value, int) and abs(value) >= MILLISECONDS_FROM else value
        try:
            return EPOCH + timedelta(seconds=seconds)
        except OverflowError:
            return None
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)  # the common case, first
    except ValueError:
        pass
    text = value.strip()
    if INTEGER_TEXT.fullmatch(text):
        return moment(int(text))
    if SLASHED_ISO.match(text):
        text = text[:10].replace("/", "-") + text[10:]
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


def _as_utc(moment_: datetime) -> datetime:
    return moment_.replace(tzinfo=UTC) if moment_.tzinfo is None else moment_.astimezone(UTC)


def _timestamp(column: PgColumn) -> Convert:
    aware = column.base == "timestamptz"

    def convert(value: Any) -> datetime:
        found = moment(value)
        if found is None:
            raise _misfit(value, column, "not ISO 8601, RFC 2822 or a unix epoch")
        utc = _as_utc(found)
        return utc if aware else utc.replace(tzinfo=None)

    return convert


def _date(column: PgColumn) -> Convert:
    def convert(value: Any) -> date:
        found = moment(value)
        if found is None:
            raise _misfit(value, column, "not ISO 8601, RFC 2822 or a unix epoch")
        if found.tzinfo is not None or isinstance(value, int | float):
            found = _as_utc(found)
        if found.time() != time(0):
            raise _misfit(value, column, "it has a time of day the date would drop")
        return found.date()

    return convert


def _time(column: PgColumn) -> Convert:
    def convert(value: Any) -> time:
        if isinstance(value, str):
            try:
                return time.fromisoformat(value.strip())
            except ValueError:
                pass
        raise _misfit(value, column)

    return convert


def _array(column: PgColumn) -> Convert:
    """An array column: a JSON array (how apps keep lists in SQLite) becomes the array, elements parsed by
    PostgreSQL; text in PostgreSQL's own array syntax ({a,b}) is passed on as it is."""

    def convert(value: Any) -> Any:
        text = _text_of(value, column) if isinstance(value, str | bytes) else None
        if text is None:
            raise _misfit(value, column)
        stripped = text.strip()
        if stripped.startswith("{"):
            return text
        try:
            parsed = json.loads(stripped, parse_constant=_no_constant)
        except ValueError:
            raise _misfit(value, column, "neither a JSON array nor {...}") from None
        if not isinstance(parsed, list) or not _flat_scalars(parsed):
            raise _misfit(value, column, "a JSON array of plain values fits")
        return parsed

    return convert


def _flat_scalars(values: list[Any]) -> bool:
    return all(v is None or isinstance(v, str | int | float | bool) for v in values)


def _as_text(column: PgColumn) -> Convert:
    """Any other type (interval, arrays, ranges, ...): the value as text, which PostgreSQL parses itself;
    what it refuses is reported by the row the server names."""

    def convert(value: Any) -> str:
        return _text_of(value, column)

    return convert


CONVERTERS: dict[str, Callable[[PgColumn], Convert]] = {
    "int2": _integer,
    "int4": _integer,
    "int8": _integer,
    "numeric": _numeric,
    "float4": _float,
    "float8": _float,
    "bool": _boolean,
    "text": _text,
    "varchar": _text,
    "bpchar": _text,
    "citext": _text,
    "bytea": _bytea,
    "json": _json,
    "jsonb": _json,
    "uuid": _uuid,
    "inet": _network,
    "cidr": _network,
    "date": _date,
    "timestamp": _timestamp,
    "timestamptz": _timestamp,
    "time": _time,
    "enum": _enum,
    "array": _array,
}


def converter_for(column: PgColumn, *, nullable: bool = False) -> Convert:
    """The converter of one column: NULL checked against NOT NULL, then the type's own rules.

    `nullable`: the bare converter, for a caller that handles NULL itself (it is never handed None)."""
    convert = CONVERTERS.get(column.base, _as_text)(column)
    if nullable:
        return convert
    not_null = column.not_null

    def checked(value: Any) -> Any:
        if value is None:
            if not_null:
                raise Misfit("NULL in a NOT NULL column")
            return None
        return convert(value)

    return checked


def understood(column: PgColumn) -> bool:
    """Whether this module checks the column's values itself (otherwise PostgreSQL parses their text)."""
    return column.base in CONVERTERS
