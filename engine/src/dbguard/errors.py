"""The one exception type users see: a one-line message, the command that fixes it, an outcome."""

from __future__ import annotations

from typing import Literal

Outcome = Literal["refused", "failed"]


class OpsError(Exception):
    """An error the user can act on. Printed as one line, never with a traceback.

    `refused` means the guard said no before anything was touched; `failed` means the
    operation was allowed but did not complete (the target is left as it was).
    """

    outcome: Outcome = "failed"

    def __init__(self, message: str, fix: str | None = None, short: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.short = short or message  # for table cells, where the target is already shown

    def one_line(self) -> str:
        return f"{self.message} -> {self.fix}" if self.fix else self.message


class Refused(OpsError):
    """The guard refused the operation; nothing was touched."""

    outcome: Outcome = "refused"


class Failed(OpsError):
    """The operation ran and failed; the target was left as it was."""

    outcome: Outcome = "failed"
