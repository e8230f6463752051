"""Database roles from the ownership matrix (dbguard.ownership): one group role per component, a migrator.

- `names`: the role names (`<app>_<tier>_migrator`, `<app>_<tier>_<component>`, `<app>_<tier>_<component>_login`);
- `state`: what the database's catalog says now (roles, owners, grants, default privileges, policies);
- `plan`: the matrix as the state it asks for, and the difference as changes, each with its SQL;
- `apply`: db.roles (show the difference, back up the role and grant state, apply only the difference)
  and the re-application a reset, restore or refresh makes before it swaps a database in;
- `drift`: the doctor's checks (drift from the matrix; a component role that owns or may create objects);
- `passwords` and `urls`: each component's login password from the tier's secret source, and its URL.
"""

from __future__ import annotations

from dbguard.roles.urls import component_url

__all__ = ["component_url"]
