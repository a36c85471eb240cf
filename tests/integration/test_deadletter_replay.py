"""ops-engine deadletter list|replay against a real worker and broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import orjson

from tests.harness import ROOT, produce_raw, read_topic, wait_for


def cli(broker, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "connectors.cli", "deadletter", *args],
        env={**os.environ, "OPS_BROKER_URL": broker.url, "OPS_EMBEDDED_BROKER": "true", "PYTHONPATH": str(ROOT)},
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def test_list_and_replay_send_the_original_bytes_back(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    worker.wait_ready()
    bad = orjson.dumps({"type": "ORDER_CREATED", "event_id": "e1", "order_id": "o-1", "store_id": "s-1",
                        "occurred_at": "2026-11-24T00:00:00Z"})  # no items, no address: refused
    asyncio.run(produce_raw(broker, "orders.events", [(b"o-1", bad), (b"o-2", b"{not json")]))
    wait_for(lambda: len(asyncio.run(read_topic(broker, "deadletter"))) >= 2, what="dead letters")

    listed = cli(broker, "list")
    assert listed.returncode == 0, listed.stderr
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert sorted(line[2] for line in lines) == ["INVALID_JSON", "SCHEMA_VIOLATION"]
    assert all("not json" not in line[3] for line in lines)  # details, never the values
    place = next(line[0] for line in lines if line[2] == "SCHEMA_VIOLATION")

    assert cli(broker, "replay", "--at", "9:999").returncode != 0  # no such dead letter
    dry = cli(broker, "replay", "--reason", "invalid_json", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would replay") == 1
    done = cli(broker, "replay", "--at", place)
    assert done.returncode == 0, done.stderr
    events = asyncio.run(read_topic(broker, "orders.events"))
    assert [(r.key, r.value) for r in events].count((b"o-1", bad)) == 2  # the original, and the replay
    # Still invalid, so refused again: the replay went through the worker as the original did.
    wait_for(lambda: len(asyncio.run(read_topic(broker, "deadletter"))) >= 3, what="refused again")
