"""Real parts for the integration tests and benchmarks: broker, workers, topics.

Everything here starts real processes on loopback (the embedded broker, the
``ops-engine worker`` command) and stops them by PID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from connectors.broker import EmbeddedBroker, free_port
from streams.embedded import install_end_offset_fix

ROOT = Path(__file__).resolve().parents[1]

# Reading a topic "to its end" needs the real end offsets (embedded broker quirk).
install_end_offset_fix()


class Worker:
    """One ``ops-engine worker`` process with its own web port and data dir
    (or another long-running ``ops-engine`` command: ``command="executor"``)."""

    def __init__(
        self, broker: EmbeddedBroker, workdir: Path, name: str = "w1", command: str = "worker", **env: str
    ) -> None:
        self.broker = broker
        self.name = name
        self.command = command
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.env = {
            **os.environ,
            "OPS_BROKER_URL": broker.url,
            "OPS_EMBEDDED_BROKER": "true",
            "OPS_WEB_PORT": str(self.port),
            "OPS_DATA_DIR": str(workdir / f"{name}-data"),
            "OPS_LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Worker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connectors.cli", self.command],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        log.close()
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"{self.url}/health", timeout=1.0)
            return dict(response.json())
        except (httpx.HTTPError, ValueError):
            return None

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Seconds until /health says ready (group joined, tables recovered)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited {self.proc.returncode}:\n{self.log_tail()}")
            body = self.health()
            if body and body.get("ready"):
                return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"worker {self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        return self.kill(signal.SIGTERM)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, timeout=15.0)

    def post(self, path: str) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", timeout=15.0)


def cli_publish(broker: EmbeddedBroker, topic: str, lines: Iterable[Any]) -> subprocess.CompletedProcess[bytes]:
    """Publish JSON lines with ``ops-engine publish`` (the upstream producers' way)."""
    payload = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    return subprocess.run(
        [sys.executable, "-m", "connectors.cli", "publish", topic, "-"],
        input=payload,
        env={**os.environ, "OPS_BROKER_URL": broker.url, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )


async def produce_raw(
    broker: EmbeddedBroker, topic: str, records: Iterable[tuple[bytes | None, bytes]], linger_ms: int = 20
) -> int:
    """Produce raw records, many per batch (linger), as a busy producer would."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=linger_ms)
    await producer.start()
    count = 0
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, key=key, value=value))
            count += 1
        for fut in futures:
            await fut
    finally:
        await producer.stop()
    return count


async def read_topic(broker: EmbeddedBroker, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every record of ``topic`` from the start to its real end, in partition order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout
        while not partitions and time.monotonic() < deadline:
            await consumer.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await asyncio.sleep(0.2)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, recs in batch.items():
                records.extend(recs)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        if remaining:
            raise TimeoutError(f"could not read {topic} to its end: {remaining}")
        return records
    finally:
        await consumer.stop()


def read_json(broker: EmbeddedBroker, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in asyncio.run(read_topic(broker, topic))]


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})"[:2000])
