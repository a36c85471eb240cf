"""Fixtures that start real processes: the embedded broker, engine workers, PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.broker import EmbeddedBroker
from connectors.postgres.migrate import migrate
from connectors.postgres.server import LocalPostgres
from tests.harness import Worker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh embedded broker per test (it keeps everything, so no sharing)."""
    embedded = EmbeddedBroker(log_path=tmp_path / "broker.log")
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def workers(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[list[Worker]]:
    """Workers started by the test through ``spawn``; all stopped at the end."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()


@pytest.fixture
def spawn(broker: EmbeddedBroker, tmp_path: Path, workers: list[Worker]):  # type: ignore[no-untyped-def]
    def _spawn(name: str = "w1", **env: str) -> Worker:
        worker = Worker(broker, tmp_path, name=name, **env).start()
        workers.append(worker)
        return worker

    return _spawn


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """One PostgreSQL server for the whole session (initdb and start take seconds).

    Tests share the server, never a database: each takes its own (``pg_dsn``).
    Its data lives outside pytest's temporary folders: pytest removes all but
    the newest three of those when a session starts, so a second pytest run on
    the machine could delete a running server's data.
    """
    base = Path(tempfile.mkdtemp(prefix="ops-engine-pg-"))
    server = LocalPostgres(base / "data", log_path=base / "postgres.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_dsn(postgres: LocalPostgres) -> Iterator[str]:
    """DSN of a fresh database with every migration applied, dropped after the test."""
    name = f"test_{uuid.uuid4().hex}"
    postgres.create_database(name)
    try:
        dsn = postgres.dsn_for(name)
        asyncio.run(migrate(dsn))
        yield dsn
    finally:
        postgres.drop_database(name)
