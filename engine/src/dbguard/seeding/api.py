"""What a seed module uses: `SeedTable` (one per table) and `Fakes` (fast, deterministic Faker values).

A seed module says how to make one row of its table; the runner (app/ops/seeding.py) does the
ordering, ids, batching, COPY, uniqueness and determinism.

Faker is slow per call (tens of microseconds), so `Fakes` asks Faker once for a pool of values
per provider, from a Faker seeded by the run's --seed, then picks from the pools with a seeded
random generator: realistic values, identical for the same seed, hundreds of thousands per second.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, ClassVar

from faker import Faker
from sqlalchemy.orm import DeclarativeBase

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
    - `f.ref("users")`: the id of a random row of a table seeded in this run (foreign keys)
    - `f.chance(0.3)`, `f.choice(options)`, `f.integer(1, 4)`
    - `f.past_datetime()`, `f.after(moment, days=30)`, `f.date_near(days=120)`

    The helpers are closures made once per table rather than methods: a seed runs them millions
    of times, and a closure call is about a third cheaper than a bound-method call.
    """

    chance: Callable[[float], bool]
    choice: Callable[[Sequence[Any]], Any]
    integer: Callable[[int, int], int]
    ref: Callable[[str], int]
    past_datetime: Callable[[], datetime]
    after: Callable[..., datetime]
    date_near: Callable[..., date]

    def __init__(
        self, seed: int, table: str, id_ranges: dict[str, tuple[int, int]], pool_size: int = POOL_SIZE
    ) -> None:
        self.seed = seed
        self.pool_size = pool_size  # a small table needs no thousand-value pools
        self.rng = random.Random(derive_seed(seed, table))  # noqa: S311 -- fake data, reproducible on purpose
        self._pickers: dict[str, Callable[[], Any]] = {}
        rand = self.rng.random
        moments, n_moments = _moments(), len(_moments())

        def ref(table: str) -> int:
            start, count = id_ranges[table]
            return start + int(rand() * count)

        self.ref = ref
        self.chance = lambda probability: rand() < probability
        self.choice = lambda options: options[int(rand() * len(options))]
        self.integer = lambda low, high: low + int(rand() * (high - low + 1))
        self.past_datetime = lambda: moments[int(rand() * n_moments)]
        self.after = lambda moment, days=30: moment + _OFFSETS[int(rand() * days * 24)]
        self.date_near = lambda days=120: _DAYS[120 + int(rand() * 2 * days) - days]

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
    """One table's seed: subclass it in seeds/<table>.py, set `model` and define `row`."""

    model: ClassVar[type[DeclarativeBase]]

    @property
    def name(self) -> str:
        return str(self.model.__tablename__)

    def row(self, f: Fakes, id: int) -> Row:
        raise NotImplementedError
