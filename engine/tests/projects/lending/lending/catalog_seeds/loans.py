"""loans: who borrowed which book, and when it came back."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from lending.schema import Loan


class Loans(SeedTable):
    model = Loan

    def row(self, f: Fakes, id: int) -> Row:
        lent = f.past_datetime()
        return {
            "id": id,
            "member_id": f.ref("members"),
            "book_id": f.ref("books"),
            "lent_at": lent,
            "returned_at": f.after(lent, days=21) if f.chance(0.8) else None,
            "librarian_note": f.sentence() if f.chance(0.1) else None,
        }


SEED = Loans()
