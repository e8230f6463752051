"""The sanitizing SELECT that feeds COPY on PROD: raw PII never leaves PROD's server.

Each sanitized value is derived from a keyed hash of the source value, sha256(salt || value), taken
inside PROD. The salt is a per-installation secret (.local/sanitize-salt, or SANITIZE_SALT), so the
same source value always gives the same fake, across tables and across refreshes, and nobody can
recognise a fake by hashing the emails they know. The fakes look real: names, streets and sentences
come from Faker-made word lists, sent inside the query as literals (PROD stays read-only).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from faker import Faker
from psycopg import sql

from dbguard.guard.masking import remember_secret
from dbguard.refresh.rules import LiveTable, Rule
from dbguard.settings import Settings

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


def text_seed(salt_value: str) -> int:
    """A signed 64-bit seed for hashtextextended(), derived from the salt (for long free text)."""
    return int.from_bytes(hashlib.sha256(salt_value.encode()).digest()[:8], "big", signed=True)


def lists(words: WordLists) -> dict[str, tuple[str, ...]]:
    return {
        "first": words.first,
        "last": words.last,
        "street": words.street,
        "city": words.city,
        "sentence": words.sentence,
        "paragraph": words.paragraph,
        "domain": EMAIL_DOMAINS,
        "area": AREA_CODES,
    }


@dataclass(frozen=True)
class Pick:
    """One word drawn from a list: `list_name[index]` (1-based), reached as `alias.v`."""

    list_name: str
    alias: str
    index: str


@dataclass(frozen=True)
class Fake:
    expression: str  # SQL text; words appear as <alias>.v
    picks: tuple[Pick, ...]


def _bytes_index(h: str, offset: int, size: int) -> str:
    """1 + (3 bytes of the hash, as a number) mod size: integer arithmetic, no string work."""
    return (
        f"1 + ((get_byte({h}, {offset}) * 65536 + get_byte({h}, {offset + 1}) * 256 + "
        f"get_byte({h}, {offset + 2})) % {size})"
    )


def fake_parts(kind: str, column: str, h: str, prefix: str, words: WordLists) -> Fake:
    """The fake for one value of `column`, from the hash expression `h` (bytea, or bigint for free text)."""
    sizes = {name: len(values) for name, values in lists(words).items()}
    picks: list[Pick] = []

    def pick(list_name: str, offset: int) -> str:
        alias = f"{prefix}_{list_name}"
        picks.append(Pick(list_name, alias, _bytes_index(h, offset, sizes[list_name])))
        return f"{alias}.v"

    if kind == "email":
        expression = (
            f"lower({pick('first', 0)} || '.' || {pick('last', 3)} || '.' || "
            f"substr(encode({h}, 'hex'), 17, 10)) || '@' || {pick('domain', 6)}"
        )
    elif kind == "name":
        expression = f"{pick('first', 0)} || ' ' || {pick('last', 3)}"
    elif kind == "phone":
        expression = (
            f"'+1-' || {pick('area', 0)} || '-555-' || "
            f"lpad(((get_byte({h}, 3) * 256 + get_byte({h}, 4)) % 10000)::text, 4, '0')"
        )
    elif kind == "address":
        expression = (
            f"(100 + (get_byte({h}, 0) * 256 + get_byte({h}, 1)) % 9800)::text || ' ' || "
            f"{pick('street', 3)} || ', ' || {pick('city', 6)}"
        )
    elif kind == "ip":
        expression = f"'10.' || get_byte({h}, 0) || '.' || get_byte({h}, 1) || '.' || get_byte({h}, 2)"
    elif kind == "free_text":  # h is a bigint here: long text is hashed with hashtextextended, much cheaper
        for name in ("paragraph", "sentence"):
            size = sizes[name]
            picks.append(Pick(name, f"{prefix}_{name}", f"1 + ((({h}) % {size} + {size}) % {size})"))
        expression = f"CASE WHEN length({column}::text) > 200 THEN {prefix}_paragraph.v ELSE {prefix}_sentence.v END"
    else:
        raise ValueError(kind)
    return Fake(expression, tuple(picks))


def inline(fake: Fake, words: WordLists) -> str:
    """The fake as one expression, each word a subscript of its list as an array literal (for few rows:
    a subquery per word would recompute the index for every list entry)."""
    text = fake.expression
    for p in fake.picks:
        array = sql.SQL("ARRAY[{}]::text[]").format(
            sql.SQL(", ").join(sql.Literal(v) for v in lists(words)[p.list_name])
        )
        text = text.replace(f"{p.alias}.v", f"({array.as_string(None)})[{p.index}]")
    return text


def lists_cte(words: WordLists, used: set[str]) -> sql.Composed:
    """WITH first(i, v) AS (...), ...: each word list as a small table, joined by hash (O(1) per row)."""
    parts = []
    for name, values in lists(words).items():
        if name in used:
            array = sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(sql.Literal(v) for v in values))
            parts.append(
                sql.SQL("{}(i, v) AS (SELECT i::int, v FROM unnest({}) WITH ORDINALITY AS u(v, i))").format(
                    sql.Identifier(name), array
                )
            )
    return sql.SQL("WITH ") + sql.SQL(", ").join(parts) if parts else sql.Composed([])


def sanitized_select(table: LiveTable, rules: dict[str, Rule], salt_value: str) -> sql.Composed:
    """SELECT every column of `table`, each through its rule, cast back to the column's own type."""
    words = word_lists()
    outputs: list[sql.Composable] = []
    hashes: list[sql.Composable] = []
    picks: list[Pick] = []
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
            if rule.kind == "free_text":
                source = sql.SQL("hashtextextended({}::text, {})").format(col, sql.Literal(text_seed(salt_value)))
            else:
                as_text = "lower(trim({}::text))" if rule.kind == "email" else "{}::text"
                source = keyed_hash(sql.SQL(as_text).format(col), salt_value)
            hashes.append(sql.SQL("{} AS {}").format(source, sql.Identifier(f"h{i}")))
            fake = fake_parts(rule.kind, f't."{column.name}"', f"k.h{i}", f"c{i}", words)
            picks += fake.picks
            outputs.append(
                sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE ({})::{} END").format(col, sql.SQL(fake.expression), cast)
            )
    # OFFSET 0 keeps the planner from inlining the hashes into every use: each is computed once per row
    lateral = (
        sql.SQL(" CROSS JOIN LATERAL (SELECT {} OFFSET 0) k").format(sql.SQL(", ").join(hashes))
        if hashes
        else sql.SQL("")
    )
    joins = sql.SQL("").join(
        sql.SQL(" LEFT JOIN {} {} ON {}.i = {}").format(
            sql.Identifier(p.list_name), sql.SQL(p.alias), sql.SQL(p.alias), sql.SQL(p.index)
        )
        for p in picks
    )
    return sql.SQL("{} SELECT {} FROM ONLY {}.{} t{}{}").format(
        lists_cte(words, {p.list_name for p in picks}),
        sql.SQL(", ").join(outputs),
        sql.Identifier(table.schema),
        sql.Identifier(table.name),
        lateral,
        joins,
    )
