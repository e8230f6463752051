"""The sanitizing SELECT that feeds COPY on PROD: raw PII never leaves PROD's server.

Each sanitized value is derived from a keyed hash of the source value, sha256(salt || value), taken
inside PROD. The salt is a per-installation secret (.local/sanitize-salt, or SANITIZE_SALT), so the
same source value always gives the same fake, across tables and across refreshes, and nobody can
recognise a fake by hashing the emails they know. The fakes look real: names, streets and sentences
come from Faker-made word lists, sent inside the query as literals (PROD stays read-only).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from faker import Faker
from psycopg import sql

from app.ops.masking import remember_secret
from app.ops.sanitize_policy import LiveTable, Rule
from app.settings import Settings

WORDS_SEED = 20_260_101  # fixed: the lists (and so the fakes) stay the same from one refresh to the next
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")  # RFC 2606: never deliverable
AREA_CODES = ("201", "212", "303", "312", "415", "503", "617", "702", "808", "919")


@dataclass(frozen=True)
class WordLists:
    first: tuple[str, ...]
    last: tuple[str, ...]
    street: tuple[str, ...]
    city: tuple[str, ...]
    sentence: tuple[str, ...]
    paragraph: tuple[str, ...]


@cache
def word_lists() -> WordLists:
    fake = Faker("en_US")
    fake.seed_instance(WORDS_SEED)

    def unique(make: Callable[[], str], n: int) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        while len(seen) < n:
            seen.setdefault(make(), None)
        return tuple(seen)

    return WordLists(
        first=unique(fake.first_name, 400),
        last=unique(fake.last_name, 400),
        street=unique(fake.street_name, 200),
        city=unique(fake.city, 150),
        sentence=tuple(fake.sentence(nb_words=8) for _ in range(300)),
        paragraph=tuple(fake.paragraph(nb_sentences=4) for _ in range(100)),
    )


def salt(settings: Settings) -> str:
    """The installation's secret salt: SANITIZE_SALT, else a file made (0600) on first use."""
    value = settings.get("SANITIZE_SALT") if "SANITIZE_SALT" in settings.values else ""
    if not value:
        path = settings.path("SANITIZE_SALT_FILE")
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
        value = path.read_text().strip()
    remember_secret(value)
    return value


def keyed_hash(value_sql: sql.Composable, salt_value: str) -> sql.Composed:
    return sql.SQL("sha256(convert_to({} || {}, 'UTF8'))").format(sql.Literal(salt_value), value_sql)


def _pick(hash_name: str, offset: int, array: str, size: int) -> str:
    """An element of a word list chosen by 4 bytes of the hash (1-based arrays)."""
    return (
        f"w.{array}[1 + (('x' || encode(substring({hash_name} from {offset + 1} for 4), 'hex'))::bit(32)::bigint"
        f" % {size})]"
    )


def _number(hash_name: str, offset: int, modulo: int) -> str:
    return f"((('x' || encode(substring({hash_name} from {offset + 1} for 4), 'hex'))::bit(32)::bigint) % {modulo})"


def fake_expression(kind: str, column: str, hash_name: str, words: WordLists) -> str:
    """SQL text of the fake for one value (column and hash are already-quoted names)."""
    if kind == "email":
        return (
            f"lower({_pick(hash_name, 0, 'first', len(words.first))} || '.' || "
            f"{_pick(hash_name, 4, 'last', len(words.last))} || '.' || "
            f"substr(encode({hash_name}, 'hex'), 17, 10)) || '@' || "
            f"{_pick(hash_name, 8, 'domain', len(EMAIL_DOMAINS))}"
        )
    if kind == "name":
        first, last = _pick(hash_name, 0, "first", len(words.first)), _pick(hash_name, 4, "last", len(words.last))
        return f"{first} || ' ' || {last}"
    if kind == "phone":
        return (
            f"'+1-' || {_pick(hash_name, 0, 'area', len(AREA_CODES))} || '-555-' || "
            f"lpad({_number(hash_name, 4, 10000)}::text, 4, '0')"
        )
    if kind == "address":
        street, city = _pick(hash_name, 4, "street", len(words.street)), _pick(hash_name, 8, "city", len(words.city))
        return f"(100 + {_number(hash_name, 0, 9800)})::text || ' ' || {street} || ', ' || {city}"
    if kind == "free_text":
        return (
            f"CASE WHEN length({column}::text) > 200 THEN {_pick(hash_name, 0, 'paragraph', len(words.paragraph))} "
            f"ELSE {_pick(hash_name, 0, 'sentence', len(words.sentence))} END"
        )
    if kind == "ip":
        return (
            f"'10.' || get_byte({hash_name}, 0) || '.' || get_byte({hash_name}, 1) || '.' || get_byte({hash_name}, 2)"
        )
    raise ValueError(kind)


HASHED_KINDS = {"email", "name", "phone", "address", "free_text", "ip"}


def word_list_cte(words: WordLists) -> sql.Composed:
    def array(values: tuple[str, ...]) -> sql.Composed:
        return sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(sql.Literal(v) for v in values))

    return sql.SQL(
        "WITH w AS (SELECT {} AS first, {} AS last, {} AS street, {} AS city, {} AS sentence, {} AS paragraph, "
        "{} AS domain, {} AS area)"
    ).format(
        array(words.first),
        array(words.last),
        array(words.street),
        array(words.city),
        array(words.sentence),
        array(words.paragraph),
        array(EMAIL_DOMAINS),
        array(AREA_CODES),
    )


def sanitized_select(table: LiveTable, rules: dict[str, Rule], salt_value: str) -> sql.Composed:
    """SELECT every column of `table`, each through its rule, cast back to the column's own type."""
    words = word_lists()
    outputs: list[sql.Composable] = []
    hashes: list[sql.Composable] = []
    for i, column in enumerate(table.columns):
        rule = rules[column.name]
        col = sql.SQL("t.{}").format(sql.Identifier(column.name))
        cast = sql.SQL(column.type_name)
        if rule.kind == "keep":
            outputs.append(col)
        elif rule.kind == "null":
            outputs.append(sql.SQL("NULL::{}").format(cast))
        elif rule.kind == "fixed":
            fixed = sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {}::{} END")
            outputs.append(fixed.format(col, sql.Literal(rule.argument), cast))
        elif rule.kind == "sql":
            outputs.append(sql.SQL("({})::{}").format(sql.SQL(rule.argument), cast))
        else:
            hash_name = f"k.h{i}"
            as_text = "lower(trim({}::text))" if rule.kind == "email" else "{}::text"
            source = sql.SQL(as_text).format(col)
            hashes.append(sql.SQL("{} AS {}").format(keyed_hash(source, salt_value), sql.Identifier(f"h{i}")))
            column_text = col.as_string(None)
            fake = fake_expression(rule.kind, column_text, hash_name, words)
            outputs.append(sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE ({})::{} END").format(col, sql.SQL(fake), cast))
    lateral = sql.SQL(", LATERAL (SELECT {}) k").format(sql.SQL(", ").join(hashes)) if hashes else sql.SQL("")
    return sql.SQL("{} SELECT {} FROM ONLY {}.{} t CROSS JOIN w{}").format(
        word_list_cte(words),
        sql.SQL(", ").join(outputs),
        sql.Identifier(table.schema),
        sql.Identifier(table.name),
        lateral,
    )
