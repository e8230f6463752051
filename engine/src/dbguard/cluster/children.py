"""Child processes that die with us: a killed task never leaves a pg_dump or pg_restore running on."""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when its parent dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None

    def _set() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return _set
