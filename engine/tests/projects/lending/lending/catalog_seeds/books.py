"""books: the catalogue."""

from __future__ import annotations

from decimal import Decimal

from dbguard.seeding.api import Fakes, Row, SeedTable

from lending.schema import Book


class Books(SeedTable):
    model = Book

    def row(self, f: Fakes, id: int) -> Row:
        return {
            "id": id,
            "isbn": f"978-{id:09d}",
            "title": f.catch_phrase(),
            "copies": f.integer(1, 5),
            "price": Decimal(f.integer(500, 6000)) / 100,
        }


SEED = Books()
