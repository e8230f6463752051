"""The example app: a small task manager (users, projects, tasks, comments)."""
