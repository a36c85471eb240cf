"""PostgreSQL: the local server, the migration runner and the supplier_orders key.

Real servers only: the session's ``postgres`` fixture, plus one private server
for the restart test (it stops and starts its own).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from connectors.postgres.migrate import MigrationError, discover, migrate
from connectors.postgres.server import LocalPostgres, PostgresStartError

#: Every version in migrations/, in order (later files join without editing this test).
ALL_VERSIONS = [m.version for m in discover()]

SUPPLIER_ORDER_COLUMNS = {
    "idempotency_key",
    "order_id",
    "store_id",
    "group_id",
    "provider",
    "reference",
    "status",
    "supplier_order_id",
    "attempts",
    "last_error",
    "tracking_number",
    "carrier",
    "tracking_url",
    "tracking_checked_at",
    "created_at",
    "updated_at",
    "delivered_at",
}

INSERT_ORDER = """
INSERT INTO supplier_orders (idempotency_key, order_id, store_id, group_id, provider, reference, status)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (idempotency_key) DO NOTHING
"""


@contextmanager
def empty_database(postgres: LocalPostgres) -> Iterator[str]:
    """A database with no migration applied (``pg_dsn`` gives a migrated one)."""
    name = f"test_{uuid.uuid4().hex}"
    postgres.create_database(name)
    try:
        yield postgres.dsn_for(name)
    finally:
        postgres.drop_database(name)


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def test_the_first_migration_is_supplier_orders() -> None:
    assert ALL_VERSIONS[0] == "001_supplier_orders"


def test_migrations_apply(pg_dsn: str) -> None:
    async def check() -> None:
        rows = await _fetch(pg_dsn, "SELECT version, applied_at FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == ALL_VERSIONS
        assert all(r["applied_at"] is not None for r in rows)

        columns = await _fetch(
            pg_dsn, "SELECT column_name FROM information_schema.columns WHERE table_name = 'supplier_orders'"
        )
        assert {r["column_name"] for r in columns} == SUPPLIER_ORDER_COLUMNS

        index_rows = await _fetch(
            pg_dsn, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'supplier_orders'"
        )
        indexes = {r["indexname"]: r["indexdef"] for r in index_rows}
        assert set(indexes) == {
            "supplier_orders_pkey", "supplier_orders_order", "supplier_orders_tracking_due", "supplier_orders_cancelling"
        }
        assert "(idempotency_key)" in indexes["supplier_orders_pkey"]
        assert "WHERE" in indexes["supplier_orders_tracking_due"]
        assert "CANCELLING" in indexes["supplier_orders_cancelling"]

        # Nothing left to do: a second run applies nothing.
        assert await migrate(pg_dsn) == []

    asyncio.run(check())


def test_concurrent_migrations_apply_each_file_once(postgres: LocalPostgres) -> None:
    """Two runners at once (two workers starting): the advisory lock makes them take turns."""
    with empty_database(postgres) as dsn:

        async def run_two() -> list[list[str]]:
            return list(await asyncio.gather(migrate(dsn), migrate(dsn)))

        first, second = asyncio.run(run_two())
        assert sorted([first, second], key=len) == [[], ALL_VERSIONS]

        rows = asyncio.run(_fetch(dsn, "SELECT version FROM schema_migrations ORDER BY version"))
        assert [r["version"] for r in rows] == ALL_VERSIONS
        assert asyncio.run(migrate(dsn)) == []


def test_a_failing_migration_leaves_nothing_and_runs_again(postgres: LocalPostgres, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "001_a.sql").write_text("CREATE TABLE a (id int PRIMARY KEY);")
    (migrations / "002_b.sql").write_text("CREATE TABLE b (id int); SELECT 1 / 0;")
    (migrations / "010_c.sql").write_text("CREATE TABLE c (id int);")

    with empty_database(postgres) as dsn:
        with pytest.raises(MigrationError, match="002_b"):
            asyncio.run(migrate(dsn, migrations))

        async def state() -> tuple[list[str], list[str]]:
            versions = await _fetch(dsn, "SELECT version FROM schema_migrations ORDER BY version")
            tables = await _fetch(
                dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('a', 'b', 'c')"
            )
            return [r["version"] for r in versions], sorted(r["tablename"] for r in tables)

        # 001 stays applied; 002's table went with its transaction; 010 never ran.
        assert asyncio.run(state()) == (["001_a"], ["a"])

        (migrations / "002_b.sql").write_text("CREATE TABLE b (id int);")
        assert asyncio.run(migrate(dsn, migrations)) == ["002_b", "010_c"]
        assert asyncio.run(state()) == (["001_a", "002_b", "010_c"], ["a", "b", "c"])


def test_discover_refuses_ambiguous_files(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("")
    (tmp_path / "001_b.sql").write_text("")
    with pytest.raises(MigrationError, match="same number 001"):
        discover(tmp_path)
    (tmp_path / "001_b.sql").unlink()
    (tmp_path / "2_b.sql").write_text("")
    with pytest.raises(MigrationError, match="NNN_name.sql"):
        discover(tmp_path)


def test_the_idempotency_key_makes_a_replay_a_no_op(pg_dsn: str) -> None:
    async def check() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            key = "order-1|group-1|attempt-key"
            first = await conn.execute(INSERT_ORDER, key, "order-1", "store-1", "group-1", "acme", "ref-1", "CLAIMED")
            # The replay carries other values; the stored row must not change.
            second = await conn.execute(INSERT_ORDER, key, "order-1", "store-1", "group-1", "acme", "ref-2", "PLACED")
            assert (first, second) == ("INSERT 0 1", "INSERT 0 0")

            rows = await conn.fetch("SELECT reference, status, attempts FROM supplier_orders")
            assert [dict(r) for r in rows] == [{"reference": "ref-1", "status": "CLAIMED", "attempts": 0}]

            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(INSERT_ORDER, "other", "o", "s", "g", "acme", "r", "SHIPPED")
        finally:
            await conn.close()

    asyncio.run(check())


def test_local_postgres_restarts_on_its_data_dir(tmp_path: Path) -> None:
    """Stop and start again (on another port): the cluster and its rows are still there."""
    data_dir = tmp_path / "pg"
    first = LocalPostgres(data_dir)
    first.start()
    try:
        assert first.dsn == f"postgresql://postgres@127.0.0.1:{first.port}/ops"
        assert asyncio.run(migrate(first.dsn)) == ALL_VERSIONS

        async def insert() -> None:
            conn = await asyncpg.connect(first.dsn)
            try:
                await conn.execute(INSERT_ORDER, "k1", "order-1", "store-1", "group-1", "acme", "ref-1", "PLACED")
            finally:
                await conn.close()

        asyncio.run(insert())

        # A second server on a running cluster is refused, not started beside it.
        with pytest.raises(PostgresStartError, match="already runs"):
            LocalPostgres(data_dir).start()
    finally:
        first.stop()
    assert not first.running
    first.stop()  # idempotent

    second = LocalPostgres(data_dir)  # a new free port: the data dir is what carries over
    second.start()
    try:
        assert asyncio.run(migrate(second.dsn)) == []
        rows = asyncio.run(_fetch(second.dsn, "SELECT idempotency_key, status FROM supplier_orders"))
        assert [tuple(r) for r in rows] == [("k1", "PLACED")]

        # Loopback only, the socket inside the data dir (this path is short enough for one).
        (config,) = asyncio.run(
            _fetch(
                second.dsn,
                "SELECT current_setting('listen_addresses') AS listen, current_setting('port') AS port,"
                " current_setting('unix_socket_directories') AS sockets",
            )
        )
        assert (config["listen"], config["port"]) == ("127.0.0.1", str(second.port))
        assert Path(config["sockets"]) == data_dir.absolute()
    finally:
        second.stop()
    assert not second.running
