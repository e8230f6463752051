"""users, recipes, ingredients, bookmarks, social accounts, the cooking log (partitioned) and kitchen.meal_plans

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTITION_YEARS = (2024, 2025, 2026)


def upgrade() -> None:
    op.execute("CREATE SCHEMA kitchen")
    op.create_table(
        "ingredients",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingredients")),
        sa.UniqueConstraint("name", name=op.f("uq_ingredients_name")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("api_token", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("role", sa.Enum("cook", "editor", "admin", name="user_role"), server_default="cook", nullable=False),
        sa.Column("invited_by_id", sa.Uuid(), nullable=True),
        sa.Column("favorite_recipe_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=False), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("email LIKE '%@%'", name=op.f("ck_users_email_has_at")),
        sa.ForeignKeyConstraint(["invited_by_id"], ["users.id"], name=op.f("fk_users_invited_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("api_token", name=op.f("uq_users_api_token")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_index(op.f("ix_users_invited_by_id"), "users", ["invited_by_id"], unique=False)
    op.create_table(
        "recipes",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("difficulty", sa.Enum("easy", "medium", "hard", name="difficulty"), nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("nutrition", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("prep_minutes", sa.Integer(), nullable=False),
        sa.Column("cook_minutes", sa.Integer(), nullable=False),
        sa.Column(
            "total_minutes", sa.Integer(), sa.Computed("prep_minutes + cook_minutes", persisted=True), nullable=False
        ),
        sa.Column("published_at", sa.DateTime(timezone=False), nullable=True),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name=op.f("fk_recipes_author_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipes")),
    )
    op.create_index(op.f("ix_recipes_author_id"), "recipes", ["author_id"], unique=False)
    op.create_foreign_key(
        "fk_users_favorite_recipe_id_recipes", "users", "recipes", ["favorite_recipe_id"], ["id"]
    )  # the cycle: users -> recipes -> users
    op.create_table(
        "recipe_ingredients",
        sa.Column("recipe_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("ingredient_id", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=8, scale=2), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ingredient_id"], ["ingredients.id"], name=op.f("fk_recipe_ingredients_ingredient_id_ingredients")
        ),
        sa.ForeignKeyConstraint(
            ["recipe_id"], ["recipes.id"], name=op.f("fk_recipe_ingredients_recipe_id_recipes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("recipe_id", "position", name=op.f("pk_recipe_ingredients")),
    )
    op.create_index(op.f("ix_recipe_ingredients_ingredient_id"), "recipe_ingredients", ["ingredient_id"], unique=False)
    op.create_table(
        "recipe_bookmarks",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("recipe_id", sa.Uuid(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["recipe_id"], ["recipes.id"], name=op.f("fk_recipe_bookmarks_recipe_id_recipes")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_recipe_bookmarks_user_id_users")),
    )
    op.create_index("ix_recipe_bookmarks_user_id_recipe_id", "recipe_bookmarks", ["user_id", "recipe_id"], unique=False)
    op.create_table(
        "social_accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.Enum("github", "google", "apple", name="login_provider"), nullable=False),
        sa.Column("handle", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_social_accounts_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_social_accounts")),
        sa.UniqueConstraint("provider", "handle", name=op.f("uq_social_accounts_provider_handle")),
    )
    op.create_index(op.f("ix_social_accounts_user_id"), "social_accounts", ["user_id"], unique=False)
    op.create_table(
        "cooking_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("cooked_on", sa.Date(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("recipe_id", sa.Uuid(), nullable=False),
        sa.Column("rating", sa.SmallInteger(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_cooking_log_rating")),
        sa.ForeignKeyConstraint(["recipe_id"], ["recipes.id"], name=op.f("fk_cooking_log_recipe_id_recipes")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_cooking_log_user_id_users")),
        sa.PrimaryKeyConstraint("id", "cooked_on", name=op.f("pk_cooking_log")),
        postgresql_partition_by="RANGE (cooked_on)",
    )
    op.create_index(op.f("ix_cooking_log_user_id"), "cooking_log", ["user_id"], unique=False)
    for year in PARTITION_YEARS:
        op.execute(
            f"CREATE TABLE cooking_log_{year} PARTITION OF cooking_log "
            f"FOR VALUES FROM ('{year}-01-01') TO ('{year + 1}-01-01')"
        )
    op.execute("CREATE TABLE cooking_log_default PARTITION OF cooking_log DEFAULT")
    op.create_table(
        "meal_plans",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("recipe_id", sa.Uuid(), nullable=False),
        sa.Column("plan_date", sa.Date(), nullable=False),
        sa.Column("meal_time", sa.Time(timezone=False), nullable=False),
        sa.Column("servings", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(["recipe_id"], ["recipes.id"], name=op.f("fk_meal_plans_recipe_id_recipes")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_meal_plans_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meal_plans")),
        schema="kitchen",
    )
    op.create_index(op.f("ix_meal_plans_user_id"), "meal_plans", ["user_id"], unique=False, schema="kitchen")


def downgrade() -> None:
    op.drop_table("meal_plans", schema="kitchen")
    op.drop_table("cooking_log")  # its partitions go with it
    op.drop_table("social_accounts")
    op.drop_table("recipe_bookmarks")
    op.drop_table("recipe_ingredients")
    op.drop_constraint("fk_users_favorite_recipe_id_recipes", "users", type_="foreignkey")
    op.drop_table("recipes")
    op.drop_table("users")
    op.drop_table("ingredients")
    for name in ("login_provider", "difficulty", "user_role"):
        sa.Enum(name=name).drop(op.get_bind())
    op.execute("DROP SCHEMA kitchen")
