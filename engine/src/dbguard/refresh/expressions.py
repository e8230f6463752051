"""The sanitizing SELECT that feeds COPY on PROD: raw PII never leaves PROD's server.

Each sanitized value is derived from a keyed hash of the source value, sha256(key || value), taken
inside PROD. The key is a per-installation secret (.local/sanitize-salt, or SANITIZE_SALT), so the
same source value always gives the same fake, across tables and across refreshes, and nobody can
recognise a fake by hashing the emails they know. The fakes look real: names, streets and sentences
come from Faker-made word lists, sent inside the query as constants (PROD stays read-only).

What must always hold: the key never appears in SQL text, so a server that logs statements
(`log_statement = all`, `log_min_duration_statement`, `log_min_error_statement`, auto_explain) never
logs it. It reaches each session as a setting in the connection's startup packet (`-c
dbguard.sanitize_key=...`: `SanitizeKey.options`), which no server logs, and the SQL reads it with
current_setting(); a session that was not given it fails instead of hashing without it.
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
from dbguard.refresh.rules import LiveColumn, LiveTable, MaskRule
from dbguard.refresh.safe_sql import render
from dbguard.settings import Settings

WORDS_SEED = 20_260_101  # fixed: the lists (and so the fakes) stay the same from one refresh to the next
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")  # RFC 2606: never deliverable
AREA_CODES = ("201", "212", "303", "312", "415", "503", "617", "702", "808", "919")
KEY_SETTING = "dbguard.sanitize_key"  # hex of the salt's UTF-8 bytes
SEED_SETTING = "dbguard.text_seed"  # the free-text hash seed, derived from the salt
KEY = sql.SQL(f"(SELECT decode(current_setting('{KEY_SETTING}'), 'hex'))")  # an InitPlan: read once per query
TEXT_SEED = sql.SQL(f"(SELECT current_setting('{SEED_SETTING}')::bigint)")


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


def text_seed(salt_value: str) -> int:
    """A signed 64-bit seed for hashtextextended(), derived from the salt (for long free text)."""
    return int.from_bytes(hashlib.sha256(salt_value.encode()).digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class SanitizeKey:
    """The salt as it reaches a server: session settings in the startup packet, never SQL text."""

    salt: str

    @classmethod
    def of(cls, settings: Settings) -> SanitizeKey:
        return cls(salt(settings))

    @property
    def options(self) -> str:
        """libpq `options` for every session that hashes (PROD's copy streams, the copy's checks)."""
        hexed = self.salt.encode().hex()
        remember_secret(hexed)
        return f"-c {KEY_SETTING}={hexed} -c {SEED_SETTING}={text_seed(self.salt)}"


def keyed_hash(value_sql: sql.Composable) -> sql.Composed:
    """sha256(key || UTF-8 bytes of the value): the same bytes as sha256(convert_to(salt || value))."""
    return sql.SQL("sha256({} || convert_to({}, 'UTF8'))").format(KEY, value_sql)


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


@cache
def _packed(name: str) -> tuple[str, str, int]:
    """One word list as constants: all its words in one bytea, and each word's (offset << 20 | length)."""
    values = lists(word_lists())[name]
    blob, slots, at = b"", [], 1
    for value in values:
        data = value.encode()
        slots.append(str(at << 20 | len(data)))
        blob, at = blob + data, at + len(data)
    return f"'\\x{blob.hex()}'::bytea", "ARRAY[" + ",".join(slots) + "]::int8[]", len(values)


def pick(list_name: str, number: str) -> str:
    """The word of `list_name` chosen by the integer expression `number` (any value: taken modulo the size).

    A substring of one bytea constant at an offset from an int8 array: O(1) per row, where a text array
    subscript walks the array and a join to a word table costs a hash probe per row.
    """
    blob, slots, size = _packed(list_name)
    slot = f"({slots})[1 + ((({number}) % {size} + {size}) % {size})::int]"
    return f"convert_from(substring({blob} FROM ({slot} >> 20)::int FOR ({slot} & 1048575)::int), 'UTF8')"


def _bytes(h: str, offset: int) -> str:
    """3 bytes of the hash `h`, as a number: integer arithmetic, no string work."""
    return f"(get_byte({h}, {offset}) * 65536 + get_byte({h}, {offset + 1}) * 256 + get_byte({h}, {offset + 2}))"


SUFFIX = 10  # hex characters of the keyed hash that keep email and username fakes apart (40 bits)
DOMAIN_ROOM = 12  # '@' and the longest domain
SHORTEST_NAME = 3  # the fewest characters of the name part a length limit may leave


def _names() -> int:
    words = word_lists()
    return max(map(len, words.first)) + 1 + max(map(len, words.last))


def longest(kind: str) -> int:
    """The longest value an email or username fake takes when no column length cuts its name part."""
    return _names() + 1 + SUFFIX + (DOMAIN_ROOM if kind == "email" else 0)


def shortest_room(kind: str) -> int:
    """The fewest characters a column must hold for an email or username fake to keep its suffix whole."""
    return SHORTEST_NAME + 1 + SUFFIX + (DOMAIN_ROOM if kind == "email" else 0)


def _cut(name_part: str, kind: str, room: int | None) -> str:
    """The name part, cut so that the whole fake fits `room` characters: the hash suffix is never cut."""
    if room is None or room >= longest(kind):
        return name_part
    return f"left({name_part}, {_names() - (longest(kind) - room)})"


def secret(value: str, h: str, base_type: str) -> str:
    """A made-up secret in place of `value`, from the hash `h` (of the row's key, never of the value): as long
    as the value and from the same alphabet (digits, hex, letters and digits, base64url, else base64); a
    uuid for a uuid, as many bytes for bytes."""
    pool = "(" + " || ".join(f"sha256({h} || '\\x0{i}'::bytea)" for i in range(1, 5)) + ")"  # 128 bytes
    hexed = f"encode({pool}, 'hex')"
    if base_type == "uuid":
        return f"encode(substring({pool} FROM 1 FOR 16), 'hex')::uuid"
    if base_type == "bytea":
        size = f"octet_length({value})"
        return f"decode(left(repeat({hexed}, 1 + {size} / 128), 2 * {size}), 'hex')"
    text = f"({value})::text"
    size = f"char_length({text})"
    b64 = f"translate(encode(substring({pool} FROM 1 FOR 126), 'base64'), E'\\n', '')"  # 168 characters

    def fill(alphabet: str, length: int) -> str:
        return f"left(repeat({alphabet}, 1 + {size} / {length}), {size})"

    branches = [
        ("^[0-9]+$", fill(f"translate({hexed}, 'abcdef', '012345')", 256)),
        ("^[0-9a-f]+$", fill(hexed, 256)),
        ("^[0-9A-F]+$", f"upper({fill(hexed, 256)})"),
        ("^[A-Za-z0-9]+$", fill(f"translate({b64}, '+/', 'xQ')", 168)),
        ("^[A-Za-z0-9_-]+$", fill(f"translate({b64}, '+/', '-_')", 168)),
    ]
    cases = " ".join(f"WHEN {text} ~ '{pattern}' THEN {made}" for pattern, made in branches)
    return f"CASE {cases} ELSE {fill(b64, 168)} END"


def fake(kind: str, column: str, h: str, room: int | None = None, base_type: str = "text") -> str:
    """The fake for one value of `column`, from the hash expression `h` (bytea; bigint for free text).

    `room`: the column's length limit (varchar(n)), which email and username fakes fit by shortening their
    name part, never their hash suffix; `base_type`: the column's type, for a secret."""
    if kind == "email":
        name_part = f"{pick('first', _bytes(h, 0))} || '.' || {pick('last', _bytes(h, 3))}"
        return (
            f"lower({_cut(name_part, kind, room)} || '.' || substr(encode({h}, 'hex'), 17, {SUFFIX})) || '@' || "
            f"{pick('domain', _bytes(h, 6))}"
        )
    if kind == "username":
        name_part = (
            f"translate(lower({pick('first', _bytes(h, 0))} || '_' || {pick('last', _bytes(h, 3))}), '''- ', '')"
        )
        return f"{_cut(name_part, kind, room)} || '_' || substr(encode({h}, 'hex'), 17, {SUFFIX})"
    if kind == "secret":
        return secret(column, h, base_type)
    if kind == "name":
        return f"{pick('first', _bytes(h, 0))} || ' ' || {pick('last', _bytes(h, 3))}"
    if kind == "phone":
        return (
            f"'+1-' || {pick('area', _bytes(h, 0))} || '-555-' || "
            f"lpad(((get_byte({h}, 3) * 256 + get_byte({h}, 4)) % 10000)::text, 4, '0')"
        )
    if kind == "address":
        return (
            f"(100 + (get_byte({h}, 0) * 256 + get_byte({h}, 1)) % 9800)::text || ' ' || "
            f"{pick('street', _bytes(h, 3))} || ', ' || {pick('city', _bytes(h, 6))}"
        )
    if kind == "ip":
        return f"'10.' || get_byte({h}, 0) || '.' || get_byte({h}, 1) || '.' || get_byte({h}, 2)"
    if kind == "free_text":  # h is a bigint here: long text is hashed with hashtextextended, much cheaper
        return (
            f"CASE WHEN octet_length({column}::text) > 200 THEN {pick('paragraph', h)} ELSE {pick('sentence', h)} END"
        )
    raise ValueError(kind)


def free_text_values() -> tuple[str, ...]:
    """Every value a free_text fake can take: checking these checks every free_text column."""
    words = word_lists()
    return words.sentence + words.paragraph


def row_key(table: LiveTable, rules: dict[str, MaskRule]) -> sql.Composable:
    """What a secret is derived from: the row's primary key, else every column that is not itself a secret."""
    names = table.key or tuple(c.name for c in table.columns if rules[c.name].kind != "secret")
    return sql.SQL("ROW({})::text").format(
        sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in names) if names else sql.SQL("0")
    )


def hash_input(rule: MaskRule, table: LiveTable, column: LiveColumn, rules: dict[str, MaskRule]) -> sql.Composable:
    """The text a generated fake is drawn from (keyed-hashed inside PROD)."""
    col = sql.SQL("t.{}::text").format(sql.Identifier(column.name))
    if rule.kind == "email":  # one person's email spelled two ways gets one name, two suffixes
        return sql.SQL("CASE WHEN {c} = lower(trim({c})) THEN {c} ELSE lower(trim({c})) || E'\\n' || {c} END").format(
            c=col
        )
    if rule.kind == "secret":  # never the secret itself: nothing about it can be guessed from the fake
        return sql.SQL("{} || {}").format(
            sql.Literal(f"secret:{table.qualified}.{column.name}:"), row_key(table, rules)
        )
    return col


def sanitized_select(table: LiveTable, rules: dict[str, MaskRule]) -> sql.Composed:
    """SELECT every column of `table`, each through its rule, cast back to the column's own type."""
    outputs: list[sql.Composable] = []
    hashes: list[sql.Composable] = []
    for i, column in enumerate(table.columns):
        rule = rules[column.name]
        col = sql.SQL("t.{}").format(sql.Identifier(column.name))
        cast = sql.SQL(column.type_name)
        if rule.kind == "keep":
            output: sql.Composable = col
        elif rule.kind == "null":
            output = sql.SQL("NULL::{}").format(cast)
        elif rule.kind == "fixed":
            fixed = sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {}::{} END")
            output = fixed.format(col, sql.Literal(rule.argument), cast)
        elif rule.kind == "sql":
            assert rule.expression is not None  # parsed when the policy was read
            output = sql.SQL("({})::{}").format(render(rule.expression), cast)
        elif rule.kind == "free_text":  # cheap enough to compute where it is used
            h = sql.SQL("hashtextextended({}::text, {})").format(col, TEXT_SEED).as_string(None)
            made = fake("free_text", col.as_string(None), h)
            output = sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE ({})::{} END").format(col, sql.SQL(made), cast)
        else:
            hashed = keyed_hash(hash_input(rule, table, column, rules))
            hashes.append(sql.SQL("{} AS {}").format(hashed, sql.Identifier(f"h{i}")))
            made = fake(rule.kind, col.as_string(None), f"k.h{i}", column.max_length, column.base_type)
            output = sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE ({})::{} END").format(col, sql.SQL(made), cast)
        outputs.append(sql.SQL("{} AS {}").format(output, sql.Identifier(column.name)))
    # OFFSET 0 keeps the planner from inlining the hashes into every use: each is computed once per row
    lateral = (
        sql.SQL(" CROSS JOIN LATERAL (SELECT {} OFFSET 0) k").format(sql.SQL(", ").join(hashes))
        if hashes
        else sql.SQL("")
    )
    return sql.SQL("SELECT {} FROM {} t{}").format(sql.SQL(", ").join(outputs), table.relation, lateral)
