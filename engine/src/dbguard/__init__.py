"""dbguard: guarded INT / STG / PROD database tasks. The engine never imports the app.

The app declares its parts in `[tool.dbguard]` (see dbguard.project); tasks reach a database only
through the guard (dbguard.guard.door). docs/architecture.md has the map.
"""

__version__ = "0.2.0"
