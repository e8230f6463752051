"""What a seed module uses: `SeedTable` (one per table) and `Fakes` (fast, deterministic Faker values).

A seed module says how to make row n of its table; the runner (seeding/runner.py) does the
foreign-key order (cycles included), the row numbers and keys, batching, COPY, values that match
the column types (a timezone-aware datetime into `timestamp without time zone` is stored as UTC
wall time), and determinism. Uniqueness is the module's to keep, with helpers that keep it for
any number of rows: `f.key(id)`, `f.unique_email(id)`, `f.unique_username(id)`, `f.token(id)` and
`f.unique(value, id)` put the row number into the value, so no two rows of a run get the same one.

Faker is slow per call (tens of microseconds), so `Fakes` asks Faker once for a pool of values
per provider, from a Faker seeded by the run's --seed, then picks from the pools with a seeded
random generator: realistic values, identical for the same seed, hundreds of thousands per second.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from faker import Faker
from sqlalchemy import Table
from sqlalchemy.orm import DeclarativeBase

if TYPE_CHECKING:
    from dbguard.seeding.keys import KeySpace

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # fixed "now" for seeded timestamps: determinism beats realism here
POOL_SIZE = 1000
Row = dict[str, Any]


def derive_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")


@cache
def faker_pool(seed: int, provider: str, size: int = POOL_SIZE, locale: str = "en_US") -> tuple[Any, ...]:
    """`size` values of one Faker provider, identical for the same seed."""
    fake = Faker(locale)
    fake.seed_instance(derive_seed(seed, provider, size, locale))
    method: Callable[[], Any] = getattr(fake, provider)
    return tuple(method() for _ in range(size))


class Fakes:
    """Per-table source of fake values, all drawn from one seeded random stream.

    - any Faker provider, from a pool: `f.first_name()`, `f.city()`, `f.sentence()`, ...
    - `f.key(id)`: this table's key for row `id`, in the key's own type (the number itself for an
      integer key, a uuid for a uuid key): the runner makes it when the module leaves the key out
    - `f.ref("users")`: the key of a random row of a table (foreign keys; any key type; a table in
      another schema is named with it: `f.ref("kitchen.meal_plans")`)
    - `f.size("users")`: how many rows that table has in this run; `f.nth("users", i)`: the key of its
      i-th row (from 0, wrapping around): with both, a composite key never repeats
    - `f.unique_email(id)`, `f.unique_username(id)`, `f.token(id)`, `f.unique(value, id)`: realistic
      values that stay unique for any number of rows (the row number is part of them)
    - `f.chance(0.3)`, `f.choice(options)`, `f.integer(1, 4)`
    - `f.past_datetime()`, `f.after(moment, days=30)`, `f.date_near(days=120)`

    The helpers are closures made once per table rather than methods: a seed runs them millions
    of times, and a closure call is about a third cheaper than a bound-method call.
    """

    chance: Callable[[float], bool]
    choice: Callable[[Sequence[Any]], Any]
    integer: Callable[[int, int], int]
    ref: Callable[[str], Any]
    key: Callable[[int], Any]
    size: Callable[[str], int]
    nth: Callable[[str, int], Any]
    past_datetime: Callable[[], datetime]
    after: Callable[..., datetime]
    date_near: Callable[..., date]

    def __init__(
        self,
        seed: int,
        table: str,
        keys: Mapping[str, KeySpace],
        pool_size: int = POOL_SIZE,
        *,
        stream: str | None = None,
    ) -> None:
        self.seed = seed
        self.table = table
        self.pool_size = pool_size  # a small table needs no thousand-value pools
        self.rng = random.Random(derive_seed(seed, stream or table))  # noqa: S311 -- fake data, reproducible
        self._pickers: dict[str, Callable[[], Any]] = {}
        rand = self.rng.random
        moments, n_moments = _moments(), len(_moments())
        ranges = {  # integer keys numbered like the rows: the fast path
            t: (s.start, s.count) for t, s in keys.items() if s.column and s.make is None and s.values is None
        }
        pickers: dict[str, Callable[[], Any]] = {}

        def space(table: str) -> KeySpace:
            found = keys.get(table)
            if found is None:
                raise ValueError(f"table {table} is not seeded in this run: add it to the scenario")
            return found

        def ref(table: str) -> Any:
            bounds = ranges.get(table)
            if bounds is not None:
                return bounds[0] + int(rand() * bounds[1])
            pick = pickers.get(table)
            if pick is None:
                pick = pickers[table] = space(table).picker(rand)
            return pick()

        own = keys.get(table)
        self.ref = ref
        self.key = own.key if own is not None else lambda n: n
        self.size = lambda table: space(table).size
        self.nth = lambda table, i: space(table).nth(i)
        self.chance = lambda probability: rand() < probability
        self.choice = lambda options: options[int(rand() * len(options))]
        self.integer = lambda low, high: low + int(rand() * (high - low + 1))
        self.past_datetime = lambda: moments[int(rand() * n_moments)]
        self.after = lambda moment, days=30: moment + _OFFSETS[int(rand() * days * 24)]
        self.date_near = lambda days=120: _DAYS[120 + int(rand() * 2 * days) - days]
        self._token_salt = derive_seed(seed, "token", table)

    def unique(self, value: object, n: int, sep: str = "_") -> str:
        """`value` made unique by the row number: `f.unique(f.word(), id)` -> "basil_17".

        The text after the last `sep` is the number, so two rows never share a value, whatever `value` is.
        """
        return f"{value}{sep}{n}"

    def unique_email(self, n: int) -> str:
        """A realistic email unique to row n: first.last.n@domain."""
        first, last, domain = self.first_name(), self.last_name(), self.free_email_domain()
        return f"{first}.{last}.{n}@{domain}".lower()

    def unique_username(self, n: int) -> str:
        """A realistic username unique to row n: a Faker user name, `_`, the row number."""
        return f"{self.user_name()}_{n}"

    def token(self, n: int, length: int = 32) -> str:
        """A random-looking hex token unique to row n: its last 16 digits are a bijection of n (length 16 to 48)."""
        if not 16 <= length <= 48:
            raise ValueError(f"f.token(id, length={length}): a unique token has 16 to 48 hex digits")
        mixed = ((n * 0x9E3779B97F4A7C15) ^ self._token_salt) & 0xFFFFFFFFFFFFFFFF
        return f"{self.md5()}{mixed:016x}"[-length:]

    def picker(self, provider: str, size: int | None = None) -> Callable[[], Any]:
        """A zero-argument function returning a random value of `provider` from its pool."""
        picker = self._pickers.get(provider)
        if picker is None:
            pool = faker_pool(self.seed, provider, size or self.pool_size)
            n, rand = len(pool), self.rng.random

            def picker() -> Any:
                return pool[int(rand() * n)]

            self._pickers[provider] = picker
        return picker

    def __getattr__(self, provider: str) -> Callable[[], Any]:
        """Any Faker provider, served from a pool. The picker is then stored on the instance,
        so later calls skip this method entirely."""
        if provider.startswith("_"):
            raise AttributeError(provider)
        picker = self.picker(provider)
        setattr(self, provider, picker)
        return picker


@cache
def _moments() -> tuple[datetime, ...]:
    span = 730 * 86400
    return tuple(EPOCH - timedelta(seconds=span * i // 100_000 + 7 * (i % 13)) for i in range(100_000))


_OFFSETS = tuple(timedelta(hours=h, minutes=(h * 37) % 60) for h in range(366 * 24))
_DAYS = tuple((EPOCH + timedelta(days=d)).date() for d in range(-120, 121))


class SeedTable:
    """One table's seed: subclass it in seeds/<table>.py, set `model` (an ORM class) or `table` (a plain
    `Table`, such as an association table with no primary key), and define `row`."""

    model: ClassVar[type[DeclarativeBase]]
    table: ClassVar[Table]

    @property
    def sa_table(self) -> Table:
        table = getattr(self, "table", None)
        if isinstance(table, Table):
            return table
        found = self.model.__table__
        assert isinstance(found, Table)
        return found

    @property
    def name(self) -> str:
        """The table's name as scenarios and `f.ref` use it: `users`, or `kitchen.meal_plans` outside public."""
        return self.sa_table.fullname

    def row(self, f: Fakes, id: int) -> Row:
        raise NotImplementedError
