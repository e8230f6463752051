"""The engine tests' fixture app, and where the template repository itself is."""

from __future__ import annotations

import sys
from pathlib import Path

from dbguard.project import load_project

ENGINE_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_ROOT = ENGINE_ROOT.parent  # the template repository (its example app, README, CI)
PROJECTS = ENGINE_ROOT / "tests" / "projects"
FIXTURE_ROOT = PROJECTS / "taskboard"  # the engine's own fixture app; never the template's example
SHAPES_ROOT = PROJECTS / "shapes"  # the recipe manager: uuid keys, a cycle, partitions, a second schema, ...
PROJECT = load_project(FIXTURE_ROOT)

if str(FIXTURE_ROOT) not in sys.path:  # its models and seed modules are imported by the tests
    sys.path.insert(0, str(FIXTURE_ROOT))
