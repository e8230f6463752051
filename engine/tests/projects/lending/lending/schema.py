"""A lending library: members borrow copies of books. Each column declares its PII class."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from dbguard.ownership import owned
from dbguard.pii import PII, pii_column
from sqlalchemy import BigInteger, Date, DateTime, ForeignKey, Identity, Integer, MetaData, Numeric, Text
from sqlalchemy.orm import DeclarativeBase, Mapped

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Member(Base):
    __tablename__ = "members"
    __table_args__ = ({"info": owned("desk")},)

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    card_email: Mapped[str] = pii_column(PII.EMAIL, Text, unique=True)
    display_name: Mapped[str] = pii_column(PII.NAME, Text)
    mobile: Mapped[str | None] = pii_column(PII.PHONE, Text)
    joined_on: Mapped[date] = pii_column(PII.NONE, Date)


class Book(Base):
    __tablename__ = "books"
    __table_args__ = ({"info": owned("catalog", readers=("desk",))},)

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    isbn: Mapped[str] = pii_column(PII.NONE, Text, unique=True)
    title: Mapped[str] = pii_column(PII.NONE, Text)
    copies: Mapped[int] = pii_column(PII.NONE, Integer)
    price: Mapped[Decimal] = pii_column(PII.NONE, Numeric(8, 2))


class Loan(Base):
    __tablename__ = "loans"
    __table_args__ = ({"info": owned("desk", row_owner="member_id")},)

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    member_id: Mapped[int] = pii_column(PII.NONE, ForeignKey("members.id"), index=True)
    book_id: Mapped[int] = pii_column(PII.NONE, ForeignKey("books.id"), index=True)
    lent_at: Mapped[datetime] = pii_column(PII.NONE, DateTime(timezone=True))
    returned_at: Mapped[datetime | None] = pii_column(PII.NONE, DateTime(timezone=True))
    librarian_note: Mapped[str | None] = pii_column(PII.FREE_TEXT, Text)
