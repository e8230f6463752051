"""The example app's schema: a small task manager. Replace it with your own.

Each column declares its PII class (dbguard.pii) beside it, each table its owners (dbguard.ownership):
which components write it and which only read it. db.refresh-staging, db.roles and the migration
ladder read those declarations. Two components use this schema: `app` (python -m app) and `worker`
(python -m app.worker), which reads tasks and users and keeps its own queue, notification_jobs.
A project belongs to its owner: through the app's role a user sees and changes only their own
projects (row-level security, switched on by `row_owner`; the session names its user with
dbguard.runtime.act_as).
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
    UniqueConstraint,
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
JOB_STATES = ("queued", "done")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"
    __table_args__ = ({"info": owned("app", readers=("worker",))},)  # the worker reads the assignee's address

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
    __table_args__ = ({"info": owned("app", row_owner="owner_id")},)  # a user sees only their own projects

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
        # a user reaches a task through their own project; the worker finds every assigned task to notify about
        {"info": owned("app", readers=("worker",), rows_via="project_id")},
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
    __table_args__ = ({"info": owned("app", rows_via="task_id")},)  # a user reaches the comments on their tasks

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    task_id: Mapped[int] = pii_column(PII.NONE, ForeignKey("tasks.id"), index=True)
    author_id: Mapped[int] = pii_column(PII.NONE, ForeignKey("users.id"), index=True)
    body: Mapped[str] = pii_column(PII.FREE_TEXT, Text)
    created_at: Mapped[datetime] = pii_column(PII.NONE, DateTime(timezone=True), server_default=func.now())

    task: Mapped[Task] = relationship(back_populates="comments")


class NotificationJob(Base):
    """The worker's queue: one job per (task, assignee) to tell the assignee about the task. Only the worker
    reads or writes it; it finds new assignments in tasks itself, so the app needs no privilege here."""

    __tablename__ = "notification_jobs"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'done')", name="state"),
        UniqueConstraint("task_id", "assignee_id"),
        Index("ix_notification_jobs_state_id", "state", "id"),  # the worker claims the oldest queued jobs
        {"info": owned("worker", isolated=True)},
    )

    id: Mapped[int] = pii_column(PII.NONE, BigInteger, Identity(), primary_key=True)
    task_id: Mapped[int] = pii_column(PII.NONE, ForeignKey("tasks.id", ondelete="CASCADE"))
    assignee_id: Mapped[int] = pii_column(PII.NONE, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = pii_column(PII.NONE, Text, server_default="queued")
    created_at: Mapped[datetime] = pii_column(PII.NONE, DateTime(timezone=True), server_default=func.now())
    done_at: Mapped[datetime | None] = pii_column(PII.NONE, DateTime(timezone=True))
