"""`invoke ...` as a user runs it, optionally with one STG cell of the policy table without its undo point.

The benchmarks run both sides of a comparison through this same entry point, so process start-up,
imports and the guard cost the same on each side:

    python -m bench.invoke_with db.reset --env stg
    python -m bench.invoke_with --no-safety-copy reset db.reset --env stg   # STG's reset as INT's: in place

`--no-safety-copy OPERATION` clears `backup_first` in STG's cell of OPERATION, so the task keeps no undo
point: what "the same reset (restore) without a safety copy" means in the benchmark. Never for real use.
"""

from __future__ import annotations

import dataclasses
import sys

from dbguard.guard.policy import POLICY
from dbguard.guard.tiers import Tier
from invoke.main import program


def main(argv: list[str]) -> None:
    if argv[:1] == ["--no-safety-copy"]:
        operation, argv = argv[1], argv[2:]
        POLICY[operation][Tier.STG] = dataclasses.replace(POLICY[operation][Tier.STG], backup_first=False)
    program.run(["invoke", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
