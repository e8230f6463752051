"""The example app (a small task manager) and the guarded database tooling in `app.ops`."""
