"""Ingress benchmark: signed webhooks from a load generator on loopback, requests/s and p50/p99.

On a fresh embedded broker (the engine's topics, 8 partitions each):

1. one ``ops-engine worker`` (its web server, its ingress and everything else
   a worker runs: the webhook router consumes ``webhooks.inbound`` while the
   load goes on) with Shopify and Stripe webhook secrets and a small catalogue
   (20 shops, 3 variants each) on ``catalog.variants``;
2. a load generator in a process of its own (this file with ``--generate``,
   aiohttp client, uvloop, a pool of ``--concurrency`` keep-alive connections)
   keeps ``--concurrency`` (50) requests in flight for ``--warmup`` seconds
   (not counted in the figures) and then ``--seconds`` (60): alternately a
   signed Shopify ``orders/create`` (a ~2.5-3 KB order, a unique
   ``X-Shopify-Webhook-Id`` each, 20 shops) and a Stripe
   ``payment_intent.succeeded`` for the same order (signed with the current
   time, in batches every second). The bodies and the Shopify signatures are
   made before the load starts;
3. the baseline, measured in the same run against the same broker with the
   same generator: bench/baseline_ingress.py, a bare aiohttp server doing the
   same work per request (verify, build the record, produce with acks=all and
   wait for it, 202), run after the worker is stopped.

Afterwards ``webhooks.inbound`` is read from the start: every ``dedup_key`` a
2xx answered must be on it (missing ones are counted; must be 0).

Prints accepted requests/s, p50/p99/max latency, non-2xx and missing counts
for both, the worker's figures as ratios of the baseline's, the CPU seconds
per 1,000 webhooks of each process, and PASS/MISS against the targets (at
least 2,000 accepted webhooks/s per worker, p99 under 50 ms, all 2xx, none
missing). Saves bench/results/ingress.json. ``--profile FILE`` records the
worker with py-spy (collapsed stacks) during its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.webhooks import sign_shopify, stripe_header  # noqa: E402

SHOPIFY_SECRET = "shpss_bench_secret_0123456789abcdef"
STRIPE_SECRET = "whsec_bench_secret_0123456789abcdef"
SHOPS = [f"bench-shop-{k:02d}.myshopify.com" for k in range(20)]
VARIANTS = {"4001": "ALIEXPRESS", "4002": "CJ_DROPSHIPPING", "4003": "SPOCKET"}
TARGET_RPS = 2000.0
TARGET_P99_S = 0.050
#: A topic of the bench's own: a side producer measures the broker's acknowledgement time during the load.
PROBE_TOPIC = "bench.ack-probe"


# --------------------------------------------------------------------------- #
# The webhooks
# --------------------------------------------------------------------------- #


def store_of(shop_index: int) -> str:
    return f"store-{shop_index:02d}"


def catalogue() -> list[dict[str, Any]]:
    return [
        {"shop_domain": shop, "shopify_variant_id": v, "store_id": store_of(k), "product_id": f"p-{k}-{v}",
         "provider": provider, "source_id": f"SRC-{k}-{v}"}
        for k, shop in enumerate(SHOPS) for v, provider in VARIANTS.items()
    ]


def _address(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "first_name": "Ada", "last_name": f"Lovelace{n % 97}", "name": f"Ada Lovelace{n % 97}",
        "address1": f"{rng.randint(1, 9999)} Main Street", "address2": f"Apt {rng.randint(1, 99)}",
        "city": "Austin", "province": "Texas", "province_code": "TX", "zip": f"7{rng.randint(1000, 9999)}",
        "country": "United States", "country_code": "US", "phone": f"+1512555{rng.randint(1000, 9999)}",
        "company": None, "latitude": 30.2672, "longitude": -97.7431,
    }


def shopify_order(n: int, order_id: int, shop: str, rng: random.Random) -> dict[str, Any]:
    """An orders/create body shaped like Shopify's (about 2.5-3 KB), payment pending."""
    variants = rng.sample(sorted(VARIANTS), rng.choice([1, 1, 2, 3]))
    items = [
        {"id": 90000000 + 10 * n + i, "admin_graphql_api_id": f"gid://shopify/LineItem/{90000000 + 10 * n + i}",
         "variant_id": int(v), "product_id": 8000 + int(v), "title": f"Widget {v}", "variant_title": "Blue / M",
         "sku": f"SKU-{v}-BL-M", "vendor": "Bench", "quantity": rng.randint(1, 3), "price": "10.00",
         "total_discount": "0.00", "fulfillment_service": "manual", "fulfillment_status": None,
         "requires_shipping": True, "taxable": True, "gift_card": False, "grams": 250,
         "properties": []}
        for i, v in enumerate(variants)
    ]
    address = _address(rng, n)
    return {
        "id": order_id, "admin_graphql_api_id": f"gid://shopify/Order/{order_id}", "name": f"#{1000 + n}",
        "order_number": 1000 + n, "number": n, "email": f"customer{n}@example.com",
        "contact_email": f"customer{n}@example.com", "created_at": "2026-11-01T10:00:00-05:00",
        "updated_at": "2026-11-01T10:00:01-05:00", "processed_at": "2026-11-01T10:00:00-05:00",
        "currency": "USD", "presentment_currency": "USD", "financial_status": "pending",
        "fulfillment_status": None, "confirmed": True, "test": False, "taxes_included": False,
        "buyer_accepts_marketing": False, "browser_ip": f"203.0.113.{n % 250}", "landing_site": "/",
        "referring_site": "https://www.google.com/", "source_name": "web", "gateway": "stripe",
        "checkout_token": f"{rng.getrandbits(128):032x}", "cart_token": f"{rng.getrandbits(96):024x}",
        "token": f"{rng.getrandbits(128):032x}", "tags": "", "note": None,
        "note_attributes": [{"name": "gift", "value": "no"}], "discount_codes": [],
        "subtotal_price": "20.00", "total_line_items_price": "20.00", "total_discounts": "0.00",
        "total_tax": "1.25", "total_price": "26.24", "total_weight": 500, "total_tip_received": "0.00",
        "current_total_price": "26.24", "current_subtotal_price": "20.00", "current_total_tax": "1.25",
        "tax_lines": [{"title": "TX State Tax", "price": "1.25", "rate": 0.0625}],
        "shipping_lines": [{"id": 5000000 + n, "title": "Standard", "code": "STANDARD", "price": "4.99",
                            "source": "shopify", "discounted_price": "4.99"}],
        "customer": {"id": 6000000 + n, "email": f"customer{n}@example.com", "first_name": "Ada",
                     "last_name": address["last_name"], "state": "enabled", "verified_email": True,
                     "currency": "USD", "tags": ""},
        "billing_address": address, "shipping_address": address, "line_items": items,
        "payment_gateway_names": ["stripe"], "refunds": [], "fulfillments": [],
    }


def stripe_event(n: int, order_id: int, shop_index: int, tag: str, rng: random.Random) -> dict[str, Any]:
    """A payment_intent.succeeded event shaped like Stripe's, for the order."""
    intent = f"pi_{tag}{n:08d}{rng.getrandbits(40):010x}"
    return {
        "id": f"evt_{tag}{n:08d}", "object": "event", "api_version": "2024-06-20", "created": 1793545200 + n,
        "livemode": False, "pending_webhooks": 1, "type": "payment_intent.succeeded",
        "request": {"id": f"req_{rng.getrandbits(64):016x}", "idempotency_key": f"{rng.getrandbits(128):032x}"},
        "data": {"object": {
            "id": intent, "object": "payment_intent", "amount": 2624, "amount_capturable": 0,
            "amount_received": 2624, "capture_method": "automatic", "confirmation_method": "automatic",
            "client_secret": f"{intent}_secret_{rng.getrandbits(96):024x}", "currency": "usd",
            "customer": f"cus_{rng.getrandbits(56):014x}", "description": f"Order #{1000 + n}",
            "latest_charge": f"ch_{rng.getrandbits(96):024x}", "livemode": False,
            "metadata": {"order_id": f"shopify-{order_id}", "store_id": store_of(shop_index)},
            "payment_method": f"pm_{rng.getrandbits(96):024x}", "payment_method_types": ["card"],
            "receipt_email": f"customer{n}@example.com", "status": "succeeded", "created": 1793545190 + n,
        }},
    }


class Requests:
    """The requests of one generator run, made before the load: request 2n is
    order n's Shopify orders/create, 2n+1 its Stripe payment_intent.succeeded."""

    def __init__(self, tag: str, count: int) -> None:
        self.tag = tag
        self.rng = random.Random(f"bench-ingress-{tag}")
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.stripe_signed_upto = 0  # requests below this index carry a Stripe-Signature
        self.extend(count)

    def _make(self, i: int) -> None:
        n = i // 2
        shop_index = n % len(SHOPS)
        order_id = 7_000_000_000 + (1 if self.tag == "b" else 0) * 100_000_000 + n
        if i % 2 == 0:
            shop = SHOPS[shop_index]
            body = orjson.dumps(shopify_order(n, order_id, shop, self.rng))
            self.paths.append("/webhooks/shopify")
            self.headers.append({
                "Content-Type": "application/json", "X-Shopify-Topic": "orders/create",
                "X-Shopify-Shop-Domain": shop, "X-Shopify-Webhook-Id": f"bench-{self.tag}-{n:08d}",
                "X-Shopify-API-Version": "2024-10", "X-Shopify-Triggered-At": "2026-11-01T15:00:00Z",
                "X-Shopify-Hmac-Sha256": sign_shopify(body, SHOPIFY_SECRET),
            })
        else:
            body = orjson.dumps(stripe_event(n, order_id, shop_index, self.tag, self.rng))
            self.paths.append("/webhooks/stripe")
            self.headers.append({"Content-Type": "application/json"})
        self.bodies.append(body)

    def extend(self, count: int) -> None:
        for i in range(len(self.bodies), count):
            self._make(i)

    def sign_stripe(self, upto: int) -> None:
        """Sign the Stripe requests below ``upto`` not signed yet, with the time now."""
        now = int(time.time())
        for i in range(self.stripe_signed_upto | 1, min(upto, len(self.bodies)), 2):
            self.headers[i]["Stripe-Signature"] = stripe_header(self.bodies[i], [STRIPE_SECRET], now)
        self.stripe_signed_upto = max(self.stripe_signed_upto, upto)

    def get(self, i: int) -> tuple[str, dict[str, str], bytes]:
        if i >= len(self.bodies):  # more than was made beforehand: make it now
            self.extend(i + 1000)
        if i >= self.stripe_signed_upto:
            self.sign_stripe(i + 1000)
        return self.paths[i], self.headers[i], self.bodies[i]


# --------------------------------------------------------------------------- #
# The generator (its own process)
# --------------------------------------------------------------------------- #


async def generate(url: str, seconds: float, warmup: float, concurrency: int, tag: str, prebuild: int) -> dict[str, Any]:
    import aiohttp

    made = time.perf_counter()
    requests = Requests(tag, prebuild)
    requests.sign_stripe(4 * concurrency)
    build_s = time.perf_counter() - made
    sizes = [sum(map(len, requests.bodies[k::2])) // max(len(requests.bodies[k::2]), 1) for k in (0, 1)]

    timed_lat: list[float] = []
    timed_start: list[float] = []
    timed_status: Counter[int] = Counter()
    warm_status: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    accepted: list[str] = []
    next_index = 0
    last_done = 0.0

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                     skip_auto_headers=("User-Agent", "Accept-Encoding")) as session:
        begin = time.perf_counter()
        measure_from = begin + warmup
        end = measure_from + seconds

        async def signer() -> None:
            # Stripe: each second, sign what the next ~4 s will send with the time now.
            sent_before = 0
            while True:
                await asyncio.sleep(1.0)
                rate = max(next_index - sent_before, 500)
                sent_before = next_index
                requests.extend(next_index + 4 * rate)
                requests.sign_stripe(next_index + 4 * rate)

        async def sender() -> None:
            nonlocal next_index, last_done
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    return
                i = next_index
                next_index += 1
                path, headers, body = requests.get(i)
                try:
                    async with session.post(url + path, data=body, headers=headers) as response:
                        raw = await response.read()
                        status = response.status
                except Exception as exc:  # a transport error: counted, status 0
                    errors[type(exc).__name__] += 1
                    raw, status = b"", 0
                t1 = time.perf_counter()
                if 200 <= status < 300:
                    accepted.append(orjson.loads(raw)["dedup_key"])
                elif status:
                    refusals[f"{status} {raw[:120].decode(errors='replace')}"] += 1
                if t0 >= measure_from:
                    timed_lat.append(t1 - t0)
                    timed_start.append(t0 - measure_from)
                    timed_status[status] += 1
                    last_done = max(last_done, t1)
                else:
                    warm_status[status] += 1

        signing = asyncio.ensure_future(signer())
        cpu0 = None

        async def cpu_mark() -> None:
            nonlocal cpu0
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            cpu0 = time.process_time()

        marking = asyncio.ensure_future(cpu_mark())
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        cpu_timed = time.process_time() - (cpu0 if cpu0 is not None else 0.0)
        signing.cancel()
        marking.cancel()
    return {
        "tag": tag,
        "measure_from": measure_from,  # time.perf_counter (CLOCK_MONOTONIC: same clock in every process)
        "build_s": build_s,
        "prebuilt": prebuild,
        "body_bytes": {"shopify": sizes[0], "stripe": sizes[1]},  # means
        "sent": next_index,
        "duration_s": max(last_done - measure_from, 1e-9),
        "latencies_s": timed_lat,
        "starts_s": timed_start,
        "status": {str(k): v for k, v in timed_status.items()},
        "warmup_status": {str(k): v for k, v in warm_status.items()},
        "errors": dict(errors),
        "refusals": dict(refusals.most_common(10)),
        "accepted": accepted,
        "generator_cpu_s": cpu_timed,
    }


def generator_main(args: argparse.Namespace) -> None:
    import uvloop

    prebuild = int(args.prebuild or (args.seconds + args.warmup) * 4000)
    result = uvloop.run(generate(args.generate, args.seconds, args.warmup, args.concurrency, args.tag, prebuild))
    Path(args.out).write_bytes(orjson.dumps(result))


# --------------------------------------------------------------------------- #
# The bench
# --------------------------------------------------------------------------- #


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def probe_acks(bootstrap: str, proc: subprocess.Popen[bytes], every_s: float = 0.05) -> list[list[float]]:
    """While ``proc`` runs: a small record to PROBE_TOPIC every ``every_s`` with acks=all,
    [sent at (perf_counter), seconds to its ack] each: how long the broker takes to acknowledge."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    out: list[list[float]] = []
    try:
        while proc.poll() is None:
            sent = time.perf_counter()
            delivery = await producer.send(PROBE_TOPIC, value=b"probe")
            await delivery
            out.append([sent, time.perf_counter() - sent])
            await asyncio.sleep(max(0.0, every_s - (time.perf_counter() - sent)))
    finally:
        await producer.stop()
    return out


def run_generator(url: str, args: argparse.Namespace, tag: str, workdir: Path, bootstrap: str,
                  watched: dict[str, int | None], profile: Path | None = None) -> dict[str, Any]:
    out = workdir / f"generator-{tag}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--generate", url, "--seconds", str(args.seconds),
               "--warmup", str(args.warmup), "--concurrency", str(args.concurrency), "--tag", tag, "--out", str(out)]
    if args.prebuild:
        command += ["--prebuild", str(args.prebuild)]
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    spy = None
    if profile is not None and watched.get("server"):
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(watched["server"]), "--format", "raw",
             "--rate", "200", "--output", str(profile), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
    generator = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        probes = asyncio.run(probe_acks(bootstrap, generator))
    finally:
        if generator.wait() != 0:
            raise RuntimeError(f"the load generator exited {generator.returncode}")
    after = {name: cpu_seconds(pid) for name, pid in watched.items()}
    if spy is not None:
        spy.send_signal(2)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
    result = orjson.loads(out.read_bytes())
    result["process_cpu_s"] = {name: after[name] - before[name] for name in watched}  # warm-up included
    result["probes"] = probes
    return result


def summarise(gen: dict[str, Any], on_topic: Counter[str]) -> dict[str, Any]:
    latencies = sorted(gen["latencies_s"])
    status = {int(k): v for k, v in gen["status"].items()}
    ok = sum(v for k, v in status.items() if 200 <= k < 300)
    timed = sum(status.values())
    warm = {int(k): v for k, v in gen["warmup_status"].items()}
    accepted = gen["accepted"]
    missing = [key for key in set(accepted) if on_topic.get(key, 0) < 1]
    per_second: dict[int, list[float]] = {}
    for start, latency in zip(gen["starts_s"], gen["latencies_s"]):
        per_second.setdefault(int(start), []).append(latency)
    seconds = [
        {"s": s, "requests": len(v), "p50_ms": round(percentile(sorted(v), 50) * 1000, 2),
         "p99_ms": round(percentile(sorted(v), 99) * 1000, 2), "max_ms": round(max(v) * 1000, 2)}
        for s, v in sorted(per_second.items())
    ]
    worst = sorted(zip(gen["latencies_s"], gen["starts_s"]), reverse=True)[:10]
    origin = gen["measure_from"]
    probes = [(at - origin, ack) for at, ack in gen["probes"] if at >= origin]
    acks = sorted(ack for _, ack in probes)

    def probe_during(start: float, latency: float) -> float:
        """The slowest broker ack among the probes sent while this request was in flight (or just before)."""
        found = [ack for at, ack in probes if start - 0.25 <= at <= start + latency]
        return max(found) if found else float("nan")

    total_requests = gen["sent"]
    return {
        "requests": timed,
        "accepted": ok,
        "accepted_per_s": ok / gen["duration_s"],
        "duration_s": gen["duration_s"],
        "p50_s": percentile(latencies, 50),
        "p90_s": percentile(latencies, 90),
        "p99_s": percentile(latencies, 99),
        "p999_s": percentile(latencies, 99.9),
        "max_s": latencies[-1] if latencies else float("nan"),
        "non_2xx": timed - ok,
        "non_2xx_warmup": sum(v for k, v in warm.items() if not 200 <= k < 300),
        "status": gen["status"],
        "warmup_status": gen["warmup_status"],
        "transport_errors": gen["errors"],
        "refusals": gen["refusals"],
        "accepted_incl_warmup": len(accepted),
        "duplicate_dedup_keys_answered": len(accepted) - len(set(accepted)),
        "missing_on_topic": len(missing),
        "missing_examples": sorted(missing)[:5],
        "stored_more_than_once": sum(1 for key in set(accepted) if on_topic.get(key, 0) > 1),
        "generator_cpu_s_timed": gen["generator_cpu_s"],
        "generator_cpu_share": gen["generator_cpu_s"] / gen["duration_s"],
        "cpu_s_per_1000": {name: 1000 * cpu / max(total_requests, 1) for name, cpu in gen["process_cpu_s"].items()},
        "body_bytes": gen["body_bytes"],
        "per_second": seconds,
        "broker_ack_probe": {"count": len(acks), "p50_s": percentile(acks, 50), "p99_s": percentile(acks, 99),
                             "max_s": acks[-1] if acks else float("nan"),
                             "over_100ms": sum(1 for a in acks if a > 0.1)},
        "slowest": [{"latency_ms": round(lat * 1000, 1), "at_s": round(at, 3),
                     "slowest_broker_ack_meanwhile_ms": round(probe_during(at, lat) * 1000, 1)} for lat, at in worst],
    }


def server_histogram(url: str) -> dict[float, float]:
    """The ingress's own ``ops_webhook_request_seconds`` buckets (all sources), cumulative counts."""
    import httpx

    buckets: dict[float, float] = {}
    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return buckets
    for row in text.splitlines():
        if row.startswith("ops_webhook_request_seconds_bucket{"):
            labels, value = row.rsplit(" ", 1)
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets


def server_side(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """The ingress's handler time (request start to answer) over the load, from its histogram:
    the bucket bounds under which 50 % and 99 % of the requests were answered."""
    delta = {b: after.get(b, 0.0) - before.get(b, 0.0) for b in sorted(after)}
    total = delta.get(float("inf"), 0.0)

    def bound(q: float) -> float | None:
        for b, n in delta.items():
            if total and n >= q * total:
                return b
        return None

    return {"requests": total, "p50_at_most_s": bound(0.5), "p99_at_most_s": bound(0.99),
            "share_under_50ms": delta.get(0.05, 0.0) / total if total else None}


def log_problems(path: Path, limit: int = 8) -> tuple[int, list[str]]:
    """(count, most frequent) of the WARNING/ERROR lines of a worker log, numbers blanked."""
    if not path.exists():
        return 0, []
    lines = [line for line in path.read_text(errors="replace").splitlines()
             if "WARNING" in line or "ERROR" in line or "Traceback" in line or "CRITICAL" in line]
    shapes: Counter[str] = Counter()
    example: dict[str, str] = {}
    for row in lines:
        shape = re.sub(r"\d+", "N", row.split("]", 1)[-1].strip())[:200]
        shapes[shape] += 1
        example.setdefault(shape, row[-300:])
    return len(lines), [f"{n} x {shape} (e.g. {example[shape]})" for shape, n in shapes.most_common(limit)]


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from connectors.broker import EmbeddedBroker, create_topics, free_port
    from streams import topics
    from tests.harness import Worker, cli_publish, read_topic

    env = {
        "OPS_LOG_LEVEL": "warning",
        "OPS_SHOPIFY_WEBHOOK_SECRETS": orjson.dumps({"*": [SHOPIFY_SECRET]}).decode(),
        "OPS_STRIPE_WEBHOOK_SECRETS": STRIPE_SECRET,
    }
    load_before = os.getloadavg()
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        specs = topics.specs()
        asyncio.run(create_topics(broker.bootstrap, {s.name: 8 for s in specs} | {PROBE_TOPIC: 1},
                                  {s.name: s.config for s in specs}))

        # 1. the worker
        worker = Worker(broker, workdir, name="w1", **env).start()
        try:
            ready_s = worker.wait_ready(timeout=90)
            published = cli_publish(broker, topics.CATALOG_VARIANTS, catalogue())
            if published.returncode != 0:
                raise RuntimeError(f"catalogue not published: {published.stderr.decode()[-2000:]}")
            time.sleep(2)
            print(f"[worker] ready in {ready_s:.1f}s; load: {args.concurrency} senders, "
                  f"{args.warmup:g}s warm-up + {args.seconds:g}s", flush=True)
            histogram_before = server_histogram(worker.url)
            engine_gen = run_generator(worker.url, args, "w", workdir, broker.bootstrap,
                                       {"server": worker.proc.pid if worker.proc else None, "broker": broker.pid},
                                       profile=args.profile)
            alive = worker.proc is not None and worker.proc.poll() is None
            handler = server_side(histogram_before, server_histogram(worker.url)) if alive else {}
        finally:
            worker.kill()
        worker_log = log_problems(worker.log_path)

        # 2. the baseline, with nothing else running
        port = free_port()
        baseline = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "baseline_ingress.py"), broker.bootstrap, str(port)],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=open(workdir / "baseline.log", "ab"),
        )
        try:
            assert baseline.stdout is not None
            first = baseline.stdout.readline()
            if first.strip() != b"ready":
                raise RuntimeError(f"baseline did not start: {(workdir / 'baseline.log').read_text()[-2000:]}")
            print("[baseline] ready; same load", flush=True)
            base_gen = run_generator(f"http://127.0.0.1:{port}", args, "b", workdir, broker.bootstrap,
                                     {"server": baseline.pid, "broker": broker.pid})
        finally:
            baseline.terminate()
            try:
                baseline.wait(15)
            except subprocess.TimeoutExpired:
                baseline.kill()

        # 3. every accepted webhook on the topic
        started = time.monotonic()
        records = asyncio.run(read_topic(broker, topics.WEBHOOKS_INBOUND, timeout=900))
        on_topic: Counter[str] = Counter(orjson.loads(r.value)["dedup_key"] for r in records)
        read_s = time.monotonic() - started
        print(f"[check] read {len(records):,} records of {topics.WEBHOOKS_INBOUND} in {read_s:.1f}s", flush=True)

    engine = summarise(engine_gen, on_topic)
    engine["server_side_incl_warmup"] = handler
    base = summarise(base_gen, on_topic)
    checks = {
        "rps": engine["accepted_per_s"] >= TARGET_RPS,
        "p99": engine["p99_s"] < TARGET_P99_S,
        "all_2xx": engine["non_2xx"] == 0 and engine["non_2xx_warmup"] == 0 and not engine["transport_errors"],
        "none_missing": engine["missing_on_topic"] == 0,
    }
    return {
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "worker": engine,
        "baseline": base,
        "worker_alive_after_load": alive,
        "worker_log_problems": {"count": worker_log[0], "most_frequent": worker_log[1]},
        "ratio_rps": engine["accepted_per_s"] / base["accepted_per_s"] if base["accepted_per_s"] else None,
        "ratio_p99": engine["p99_s"] / base["p99_s"] if base["p99_s"] else None,
        "ratio_p50": engine["p50_s"] / base["p50_s"] if base["p50_s"] else None,
        "targets": {"accepted_per_s": TARGET_RPS, "p99_s": TARGET_P99_S},
        "checks": checks,
        "meets_target": all(checks.values()),
    }


def line(name: str, s: dict[str, Any]) -> str:
    errors = sum(s["transport_errors"].values())
    return (f"  {name:<9}: {s['accepted_per_s']:,.0f} accepted/s ({s['accepted']:,} in {s['duration_s']:.1f}s), "
            f"p50 {s['p50_s'] * 1000:.1f} ms, p99 {s['p99_s'] * 1000:.1f} ms, max {s['max_s'] * 1000:.0f} ms; "
            f"non-2xx {s['non_2xx']} (+{s['non_2xx_warmup']} in warm-up), transport errors {errors}; "
            f"missing on the topic {s['missing_on_topic']} of {s['accepted_incl_warmup']:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured load, s")
    parser.add_argument("--warmup", type=float, default=3.0, help="load before the measured part, not counted, s")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight")
    parser.add_argument("--prebuild", type=int, default=0, help="requests made before the load (default 4,000/s)")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the worker during its load (raw stacks)")
    parser.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)  # the generator process
    parser.add_argument("--tag", default="w", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generator_main(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
        result = run(args, Path(tmp))
    e, b = result["worker"], result["baseline"]
    ok = {True: "PASS", False: "MISS"}
    print(f"ingress: {args.concurrency} concurrent senders, {args.seconds:g}s (+{args.warmup:g}s warm-up), "
          f"Shopify orders/create ({e['body_bytes']['shopify']:,} B) and Stripe payment_intent.succeeded "
          f"({e['body_bytes']['stripe']:,} B) 1:1, {result['cpus']} CPUs, load average before "
          f"{result['load_average_before'][0]:.2f}")
    print(line("worker", e))
    print(line("baseline", b))
    print(f"  ratio worker/baseline: rps x{result['ratio_rps']:.2f}, p50 x{result['ratio_p50']:.2f}, "
          f"p99 x{result['ratio_p99']:.2f}")
    cw, cb = e["cpu_s_per_1000"], b["cpu_s_per_1000"]
    print(f"  CPU s per 1,000 webhooks: worker {cw['server']:.2f} (baseline server {cb['server']:.2f}), "
          f"broker {cw['broker']:.2f} ({cb['broker']:.2f}); generator busy {e['generator_cpu_share']:.0%} "
          f"({b['generator_cpu_share']:.0%}) of its run")
    if e["refusals"] or e["transport_errors"]:
        print(f"  worker refusals: {e['refusals']}; transport errors: {e['transport_errors']}")
    if result["worker_log_problems"]["count"]:
        print(f"  worker log: {result['worker_log_problems']['count']} warning/error lines: "
              + "; ".join(result["worker_log_problems"]["most_frequent"][:3]))
    pe, pb = e["broker_ack_probe"], b["broker_ack_probe"]
    print(f"  broker ack (side probe, acks=all every 50 ms): during the worker's load p50 {pe['p50_s'] * 1000:.1f} ms, "
          f"p99 {pe['p99_s'] * 1000:.1f} ms, max {pe['max_s'] * 1000:.0f} ms; during the baseline's p50 "
          f"{pb['p50_s'] * 1000:.1f} ms, p99 {pb['p99_s'] * 1000:.1f} ms, max {pb['max_s'] * 1000:.0f} ms")
    h = e.get("server_side_incl_warmup") or {}
    if h.get("requests"):
        print(f"  worker's handler time (its own histogram, warm-up included): p50 <= {h['p50_at_most_s'] * 1000:g} ms, "
              f"p99 <= {h['p99_at_most_s'] * 1000:g} ms, {h['share_under_50ms']:.1%} under 50 ms")
    slow = ", ".join(f"{s['latency_ms']:.0f} ms at {s['at_s']:.1f}s (broker ack meanwhile "
                     f"{s['slowest_broker_ack_meanwhile_ms']:.0f} ms)" for s in e["slowest"][:3])
    print(f"  worker's slowest: {slow}")
    c = result["checks"]
    print(f"  targets: >= {TARGET_RPS:,.0f} accepted/s {ok[c['rps']]} ({e['accepted_per_s']:,.0f}); "
          f"p99 < {TARGET_P99_S * 1000:.0f} ms {ok[c['p99']]} ({e['p99_s'] * 1000:.1f}); "
          f"all 2xx {ok[c['all_2xx']]}; every accepted webhook on the topic {ok[c['none_missing']]}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingress.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
