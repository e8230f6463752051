"""The example app's schema: a small task manager. Replace it with your own.

Each column declares its PII class (app/pii.py) beside it; db.refresh-staging and the migration
ladder read those declarations.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from dbguard.ownership import owned
from dbguard.pii import PII, pii_column
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    SmallInteger,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, relationship

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TASK_STATUSES = ("todo", "doing", "done")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"
    __table_args__ = ({"info": owned("app", readers=("worker",))},)

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = pii_column(PII.EMAIL, Text, unique=True)
    full_name: Mapped[str] = pii_column(PII.NAME, Text)
    phone: Mapped[str | None] = pii_column(PII.PHONE, Text)
    address: Mapped[str | None] = pii_column(PII.ADDRESS, Text)
    last_login_ip: Mapped[str | None] = pii_column(PII.IP, INET)
    preferences: Mapped[dict[str, Any]] = pii_column(PII.PERSONAL_JSON, JSONB, server_default="{}")
    created_at: Mapped[datetime] = pii_column(PII.NONE, DateTime(timezone=True), server_default=func.now())

    projects: Mapped[list[Project]] = relationship(back_populates="owner")


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = ({"info": owned("app", row_owner="owner_id")},)  # each user sees only their own projects

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    owner_id: Mapped[int] = pii_column(PII.NONE, ForeignKey("users.id"), index=True)
    name: Mapped[str] = pii_column(PII.NONE, Text)
    description: Mapped[str | None] = pii_column(PII.FREE_TEXT, Text)
    created_at: Mapped[datetime] = pii_column(PII.NONE, DateTime(timezone=True), server_default=func.now())

    owner: Mapped[User] = relationship(back_populates="projects")
    tasks: Mapped[list[Task]] = relationship(back_populates="project")


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint("status IN ('todo', 'doing', 'done')", name="status"),
        CheckConstraint("priority BETWEEN 1 AND 4", name="priority"),
        Index("ix_tasks_project_id_status", "project_id", "status"),
        {"info": owned("app", "worker")},  # shared: the worker completes tasks
    )

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    project_id: Mapped[int] = pii_column(PII.NONE, ForeignKey("projects.id"))
    assignee_id: Mapped[int | None] = pii_column(PII.NONE, ForeignKey("users.id"), index=True)
    title: Mapped[str] = pii_column(PII.FREE_TEXT, Text)
    status: Mapped[str] = pii_column(PII.NONE, Text, server_default="todo")
    priority: Mapped[int] = pii_column(PII.NONE, SmallInteger, server_default="2")
    due_date: Mapped[date | None] = pii_column(PII.NONE, Date)
    completed_at: Mapped[datetime | None] = pii_column(PII.NONE, DateTime(timezone=True))
    created_at: Mapped[datetime] = pii_column(PII.NONE, DateTime(timezone=True), server_default=func.now())

    project: Mapped[Project] = relationship(back_populates="tasks")
    comments: Mapped[list[Comment]] = relationship(back_populates="task")


class Comment(Base):
    __tablename__ = "comments"
    __table_args__ = ({"info": owned("app", readers=("worker",))},)

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    task_id: Mapped[int] = pii_column(PII.NONE, ForeignKey("tasks.id"), index=True)
    author_id: Mapped[int] = pii_column(PII.NONE, ForeignKey("users.id"), index=True)
    body: Mapped[str] = pii_column(PII.FREE_TEXT, Text)
    created_at: Mapped[datetime] = pii_column(PII.NONE, DateTime(timezone=True), server_default=func.now())

    task: Mapped[Task] = relationship(back_populates="comments")
