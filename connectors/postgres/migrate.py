"""Schema migrations: numbered SQL files applied in order, each once.

``connectors/postgres/migrations/NNN_name.sql`` (three digits, then a name);
the file's stem (``001_supplier_orders``) is its version in
``schema_migrations``. Files are never edited once applied: a change is a new
file with the next number.

Each file runs in its own transaction together with its row in
``schema_migrations``, so a failing file leaves nothing behind and is tried
again next time. The whole run holds a session advisory lock, so two
processes migrating the same database at once (two workers starting, a
worker and ``ops-engine db migrate``) take turns: the second finds the work
done and applies nothing. The lock is per database (PostgreSQL keys advisory
locks by database), so separate test databases do not wait on each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

__all__ = ["MIGRATIONS_DIR", "Migration", "MigrationError", "discover", "migrate"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: pg_advisory_lock key of the migration runner: any fixed bigint, this one spells "opsmigr".
LOCK_KEY = int.from_bytes(b"opsmigr", "big")

_FILE = re.compile(r"^(?P<number>\d{3})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The migrations directory is inconsistent, or a migration failed."""


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations of ``directory`` in order of their number.

    A ``.sql`` file with another name, or two files with one number (two
    branches each adding "the next" migration), is an error rather than a
    guess about the order.
    """
    found: dict[str, Migration] = {}
    for path in sorted(Path(directory).glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNN_name.sql (e.g. 002_notifications.sql)")
        number = match.group("number")
        if number in found:
            raise MigrationError(f"{path} and {found[number].path} have the same number {number}")
        found[number] = Migration(version=path.stem, path=path)
    return [found[number] for number in sorted(found)]


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations ``dsn`` has not seen yet; return their versions in order.

    Idempotent: a second run (or a concurrent one, once it gets the lock)
    returns ``[]``.
    """
    migrations = discover(directory)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            applied: list[str] = []
            for migration in migrations:
                if migration.version in done:
                    continue
                try:
                    async with conn.transaction():
                        # No arguments: the simple protocol, so one file may hold many statements.
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
                            migration.version,
                        )
                except asyncpg.PostgresError as exc:
                    raise MigrationError(f"migration {migration.version} failed: {exc}") from exc
                applied.append(migration.version)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()
