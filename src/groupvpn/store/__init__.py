"""Persistence of the key server's state (SQLite, stdlib): see ``store.server_store``."""
