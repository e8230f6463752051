"""customers: one account each."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from lockfree.schema import Customer


class Customers(SeedTable):
    model = Customer

    def row(self, f: Fakes, id: int) -> Row:
        return {"id": id, "email": f"customer{id}@{f.free_email_domain()}", "full_name": f.name()}


SEED = Customers()
