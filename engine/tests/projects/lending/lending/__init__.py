"""lending: a small library (members, books, loans), the engine tests' second fixture app."""
