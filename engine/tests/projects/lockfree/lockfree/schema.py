"""A shop: customers place orders. The schema as the nine lock-safe revisions leave it; each column
declares its PII class."""

from __future__ import annotations

from datetime import datetime

from dbguard.ownership import owned
from dbguard.pii import PII, pii_column
from sqlalchemy import BigInteger, CheckConstraint, DateTime, Enum, ForeignKey, Identity, Integer, MetaData, Text
from sqlalchemy.orm import DeclarativeBase, Mapped

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
ORDER_STATUS = ("placed", "shipped", "cancelled")  # 'cancelled' came later: ALTER TYPE ... ADD VALUE (0003)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = ({"info": owned("app")},)

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = pii_column(PII.EMAIL, Text, unique=True)
    full_name: Mapped[str] = pii_column(PII.NAME, Text)


class Order(Base):
    __tablename__ = "orders"
    # left by the NOT NULL steps (0006, 0007): redundant beside NOT NULL, and dropping it is a change of its own
    __table_args__ = (CheckConstraint("currency IS NOT NULL", name="currency_not_null"), {"info": owned("app")})

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    customer_id: Mapped[int] = pii_column(PII.NONE, ForeignKey("customers.id"), index=True)
    status: Mapped[str] = pii_column(PII.NONE, Enum(*ORDER_STATUS, name="order_status"))
    total_cents: Mapped[int] = pii_column(PII.NONE, Integer)
    placed_at: Mapped[datetime] = pii_column(PII.NONE, DateTime(timezone=True), index=True)  # built concurrently
    currency: Mapped[str] = pii_column(PII.NONE, Text)  # added nullable, backfilled in batches, then NOT NULL
    referrer_id: Mapped[int | None] = pii_column(PII.NONE, ForeignKey("customers.id"))  # NOT VALID, then VALIDATE
