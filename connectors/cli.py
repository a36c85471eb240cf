"""The ``ops-engine`` command line (click, as Faust uses).

Settings come from ``OPS_*`` environment variables (streams/settings.py) and are
validated before any command runs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from typing import IO

import click
import orjson

from streams.settings import Settings, describe


def _settings() -> Settings:
    return Settings.load()


async def ensure_topics(settings: Settings) -> None:
    """Create the engine's topics (idempotent) with the configured partitions."""
    from connectors.broker import create_topics
    from streams import topics

    specs = topics.specs()
    await create_topics(
        settings.bootstrap,
        {spec.name: settings.partitions for spec in specs},
        configs={spec.name: spec.config for spec in specs},
        replication_factor=settings.replication,
    )


def _settings_help() -> str:
    rows = "\n".join(f"  {name:<26} {default:<24} {text}" for name, default, text in describe())
    return f"\b\nSettings (environment):\n{rows}"


@click.group(epilog=_settings_help())
def main() -> None:
    """ops-engine: inventory, pricing and fulfilment stream processors."""


@main.command()
def worker() -> None:
    """Run one worker: agents, tables and the web server (Ctrl-C stops it)."""
    import faust
    import mode.loop

    from streams.bootstrap import bootstrap

    settings = _settings()
    logging.basicConfig(level=settings.log_level.upper())
    asyncio.run(ensure_topics(settings))
    # uvloop: a faster event loop for the worker (about 10 % more events/s here).
    mode.loop.use("uvloop")
    engine = bootstrap(settings)
    runner = faust.Worker(engine.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner logs through a handler on every tick when the
    # level is warning or above; a service has no terminal to spin on.
    runner.spinner = None
    runner.execute_from_commandline()


@main.command()
@click.option("--log", "log_path", type=click.Path(path_type=Path), default=None, help="broker log file")
def broker(log_path: Path | None) -> None:
    """Run the embedded Kafka-compatible broker (Tansu) where OPS_BROKER_URL says."""
    from connectors.broker import EmbeddedBroker

    settings = _settings()
    host, _, port = settings.bootstrap.split(",")[0].rpartition(":")
    embedded = EmbeddedBroker(host=host, port=int(port), log_path=log_path)
    embedded.start()
    click.echo(f"embedded broker pid {embedded.pid} listening on {embedded.bootstrap}", err=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop and embedded.running:
            time.sleep(0.2)
    finally:
        code = embedded.stop()
        click.echo(f"embedded broker stopped (exit {code})", err=True)


@main.command()
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path(".run"), show_default=True)
def up(run_dir: Path) -> None:
    """Start the embedded broker and one worker (what `make run` does); Ctrl-C stops both."""
    import os
    import subprocess

    from connectors.broker import EmbeddedBroker

    settings = _settings()
    run_dir.mkdir(parents=True, exist_ok=True)
    host, _, port = settings.bootstrap.split(",")[0].rpartition(":")
    embedded = EmbeddedBroker(host=host, port=int(port), log_path=run_dir / "broker.log")
    embedded.start()
    click.echo(f"embedded broker pid {embedded.pid} on {embedded.bootstrap} (log {run_dir / 'broker.log'})", err=True)
    env = {
        **os.environ,
        "OPS_EMBEDDED_BROKER": "true",
        "OPS_DATA_DIR": os.environ.get("OPS_DATA_DIR", str(run_dir / "data")),
    }
    with open(run_dir / "worker.log", "ab") as log:
        worker_proc = subprocess.Popen(
            [sys.executable, "-m", "connectors.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        click.echo(
            f"worker pid {worker_proc.pid}, web {settings.web_url} (log {run_dir / 'worker.log'}); "
            f"try: curl {settings.web_url}/health ; ops-engine demo",
            err=True,
        )
        try:
            worker_proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            if worker_proc.poll() is None:
                worker_proc.send_signal(signal.SIGTERM)
                try:
                    worker_proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker_proc.kill()
                    worker_proc.wait()
            embedded.stop()
            click.echo("stopped the worker and the broker", err=True)


@main.command()
@click.argument("topic")
@click.argument("source", type=click.File("rb"), default="-")
def publish(topic: str, source: IO[bytes]) -> None:
    """Validate JSON lines from SOURCE (a file or -) and publish them to TOPIC.

    Each line is one message; on supplier.snapshots a line may be a JSON array
    (a page of one store's snapshots). The key is the one the contract says.
    Nothing is sent if any line is invalid.
    """
    from connectors.publisher import PublishError, prepare, read_lines, send_all

    settings = _settings()
    messages = []
    errors = 0
    for number, line in read_lines(source):
        try:
            messages.append(prepare(topic, line))
        except PublishError as exc:
            errors += 1
            click.echo(f"line {number}: {exc}", err=True)
    if errors:
        raise click.ClickException(f"{errors} invalid line(s); nothing published")
    asyncio.run(ensure_topics(settings))
    sent = asyncio.run(send_all(settings, topic, messages))
    click.echo(f"published {sent} message(s) to {topic}", err=True)


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=None, help="write one <topic>.json per topic here")
def schema(out: Path | None) -> None:
    """Print the JSON Schema of every event of the contract."""
    from models.schema import contract_schemas

    schemas = contract_schemas()
    if out is None:
        click.echo(orjson.dumps(schemas, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
        return
    out.mkdir(parents=True, exist_ok=True)
    for topic, body in schemas.items():
        (out / f"{topic}.json").write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    click.echo(f"wrote {len(schemas)} schemas to {out}", err=True)


@main.command()
@click.option("--stores", default=3, show_default=True, help="stores in the sample catalogue")
@click.option("--products", default=6, show_default=True, help="products per store")
@click.option("--changes", default=40, show_default=True, help="stock and price changes to stream")
@click.option("--interval", default=0.25, show_default=True, help="seconds between changes")
@click.option("--seed", default=None, type=int, help="random seed (default: a new run each time)")
def demo(stores: int, products: int, changes: int, interval: float, seed: int | None) -> None:
    """Publish a sample catalogue, then stream changes and print the alerts as they arrive.

    Needs a running worker (make run starts one).
    """
    from connectors.demo import run_demo

    settings = _settings()
    asyncio.run(ensure_topics(settings))
    try:
        asyncio.run(run_demo(settings, stores, products, changes, interval, seed, out=sys.stdout))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":  # pragma: no cover
    main()
