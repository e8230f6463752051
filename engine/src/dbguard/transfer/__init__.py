"""Moving data between databases on purpose: one user's slice (db.export-user, db.import-user) and an
app's SQLite file (db.import-sqlite). Every database is reached through the guard's clearance."""
