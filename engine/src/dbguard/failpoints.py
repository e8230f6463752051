"""Failpoints: named places where a test can freeze a run and kill it, to prove atomicity.

Inert unless DB_TOOLS_FAILPOINT names the point (environment only). Then the run writes
DB_TOOLS_FAILPOINT_FILE (so the test knows it arrived) and waits to be killed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def failpoint(name: str) -> None:
    if os.environ.get("DB_TOOLS_FAILPOINT") != name:
        return
    marker = os.environ.get("DB_TOOLS_FAILPOINT_FILE")
    if marker:
        Path(marker).write_text(f"{os.getpid()}\n")
    while True:  # the test kills us here
        time.sleep(0.05)
