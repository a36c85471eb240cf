"""Inventory benchmark: the real broker, one worker, and a no-framework baseline, same messages.

For each message form (one snapshot per message; pages of 100 snapshots of one
store per message), on a fresh embedded broker:

1. produce a baseline catalogue of STORES x PRODUCTS snapshots (pages of 100),
   then the measured stream of the same count of snapshots, ~10 % of them
   changed, in the form under test;
2. start one ``ops-engine worker`` and measure, from its metrics, the rate over
   the measured stream (processed count from N to 2N), its CPU seconds and its
   peak RSS with every product tracked;
3. run the baseline (bench/baseline_inventory.py: plain aiokafka, a dict, the
   same pure functions) on the same topic and measure it the same way.

Figures are printed as snapshots/s and as the ratio worker/baseline, and saved
to bench/results/inventory.json. ``--stores``/``--products`` scale it down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.broker import EmbeddedBroker, create_topics  # noqa: E402
from streams import topics  # noqa: E402
from tests.harness import Worker  # noqa: E402

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
#: How often the bench reads the worker's counter (each read costs the worker a /metrics render).
POLL_S = 0.5
#: How often it reads the counter once the end is less than a coarse poll away at the
#: rate seen so far, so that the window ends within this of the last snapshot.
FINE_POLL_S = 0.02
PAGE = 100
PY_SPY = Path(sys.executable).parent / "py-spy"


def snapshot(store: int, product: int, stock: int, cost_cents: int, at: datetime) -> dict[str, Any]:
    return {
        "store_id": f"bench-store-{store:04d}",
        "product_id": f"prod-{product:05d}",
        "provider": ("ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET")[product % 3],
        "source_id": f"SRC{store:04d}{product:05d}",
        "available": True,
        "stock": stock,
        "cost_price": f"{cost_cents // 100}.{cost_cents % 100:02d}",
        "shipping_cost": "1.50",
        "currency": "USD",
        "captured_at": at.isoformat().replace("+00:00", "Z"),
        "title": f"Bench product {product}",
    }


async def produce(bootstrap: str, stores: int, products: int, form: str, seed: int = 1) -> int:
    """Baseline pages, then the measured stream in ``form``; returns snapshots per phase."""
    rng = random.Random(seed)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024, compression_type=None
    )
    await producer.start()
    catalogue = {(s, p): (rng.randint(6, 500), rng.randint(100, 20000)) for s in range(stores) for p in range(products)}

    async def send(key: bytes, value: bytes) -> None:
        await producer.send(topics.SUPPLIER_SNAPSHOTS, key=key, value=value)

    try:
        for s in range(stores):
            key = f"bench-store-{s:04d}".encode()
            items = [snapshot(s, p, *catalogue[(s, p)], T0) for p in range(products)]
            for i in range(0, len(items), PAGE):
                await send(key, orjson.dumps(items[i : i + PAGE]))
        later = T0 + timedelta(hours=1)
        for s in range(stores):
            key = f"bench-store-{s:04d}".encode()
            items = []
            for p in range(products):
                stock, cost = catalogue[(s, p)]
                if rng.random() < 0.10:  # ~10 % change: stock or cost
                    if rng.random() < 0.5:
                        stock = max(0, stock - rng.randint(1, 50))
                    else:
                        cost = max(1, int(cost * rng.choice([0.9, 0.97, 1.03, 1.2])))
                items.append(snapshot(s, p, stock, cost, later))
            if form == "single":
                for item in items:
                    await send(key, orjson.dumps(item))
            else:
                for i in range(0, len(items), PAGE):
                    await send(key, orjson.dumps(items[i : i + PAGE]))
        await producer.flush()
    finally:
        await producer.stop()
    return stores * products


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


_CLIENT = httpx.Client(timeout=5)


def processed_count(worker: Worker) -> tuple[int, int]:
    """(snapshots processed, of which NEW) from the worker's metrics; (-1, -1) when unreachable."""
    try:
        text = _CLIENT.get(f"{worker.url}/metrics").text
    except httpx.HTTPError:
        return -1, -1
    total = new = 0.0
    for line in text.splitlines():
        if line.startswith("ops_snapshots_processed_total{"):
            value = float(line.rsplit(" ", 1)[1])
            total += value
            if 'result="NEW"' in line:
                new += value
    return int(total), int(new)


def measure(
    poll: Any,
    pid: int,
    start_new: int,
    end_at: int,
    timeout: float,
    pause: float = POLL_S,
    others: dict[str, int] | None = None,
    on_start: Any = None,
) -> dict[str, Any]:
    """Rate from the moment ``start_new`` products are tracked to the moment ``end_at`` snapshots are processed.

    ``poll`` returns (processed, of which NEW). Partitions are consumed side by
    side, so some reach the measured stream while others still load the
    catalogue; starting when every product is tracked (NEW == catalogue) keeps
    the catalogue's first snapshots out of the measured window. ``others``
    names processes (the broker) whose CPU seconds in the window are reported
    too; ``on_start`` is called when the window opens (the profiler). The
    counter is read every ``pause`` s, and every ``FINE_POLL_S`` once the end is
    less than one and a half reads away at the rate seen so far.
    """
    others = others or {}
    deadline = time.monotonic() + timeout
    t_start = cpu_start = None
    others_start: dict[str, float] = {}
    count = c_start = 0
    while time.monotonic() < deadline:
        count, new = poll()
        now = time.monotonic()
        if t_start is None and new >= start_new:
            t_start, cpu_start, c_start = now, cpu_seconds(pid), count
            others_start = {name: cpu_seconds(other) for name, other in others.items()}
            if on_start is not None:
                on_start()
        if t_start is not None and count >= end_at:
            elapsed = now - t_start
            return {
                "snapshots": count - c_start,
                "seconds": elapsed,
                "per_second": (count - c_start) / elapsed,
                "cpu_seconds": cpu_seconds(pid) - cpu_start,
                "peak_rss_mb": peak_rss_mb(pid),
                "other_cpu_seconds": {n: cpu_seconds(others[n]) - c for n, c in others_start.items()},
            }
        wait = pause
        if t_start is not None and count > c_start and now > t_start:
            # Near the end: read the counter often, or the window would run on
            # for up to a coarse poll after the last snapshot (6 % of a 8 s window).
            rate = (count - c_start) / (now - t_start)
            if end_at - count <= rate * pause * 1.5:
                wait = min(pause, FINE_POLL_S)
        time.sleep(wait)
    raise TimeoutError(f"stuck at {count} of {end_at} snapshots")


def profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` (raw stacks, only the thread holding the GIL: where the CPU goes) until sent SIGINT."""
    spy = str(PY_SPY)
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--gil",
                             "--threads", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_form(form: str, stores: int, products: int, workdir: Path, profile: Path | None = None) -> dict[str, Any]:
    broker = EmbeddedBroker(log_path=workdir / f"broker-{form}.log").start()
    try:
        specs = topics.specs()
        names = {s.name: 8 for s in specs} | {"baseline-changelog": 8}
        asyncio.run(create_topics(broker.bootstrap, names, {s.name: s.config for s in specs}))
        started = time.monotonic()
        per_phase = asyncio.run(produce(broker.bootstrap, stores, products, form))
        produced_s = time.monotonic() - started
        print(f"[{form}] produced 2 x {per_phase:,} snapshots in {produced_s:.1f}s", flush=True)

        worker = Worker(broker, workdir, name=f"bench-{form}", OPS_LOG_LEVEL="warning").start()
        ready_s = worker.wait_ready(timeout=60)
        assert worker.proc is not None
        pid = worker.proc.pid
        spies: list[subprocess.Popen[bytes]] = []
        broker_pid = {"broker": broker.pid} if broker.pid else {}

        def start_profile() -> None:
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                spies.append(profiler(pid, profile / f"worker-{form}.raw"))

        load = measure(lambda: processed_count(worker), pid, 1, per_phase, timeout=1800, others=broker_pid)
        run = measure(lambda: processed_count(worker), pid, per_phase, 2 * per_phase, timeout=1800,
                      others=broker_pid, on_start=start_profile)
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        worker.stop()

        baseline_log = open(workdir / f"baseline-{form}.log", "wb")
        baseline_proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "baseline_inventory.py"), broker.bootstrap, str(2 * per_phase)],
            stdout=subprocess.PIPE,
            stderr=baseline_log,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            text=True,
        )
        latest = {"processed": 0, "new": 0}

        def poll_baseline() -> tuple[int, int]:
            assert baseline_proc.stdout is not None
            line = baseline_proc.stdout.readline()
            if line:
                latest.update(json.loads(line))
            elif baseline_proc.poll() is not None and baseline_proc.returncode != 0:
                raise RuntimeError(f"baseline exited {baseline_proc.returncode}: see {workdir}/baseline-{form}.log")
            return int(latest["processed"]), int(latest["new"])

        # No pause: each read blocks until the baseline prints its next count.
        base = measure(poll_baseline, baseline_proc.pid, per_phase, 2 * per_phase, timeout=1800, pause=0,
                       others=broker_pid)
        baseline_proc.wait(timeout=60)
        return {
            "form": form,
            "snapshots_per_phase": per_phase,
            "worker_ready_s": ready_s,
            "worker_load": load,
            "worker": run,
            "baseline": base,
            "ratio": run["per_second"] / base["per_second"],
        }
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--forms", default="single,paged")
    parser.add_argument("--profile", type=Path, help="py-spy the worker over the measured stream (raw stacks here)")
    args = parser.parse_args()
    if args.profile is not None and not PY_SPY.exists():
        raise SystemExit(f"--profile needs py-spy: {Path(sys.executable).parent / 'pip'} install py-spy")
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="ops-bench-"))
    print(f"logs in {workdir}", flush=True)
    for form in args.forms.split(","):
        results.append(run_form(form, args.stores, args.products, workdir, args.profile))
    print()
    print(f"{'form':<8} {'worker/s':>10} {'baseline/s':>11} {'ratio':>6} {'cpu s':>7} {'broker s':>9} "
          f"{'peak RSS MB':>12} {'load/s':>9}")
    for r in results:
        w, b = r["worker"], r["baseline"]
        broker_s = w["other_cpu_seconds"].get("broker", float("nan"))
        print(
            f"{r['form']:<8} {w['per_second']:>10,.0f} {b['per_second']:>11,.0f} {r['ratio']:>6.2f} "
            f"{w['cpu_seconds']:>7.1f} {broker_s:>9.1f} {w['peak_rss_mb']:>12.0f} "
            f"{r['worker_load']['per_second']:>9,.0f}"
        )
    targets = {"single": ("10,000/s", 10_000), "paged": ("100,000/s and >= 0.5 x baseline", 100_000)}
    for r in results:
        label, floor = targets[r["form"]]
        ok = r["worker"]["per_second"] >= floor and (r["form"] != "paged" or r["ratio"] >= 0.5)
        print(f"target {r['form']}: {label}: {'met' if ok else 'NOT met'}")
    for r in results:
        if r["snapshots_per_phase"] >= 1_000_000:
            ok = r["worker"]["peak_rss_mb"] < 700
            print(f"target memory ({r['form']}): < 700 MB RSS with 1M products: {'met' if ok else 'NOT met'}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "inventory.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
