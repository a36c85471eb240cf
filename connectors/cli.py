"""The ``ops-engine`` command line (click, as Faust uses).

Settings come from ``OPS_*`` environment variables (streams/settings.py) and are
validated before any command runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
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


#: Port of the PostgreSQL server `up` starts (not 5432: a system cluster may hold that one).
LOCAL_POSTGRES_PORT = 5433


def _wait_for_signal(alive: Callable[[], bool]) -> None:
    """Block until SIGTERM or SIGINT arrives, or ``alive()`` turns false."""
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop and alive():
        time.sleep(0.2)


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _migrate(database_url: str) -> list[str]:
    """Apply the pending migrations, or stop the command with the reason."""
    import asyncpg

    from connectors.postgres.migrate import MigrationError, migrate

    try:
        return asyncio.run(migrate(database_url))
    except (MigrationError, OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise click.ClickException(f"migrating the database failed: {exc}") from exc


def _serve_metrics(process: str, port: int, host: str) -> None:
    """Serve this process's Prometheus metrics at http://HOST:PORT/metrics (port 0: none)."""
    if not port:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        click.echo(f"{process} metrics not served on port {port}: {exc}", err=True)

async def _until_stopped(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """``run(stop)`` with ``stop`` set by SIGTERM or Ctrl-C: how each engine process outside the workers runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run(stop)


def _serve(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run an engine process outside the workers until SIGTERM or Ctrl-C, on uvloop.

    uvloop, as the workers: these processes are mostly socket I/O (HTTP calls,
    Kafka, PostgreSQL), where asyncio's own loop costs most. Measured on the
    syncer's supplier fetches (bench/sync.py) and the executor's socket writes.
    """
    import uvloop

    uvloop.run(_until_stopped(run))



@click.group(epilog=_settings_help())
def main() -> None:
    """ops-engine: inventory, pricing and fulfilment stream processors."""


def tune_gc(thresholds: tuple[int, ...]) -> None:
    """Fewer, later collections of the cyclic garbage collector.

    Measured under 50 concurrent webhooks, a worker stopped for 80-240 ms every
    2-3 s in CPython's full collections (py-spy --native: gc_collect_main),
    which made the ingress's p99. What start-up made (modules, the app, its
    tables' structures) is frozen out of every collection, and the younger
    generations are collected less often. Reference counting still frees
    almost everything at once; only cycles wait longer.
    """
    import gc

    gc.collect()
    gc.freeze()
    if thresholds:
        gc.set_threshold(*thresholds)


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
    tune_gc(settings.gc_thresholds)
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
    try:
        _wait_for_signal(lambda: embedded.running)
    finally:
        code = embedded.stop()
        click.echo(f"embedded broker stopped (exit {code})", err=True)


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path(".run/postgres"),
    show_default=True,
    help="cluster directory (initdb on first use)",
)
@click.option("--port", type=int, default=LOCAL_POSTGRES_PORT, show_default=True, help="port on 127.0.0.1")
def postgres(data_dir: Path, port: int) -> None:
    """Run a local PostgreSQL server (127.0.0.1, trust) until SIGTERM or Ctrl-C."""
    from connectors.postgres.server import LocalPostgres, PostgresError

    server = LocalPostgres(data_dir, port=port)
    try:
        server.start()
    except PostgresError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"postgres pid {server.pid} on {server.dsn} (log {server.log_path}); "
        f"OPS_DATABASE_URL={server.dsn} ops-engine db migrate",
        err=True,
    )
    try:
        _wait_for_signal(lambda: server.running)
    finally:
        server.stop()
        click.echo("postgres stopped", err=True)


@main.group()
def db() -> None:
    """The PostgreSQL database at OPS_DATABASE_URL."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply the pending schema migrations (connectors/postgres/migrations) and print them."""
    settings = _settings()
    if not settings.database_url:
        raise click.ClickException(
            "OPS_DATABASE_URL is not set (e.g. postgresql://postgres@127.0.0.1:5433/ops; "
            "`ops-engine postgres` runs a local server there)"
        )
    applied = _migrate(settings.database_url)
    for version in applied:
        click.echo(version)
    click.echo(f"applied {len(applied)} migration(s)" if applied else "the schema is up to date", err=True)


@main.command()
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path(".run"), show_default=True)
def up(run_dir: Path) -> None:
    """Start PostgreSQL, the embedded broker, a worker, the executor, the recorder, the renderer,
    the syncer (the notifier when OPS_SMTP_HOST is set, the storefront push when storefront
    accounts are): what `make run` does. Ctrl-C stops them all.

    With OPS_DATABASE_URL set, that database is migrated and used and no local
    server starts; unset, a local one runs in RUN_DIR/postgres.
    """
    import os
    import subprocess

    from connectors.broker import EmbeddedBroker, free_port
    from connectors.postgres.server import LocalPostgres, PostgresError, port_in_use

    settings = _settings()
    run_dir.mkdir(parents=True, exist_ok=True)
    # SIGTERM as Ctrl-C: PostgreSQL and the broker run detached, so only this
    # process can stop them; a plain SIGTERM death would leave them behind.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    local = settings.database_url is None
    with contextlib.ExitStack() as cleanup:
        database_url = settings.database_url
        if database_url is None:
            port = LOCAL_POSTGRES_PORT
            if port_in_use("127.0.0.1", port):
                port = free_port()
                click.echo(f"port {LOCAL_POSTGRES_PORT} is taken; local postgres on {port} instead", err=True)
            server = LocalPostgres(run_dir / "postgres", port=port)
            try:
                server.start()
            except PostgresError as exc:
                raise click.ClickException(str(exc)) from exc
            cleanup.callback(server.stop)
            database_url = server.dsn
            click.echo(f"postgres pid {server.pid} on {database_url} (log {server.log_path})", err=True)
        applied = _migrate(database_url)
        click.echo(f"migrations applied: {', '.join(applied) or 'none (up to date)'}", err=True)

        host, _, broker_port = settings.bootstrap.split(",")[0].rpartition(":")
        embedded = EmbeddedBroker(host=host, port=int(broker_port), log_path=run_dir / "broker.log")
        embedded.start()
        cleanup.callback(embedded.stop)
        click.echo(
            f"embedded broker pid {embedded.pid} on {embedded.bootstrap} (log {run_dir / 'broker.log'})", err=True
        )
        env = {
            **os.environ,
            "OPS_EMBEDDED_BROKER": "true",
            "OPS_DATA_DIR": os.environ.get("OPS_DATA_DIR", str(run_dir / "data")),
            "OPS_DATABASE_URL": database_url,
            "OPS_RENDER_OUTPUT_DIR": os.environ.get("OPS_RENDER_OUTPUT_DIR", str(run_dir / "videos")),
            "OPS_RENDER_WORK_DIR": os.environ.get("OPS_RENDER_WORK_DIR", str(run_dir / "render-work")),
        }
        def child(name: str) -> subprocess.Popen[bytes]:
            """Start ``ops-engine NAME`` with its log in RUN_DIR; stopped (SIGTERM) on the way out."""
            with open(run_dir / f"{name}.log", "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "connectors.cli", name], env=env, stdout=log, stderr=subprocess.STDOUT
                )

            def stop() -> None:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()

            cleanup.callback(stop)
            click.echo(f"{name} pid {proc.pid} (log {run_dir / f'{name}.log'})", err=True)
            return proc

        children = {
            "worker": child("worker"), "executor": child("executor"), "recorder": child("recorder"),
            "renderer": child("renderer"), "syncer": child("syncer"),
        }
        if os.environ.get("OPS_SMTP_HOST"):
            children["notifier"] = child("notifier")
        else:
            click.echo("notifier not started: set OPS_SMTP_HOST (and OPS_SMTP_FROM) to send e-mail", err=True)
        if os.environ.get("OPS_STOREFRONT_ACCOUNTS") or os.environ.get("OPS_STOREFRONT_SECRETS_FILE"):
            children["storefront"] = child("storefront")
        else:
            click.echo("storefront not started: set OPS_STOREFRONT_ACCOUNTS or OPS_STOREFRONT_SECRETS_FILE "
                       "to push stock, prices and tracking to the stores", err=True)
        click.echo(f"web {settings.web_url}; try: curl {settings.web_url}/health ; ops-engine demo", err=True)
        try:
            while all(proc.poll() is None for proc in children.values()):
                time.sleep(0.5)
            for name, proc in children.items():
                if proc.poll() is not None:
                    click.echo(f"{name} exited with {proc.returncode}; stopping everything", err=True)
        except KeyboardInterrupt:
            pass
    # Leaving the ExitStack stopped the broker, then the local PostgreSQL if one started.
    click.echo(f"stopped the engine{', the broker and postgres' if local else ' and the broker'}", err=True)


@main.group()
def deadletter() -> None:
    """The records the engine refused: list them, replay them once the cause is fixed."""


@deadletter.command("list")
@click.option("--reason", default=None, help="only this reason (e.g. UNMAPPABLE)")
@click.option("--topic", default=None, help="only records refused from this topic")
def deadletter_list(reason: str | None, topic: str | None) -> None:
    """Print each dead letter's place (partition:offset), origin, reason and detail (never its value)."""
    from connectors.deadletter import read_all, select

    stored = select(asyncio.run(read_all(_settings())), reason=reason, topic=topic)
    for s in stored:
        letter = s.letter
        click.echo(
            f"{s.at}\t{letter.topic}[{letter.partition}]@{letter.offset}\t{letter.reason.value}\t"
            f"{letter.detail[:200].replace(chr(10), ' ')}"
        )
    click.echo(f"{len(stored)} dead letter(s)", err=True)


@deadletter.command("replay")
@click.option("--at", "places", multiple=True, help="PARTITION:OFFSET of a dead letter (repeatable)")
@click.option("--reason", default=None, help="every dead letter of this reason")
@click.option("--topic", default=None, help="every dead letter refused from this topic")
@click.option("--dry-run", is_flag=True, help="say what would be sent, send nothing")
def deadletter_replay(places: tuple[str, ...], reason: str | None, topic: str | None, dry_run: bool) -> None:
    """Send chosen dead letters again to their original topic, byte for byte (downstream dedupes)."""
    from connectors.deadletter import read_all, replay, select

    if not (places or reason or topic):
        raise click.UsageError("choose records with --at, --reason or --topic")
    settings = _settings()
    chosen = select(asyncio.run(read_all(settings)), at=places, reason=reason, topic=topic)
    missing = set(places) - {s.at for s in chosen}
    if missing:
        raise click.ClickException(f"no dead letter at {', '.join(sorted(missing))}")
    if dry_run:
        for s in chosen:
            click.echo(f"would replay {s.at} -> {s.letter.topic}")
        return
    sent = asyncio.run(replay(settings, chosen))
    click.echo(f"replayed {sent} record(s)", err=True)


@main.command()
def executor() -> None:
    """Carry out supplier order commands (orders.commands) until SIGTERM or Ctrl-C.

    Places each supplier order at most once per idempotency key (recorded in
    OPS_DATABASE_URL), publishes the outcome on orders.events, and polls
    suppliers for tracking. Supplier accounts: OPS_ALIEXPRESS_*, OPS_CJ_*,
    OPS_SPOCKET_* or OPS_SUPPLIER_SECRETS_FILE.
    """
    from connectors.fulfillment.runner import run_executor
    from connectors.suppliers.registry import SupplierAccounts, build_clients

    settings = _settings()
    logging.basicConfig(level=settings.log_level.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    if not settings.database_url:
        raise click.ClickException("OPS_DATABASE_URL is not set: the executor records each supplier order there")
    clients = build_clients(SupplierAccounts.load())
    _serve_metrics("executor", settings.executor_metrics_port, settings.web_host)
    asyncio.run(ensure_topics(settings))

    _serve(lambda stop: run_executor(settings, clients, stop))


@main.command()
def renderer() -> None:
    """Render videos (video.renders) with ffmpeg until SIGTERM or Ctrl-C.

    Publishes each render's progress and outcome on video.events; files go to
    OPS_RENDER_OUTPUT_DIR, served at OPS_RENDER_PUBLIC_URL (default: the
    worker's /video-files). OPS_RENDER_* and OPS_ELEVENLABS_* settings:
    connectors/render/settings.py.
    """
    from connectors.render.runner import run_renderer
    from connectors.render.settings import RenderSettings

    settings = _settings()
    render_settings = RenderSettings.load()
    logging.basicConfig(level=settings.log_level.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    _serve_metrics("renderer", render_settings.render_metrics_port, settings.web_host)
    asyncio.run(ensure_topics(settings))

    _serve(lambda stop: run_renderer(settings, render_settings, stop))


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


@main.command()
def notifier() -> None:
    """Send notifications and alert digests by e-mail until SIGTERM or Ctrl-C.

    Consumes notifications, alerts and store.settings (group APP_ID-notifier);
    each notification is sent at most once, recorded in the database at
    OPS_DATABASE_URL (migrated at start). SMTP: OPS_SMTP_HOST, OPS_SMTP_PORT,
    OPS_SMTP_USERNAME, OPS_SMTP_PASSWORD, OPS_SMTP_STARTTLS, OPS_SMTP_FROM;
    OPS_ADMIN_EMAIL, OPS_DIGEST_WINDOW_S (connectors/notify/settings.py).
    """
    from connectors.notify.consumer import run_notifier
    from connectors.notify.settings import NotifySettings

    settings = _settings()
    notify_settings = NotifySettings.load()
    if not settings.database_url:
        raise click.ClickException(
            "OPS_DATABASE_URL is not set: the notifier records what it sent there (at most once per notification)"
        )
    logging.basicConfig(level=settings.log_level.upper())
    _migrate(settings.database_url)
    _serve_metrics("notifier", settings.notifier_metrics_port, settings.web_host)
    asyncio.run(ensure_topics(settings))

    _serve(lambda stop: run_notifier(settings, notify_settings, stop))


@main.command()
def recorder() -> None:
    """Record the topics in PostgreSQL (products, alerts, orders, order history, webhooks)
    until SIGTERM or Ctrl-C: batches upserted, offsets committed after the write.

    Needs OPS_DATABASE_URL (migrated at start); /metrics on OPS_RECORDER_METRICS_PORT.
    """
    from connectors.broker import create_topics
    from connectors.postgres.record import changelog_topic
    from connectors.postgres.recorder import run_recorder
    from streams import tables

    settings = _settings()
    if not settings.database_url:
        raise click.ClickException("OPS_DATABASE_URL is not set: the recorder writes there")
    logging.basicConfig(level=settings.log_level.upper())
    _migrate(settings.database_url)
    asyncio.run(ensure_topics(settings))
    # The orders changelog is Faust's; made here too (as Faust makes it) so the recorder need not wait for a worker.
    orders_changelog = changelog_topic(settings.app_id, tables.ORDERS)
    asyncio.run(create_topics(
        settings.bootstrap, {orders_changelog: settings.partitions},
        configs={orders_changelog: {"cleanup.policy": "compact"}}, replication_factor=settings.replication,
    ))
    _serve_metrics("recorder", settings.recorder_metrics_port, settings.web_host)

    _serve(lambda stop: run_recorder(settings, stop))


@main.command()
def syncer() -> None:
    """Fetch the pages of supplier sync runs (sync.jobs) until SIGTERM or Ctrl-C.

    Publishes each page's snapshots on supplier.snapshots and its outcome on
    sync.progress, then commits. Supplier accounts as for the executor:
    OPS_ALIEXPRESS_*, OPS_CJ_*, OPS_SPOCKET_* or OPS_SUPPLIER_SECRETS_FILE;
    /metrics on OPS_SYNCER_METRICS_PORT. AliExpress and CJ freight quotes are
    kept in OPS_DATABASE_URL when it is set (migrated at start), else in memory.
    """
    from connectors.suppliers.registry import SupplierAccounts, build_catalogs
    from connectors.sync.runner import run_syncer

    settings = _settings()
    logging.basicConfig(level=settings.log_level.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    catalogs = build_catalogs(SupplierAccounts.load())
    if settings.database_url and settings.freight_lookups_per_page:
        _migrate(settings.database_url)
    _serve_metrics("syncer", settings.syncer_metrics_port, settings.web_host)
    asyncio.run(ensure_topics(settings))

    _serve(lambda stop: run_syncer(settings, catalogs, stop))


def progress_bar(run: dict[str, object], width: int = 30) -> str:
    """``[#####.....]  50/100  50.0%  RUNNING  3 failed, 7 changed`` for a run of GET /stores/{id}/sync."""
    total = int(run.get("total") or 0)  # type: ignore[call-overload]
    done = int(run.get("done") or 0)  # type: ignore[call-overload]
    filled = width if total == 0 else min(width, width * done // total)
    percent = 100.0 if total == 0 else 100.0 * done / total
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {percent:5.1f}% {run.get('status')} "
        f" {run.get('failed', 0)} failed, {run.get('changed', 0)} changed"
    )


@main.command()
@click.argument("store_id")
@click.option("--url", default=None, help="a worker's web URL (default: OPS_WEB_PORT on this host)")
@click.option("--timeout", default=3600.0, show_default=True, help="give up waiting after this many seconds")
def sync(store_id: str, url: str | None, timeout: float) -> None:
    """Sync STORE_ID now: request a run and show its progress until it ends.

    Exit code 0 when the run COMPLETED, 1 when it FAILED (or was refused: a run
    is RUNNING), 2 when the engine could not be asked.
    """
    import httpx

    base = (url or _settings().web_url).rstrip("/")
    try:
        response = httpx.post(f"{base}/stores/{store_id}/sync", timeout=30.0)
    except httpx.HTTPError as exc:
        click.echo(f"could not reach {base}: {exc}", err=True)
        sys.exit(2)
    body = response.json()
    if response.status_code != 202:
        click.echo(f"refused ({response.status_code}): {body.get('error')}", err=True)
        sys.exit(1 if response.status_code == 409 else 2)
    run_id = body["run_id"]
    click.echo(f"sync run {run_id} of {store_id} requested", err=True)
    deadline = time.monotonic() + timeout
    run: dict[str, object] | None = None
    tty = sys.stderr.isatty()
    last_line = ""
    while time.monotonic() < deadline:
        try:
            state = httpx.get(f"{base}/stores/{store_id}/sync", timeout=30.0).json()
        except (httpx.HTTPError, ValueError):
            state = {}
        candidates = [state.get("current")] + list(state.get("runs") or [])
        run = next((r for r in candidates if r and r.get("run_id") == run_id), None)
        if run is not None:
            line = progress_bar(run)
            if line != last_line:
                click.echo(("\r" + line) if tty else line, err=True, nl=not tty)
                last_line = line
            if run.get("status") != "RUNNING":
                break
        time.sleep(0.5)
    if tty:
        click.echo("", err=True)
    if run is None or run.get("status") == "RUNNING":
        click.echo(f"run {run_id} not finished after {timeout:g}s", err=True)
        sys.exit(2)
    click.echo(orjson.dumps(run).decode())
    sys.exit(0 if run.get("status") == "COMPLETED" else 1)



@main.command()
def storefront() -> None:
    """Push stock and prices (inventory.changes) and tracking (storefront.commands) to
    each store's storefront until SIGTERM or Ctrl-C; offsets committed after the writes.

    Store accounts: OPS_STOREFRONT_ACCOUNTS or OPS_STOREFRONT_SECRETS_FILE
    (connectors/storefront/settings.py); /metrics on OPS_STOREFRONT_METRICS_PORT.
    """
    from connectors.storefront.runner import run_storefront
    from connectors.storefront.settings import StorefrontSettings

    settings = _settings()
    storefront_settings = StorefrontSettings.load()
    logging.basicConfig(level=settings.log_level.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    _serve_metrics("storefront", storefront_settings.storefront_metrics_port, settings.web_host)
    asyncio.run(ensure_topics(settings))

    _serve(lambda stop: run_storefront(settings, storefront_settings, stop))


def _webhook_url(url: str | None, public_url: str | None, path: str) -> str:
    """The delivery URL of a store's webhooks: ``--url``, else OPS_PUBLIC_URL + ``path``."""
    if url is not None:
        return url
    if not public_url:
        raise click.ClickException("OPS_PUBLIC_URL is not set (or pass --url)")
    return public_url.rstrip("/") + path


def _registered(shop: str, register: Callable[[], Awaitable[list[tuple[str, str]]]]) -> None:
    """Run a webhook registration and print each topic with what was done; exit 1 when one FAILED."""
    try:
        results = asyncio.run(register())
    except Exception as exc:  # the shop's answer, never the token
        raise click.ClickException(f"registering the webhooks of {shop} failed: {exc}") from exc
    for topic, result in results:
        click.echo(f"{topic:<26} {result}")
    if any(r.startswith("FAILED") for _, r in results):
        sys.exit(1)


@main.group()
def shopify() -> None:
    """Shopify shops of the stores (accounts in OPS_STOREFRONT_ACCOUNTS / _SECRETS_FILE)."""


@shopify.command("register-webhooks")
@click.argument("store_id")
@click.option("--url", default=None, help="callback URL (default: OPS_PUBLIC_URL/webhooks/shopify)")
def shopify_register_webhooks(store_id: str, url: str | None) -> None:
    """Subscribe the store's shop to every webhook topic the ingress handles, at the
    callback URL; topics already subscribed there are left alone. Prints each topic
    and what was done (CREATED, EXISTS, or why it was not)."""
    from connectors.shopify.webhooks import register_webhooks
    from connectors.storefront.settings import ShopifyAccount, StorefrontSettings

    storefront_settings = StorefrontSettings.load()
    account = storefront_settings.storefront_accounts.get(store_id)
    if not isinstance(account, ShopifyAccount):
        raise click.ClickException(f"store {store_id} has no Shopify account in the storefront accounts")
    callback = _webhook_url(url, storefront_settings.public_url, "/webhooks/shopify")
    _registered(account.shop_domain, lambda: register_webhooks(account, callback))


@main.group()
def woocommerce() -> None:
    """WooCommerce sites of the stores (accounts in OPS_STOREFRONT_ACCOUNTS / _SECRETS_FILE)."""


@woocommerce.command("register-webhooks")
@click.argument("store_or_site")
@click.option("--url", default=None, help="delivery URL (default: OPS_PUBLIC_URL/webhooks/woocommerce)")
def woocommerce_register_webhooks(store_or_site: str, url: str | None) -> None:
    """Create the order webhooks the ingress handles at the site of STORE_OR_SITE (a store id,
    or a site's host), delivered to the URL and signed with the site's current secret in
    OPS_WOOCOMMERCE_WEBHOOK_SECRETS; a webhook already there is left alone (re-activated, or
    given the secret, when it needs it). Prints each topic and what was done (CREATED, EXISTS,
    ACTIVATED, SECRET_UPDATED, or why it was not)."""
    from connectors.ingress.settings import IngressSettings
    from connectors.storefront.settings import StorefrontSettings
    from connectors.woocommerce.settings import WooCommerceAccount
    from connectors.woocommerce.webhooks import register_webhooks

    storefront_settings = StorefrontSettings.load()
    accounts = storefront_settings.storefront_accounts
    account = accounts.get(store_or_site)
    if not isinstance(account, WooCommerceAccount):
        account = next((a for a in accounts.values()
                        if isinstance(a, WooCommerceAccount) and a.site == store_or_site.strip().lower()), None)
    if account is None:
        raise click.ClickException(f"{store_or_site} is neither a store nor a site with a WooCommerce account "
                                   "in the storefront accounts")
    secrets = IngressSettings.load().woocommerce_webhook_secrets.get(account.site) or ()
    if not secrets:
        raise click.ClickException(
            f"no webhook secret for {account.site} in OPS_WOOCOMMERCE_WEBHOOK_SECRETS (or the webhook secrets "
            "file): the ingress would refuse its webhooks")
    secret = secrets[0].get_secret_value()
    delivery = _webhook_url(url, storefront_settings.public_url, "/webhooks/woocommerce")
    _registered(account.site, lambda: register_webhooks(account, delivery, secret))


if __name__ == "__main__":  # pragma: no cover
    main()
