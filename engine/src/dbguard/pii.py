"""PII classes: what kind of personal data a column holds. Declared beside each column in the models.

The sanitizer (db.refresh-staging) turns each class into a masking rule, and the migration ladder
refuses a schema with a column nobody classified. Keys, numbers, booleans and timestamps may be
`NONE`; text, JSON, bytes and arrays must say what they hold.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import Column
from sqlalchemy.orm import MappedColumn, mapped_column

INFO_KEY = "pii"


class PII(StrEnum):
    NONE = "none"  # not personal: keep as is
    EMAIL = "email"
    NAME = "name"
    USERNAME = "username"  # a handle or login: its fakes stay unique (a UNIQUE column takes this, not NAME)
    PHONE = "phone"
    ADDRESS = "address"
    FREE_TEXT = "free_text"  # prose a person wrote: may contain anything
    IP = "ip"
    PERSONAL_JSON = "personal_json"  # a JSON document about a person
    SECRET = "secret"  # noqa: S105 -- a class name: tokens, hashes, never copied


def pii_column(pii: PII, *args: Any, **kwargs: Any) -> MappedColumn[Any]:
    """`mapped_column` that records the column's PII class in `Column.info`."""
    info = {**kwargs.pop("info", {}), INFO_KEY: pii}
    return mapped_column(*args, info=info, **kwargs)


def pii_of(column: Column[Any]) -> PII | None:
    value = column.info.get(INFO_KEY)
    return PII(value) if value is not None else None
