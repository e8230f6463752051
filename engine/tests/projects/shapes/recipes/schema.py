"""A recipe manager: cooks write recipes, bookmark and plan them, and log what they cooked.

Its schema has the shapes real apps have and the example does not: uuid keys made by the client
(users) and by the server (recipes), a composite key (recipe_ingredients), a table with no primary
key (recipe_bookmarks, a plain Table), a foreign-key cycle (users.favorite_recipe_id -> recipes,
recipes.author_id -> users), a self-reference (users.invited_by_id), a table in a second schema
(kitchen.meal_plans), enum types, `timestamp` and `time` without time zone, jsonb, an array, a
generated column, a partitioned table (cooking_log, its partitions made by the migration), NOT NULL
and UNIQUE personal columns, single (email, username, api_token) and composite (provider, handle),
and a CHECK on one (email). Each column declares its PII class; each table its owners.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from dbguard.ownership import owned
from dbguard.pii import INFO_KEY, PII, pii_column
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    Time,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
KITCHEN = "kitchen"  # the second schema: meal planning

ROLES = ("cook", "editor", "admin")
DIFFICULTIES = ("easy", "medium", "hard")
PROVIDERS = ("github", "google", "apple")
UNITS = ("g", "ml", "tbsp", "tsp", "cup", "piece")

user_role = Enum(*ROLES, name="user_role")
difficulty = Enum(*DIFFICULTIES, name="difficulty")
provider = Enum(*PROVIDERS, name="login_provider")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def plain(pii: PII) -> dict[str, Any]:
    """A plain Column's info carrying its PII class (what pii_column does for mapped columns)."""
    return {INFO_KEY: pii}


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("email LIKE '%@%'", name="email_has_at"), {"info": owned("app")})

    id: Mapped[uuid.UUID] = pii_column(PII.NONE, Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = pii_column(PII.EMAIL, Text, unique=True)
    username: Mapped[str] = pii_column(PII.USERNAME, Text, unique=True)
    api_token: Mapped[str] = pii_column(PII.SECRET, Text, unique=True)
    display_name: Mapped[str] = pii_column(PII.NAME, Text)
    role: Mapped[str] = pii_column(PII.NONE, user_role, server_default="cook")
    invited_by_id: Mapped[uuid.UUID | None] = pii_column(PII.NONE, ForeignKey("users.id"), index=True)
    favorite_recipe_id: Mapped[uuid.UUID | None] = pii_column(
        PII.NONE, ForeignKey("recipes.id", use_alter=True, name="fk_users_favorite_recipe_id_recipes")
    )
    created_at: Mapped[datetime] = pii_column(PII.NONE, DateTime(timezone=False), server_default=text("now()"))


class Recipe(Base):
    __tablename__ = "recipes"
    __table_args__ = ({"info": owned("app")},)

    id: Mapped[uuid.UUID] = pii_column(PII.NONE, Uuid, primary_key=True, server_default=text("gen_random_uuid()"))
    author_id: Mapped[uuid.UUID] = pii_column(PII.NONE, ForeignKey("users.id"), index=True)
    title: Mapped[str] = pii_column(PII.NONE, Text)
    difficulty: Mapped[str] = pii_column(PII.NONE, difficulty)
    tags: Mapped[list[str]] = pii_column(PII.NONE, ARRAY(Text), server_default="{}")
    nutrition: Mapped[dict[str, Any]] = pii_column(PII.NONE, JSONB, server_default="{}")
    prep_minutes: Mapped[int] = pii_column(PII.NONE, Integer)
    cook_minutes: Mapped[int] = pii_column(PII.NONE, Integer)
    total_minutes: Mapped[int] = pii_column(PII.NONE, Integer, Computed("prep_minutes + cook_minutes", persisted=True))
    published_at: Mapped[datetime | None] = pii_column(PII.NONE, DateTime(timezone=False))


class Ingredient(Base):
    __tablename__ = "ingredients"
    __table_args__ = ({"info": owned("app")},)

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = pii_column(PII.NONE, Text, unique=True)


class RecipeIngredient(Base):
    __tablename__ = "recipe_ingredients"
    __table_args__ = (PrimaryKeyConstraint("recipe_id", "position"), {"info": owned("app")})

    recipe_id: Mapped[uuid.UUID] = pii_column(PII.NONE, ForeignKey("recipes.id", ondelete="CASCADE"))
    position: Mapped[int] = pii_column(PII.NONE, SmallInteger)
    ingredient_id: Mapped[int] = pii_column(PII.NONE, ForeignKey("ingredients.id"), index=True)
    quantity: Mapped[Decimal] = pii_column(PII.NONE, Numeric(8, 2))
    unit: Mapped[str] = pii_column(PII.NONE, Text)


recipe_bookmarks = Table(  # an association table with no primary key, declared without an ORM class
    "recipe_bookmarks",
    Base.metadata,
    Column("user_id", ForeignKey("users.id"), nullable=False, info=plain(PII.NONE)),
    Column("recipe_id", ForeignKey("recipes.id"), nullable=False, info=plain(PII.NONE)),
    Column("saved_at", DateTime(timezone=False), nullable=False, info=plain(PII.NONE)),
    Column("note", Text, nullable=True, info=plain(PII.FREE_TEXT)),
    Index("ix_recipe_bookmarks_user_id_recipe_id", "user_id", "recipe_id"),
    info=owned("app"),
)


class SocialAccount(Base):
    __tablename__ = "social_accounts"
    __table_args__ = (UniqueConstraint("provider", "handle"), {"info": owned("app")})

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    user_id: Mapped[uuid.UUID] = pii_column(PII.NONE, ForeignKey("users.id"), index=True)
    provider: Mapped[str] = pii_column(PII.NONE, provider)
    handle: Mapped[str] = pii_column(PII.USERNAME, Text)


class MealPlan(Base):
    __tablename__ = "meal_plans"
    __table_args__ = ({"schema": KITCHEN, "info": owned("app")},)

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    user_id: Mapped[uuid.UUID] = pii_column(PII.NONE, ForeignKey("users.id"), index=True)
    recipe_id: Mapped[uuid.UUID] = pii_column(PII.NONE, ForeignKey("recipes.id"))
    plan_date: Mapped[date] = pii_column(PII.NONE, Date)
    meal_time: Mapped[time] = pii_column(PII.NONE, Time(timezone=False))
    servings: Mapped[int] = pii_column(PII.NONE, SmallInteger)


class CookingLog(Base):
    """What was cooked when: partitioned by year (the partitions are made by the migration)."""

    __tablename__ = "cooking_log"
    __table_args__ = (
        PrimaryKeyConstraint("id", "cooked_on"),
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating"),
        {"postgresql_partition_by": "RANGE (cooked_on)", "info": owned("app")},
    )

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity())
    cooked_on: Mapped[date] = pii_column(PII.NONE, Date)
    user_id: Mapped[uuid.UUID] = pii_column(PII.NONE, ForeignKey("users.id"), index=True)
    recipe_id: Mapped[uuid.UUID] = pii_column(PII.NONE, ForeignKey("recipes.id"))
    rating: Mapped[int | None] = pii_column(PII.NONE, SmallInteger)
    notes: Mapped[str | None] = pii_column(PII.FREE_TEXT, Text)
