"""Numbered upgrades of the on-disk store format (`sime-data migrate`)."""

from .runner import MIGRATIONS, Migration, latest_version, migrate, pending_migrations

__all__ = ["MIGRATIONS", "Migration", "latest_version", "migrate", "pending_migrations"]
