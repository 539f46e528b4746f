"""The SQLite store: one connection, numbered migrations, and the repositories."""
