"""orders: what the customers bought, in which currency, and who sent them."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from lockfree.schema import ORDER_STATUS, Order


class Orders(SeedTable):
    model = Order

    def row(self, f: Fakes, id: int) -> Row:
        return {
            "id": id,
            "customer_id": f.ref("customers"),
            "status": f.choice(ORDER_STATUS),
            "total_cents": f.integer(100, 50_000),
            "placed_at": f.past_datetime(),
            "currency": f.choice(("EUR", "USD", "GBP")),
            "referrer_id": f.ref("customers") if f.chance(0.2) else None,
        }


SEED = Orders()
