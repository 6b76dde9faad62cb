"""The store: tables, access and migrations."""
