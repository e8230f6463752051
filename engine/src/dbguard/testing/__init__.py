"""Test helpers for apps: the pytest plugin (dbguard.testing.plugin)."""
