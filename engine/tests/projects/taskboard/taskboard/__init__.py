"""taskboard: the engine tests' fixture app (users, projects, tasks, comments)."""
