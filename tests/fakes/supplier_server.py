"""A fake supplier: one real HTTP server on loopback speaking the order and product APIs of
AliExpress (``/aliexpress/sync``), CJ Dropshipping (``/cj/api2.0/v1/...``) and
Spocket (``/spocket/api/v1/...``), as the adapters in ``connectors/suppliers``
expect them.

Like a real supplier it does **not** deduplicate: a second create with the same
reference records a second order, and ``GET /_admin/orders`` counts them (that
is what the executor must prevent). It checks credentials (the AliExpress
signature too) and can fail order creates on purpose, with a rate and a seed:

* ``500``               answer 500 before recording anything;
* ``timeout``           sleep ``timeout_sleep_s`` (longer than the client's read
                        timeout), record nothing;
* ``429``               answer 429 with ``Retry-After: retry_after``;
* ``500_after_record``  record the order, then answer 500.

Tracking: an order gets its tracking number ``tracking_delay_s`` after its
creation (default 0: on the first query); from then on it counts as shipped and
can no longer be cancelled. With ``delivered_after_s`` it is delivered that long
after creation. Numbers look real: Cainiao ``LP…CN``, Yanwen ``YT…``, CJPacket
``CJPKL…``, USPS ``9400…``.

Products (what ``fetch_products`` reads): AliExpress ``aliexpress.ds.product.get``,
CJ ``GET /product/query?pid=`` and ``GET /product/list?pids=a,b`` (at most 20),
Spocket ``GET /products?ids=a,b`` (at most 50). A product is generated from
(seed, provider, id) by ``product_spec``: 1-3 variants, stock, prices as
decimal strings (AliExpress, Spocket) or JSON numbers (CJ), USD. Config
``removed_products`` (ids) makes the supplier no longer have them, shown
either as not found or as delisted (``gone_style``, fixed per id);
``product_overrides`` (``{id: {"stock", "price", "shipping"}}``) changes a
product. Reads fail on purpose with ``next_read_failures`` / ``read_failure_rate``
(``500``, ``timeout``, ``429`` as above; they record nothing). Every request
of a provider is counted in the whole second it arrived: ``GET
/_admin/requests`` -> ``{"per_second": {provider: {epoch second: n}},
"product_requests": {provider: n}}``; ``GET /_admin/products?provider=&id=`` is
the fake's truth about a product (null: removed).

Freight: AliExpress ``aliexpress.ds.freight.query`` (``queryDeliveryReq``:
``productId``, ``selectedSkuId`` one of the product's SKU ids, ``quantity``,
``shipToCountry``, ``currency``) answering ``delivery_options`` with 2-4 options
(one sometimes free), and CJ ``POST /logistic/freightCalculate``
(``startCountryCode``, ``endCountryCode``, ``products: [{quantity, vid}]``, a vid
this fake has shown in a product answer) answering a list of
``{logisticName, logisticPrice}``; the options of (seed, provider, product,
variant, country), the cheapest never listed first. ``freight_overrides``
(``{id: "4.20"}``: the cheapest option; ``{id: null}``: no delivery) changes
them; ``next_freight_failures`` / ``freight_failure_rate`` fail them (``500``,
``timeout``, ``429``). A removed product, an unknown SKU or vid, a missing
field: the supplier's refusal. ``GET /_admin/requests`` also gives
``freight_requests`` per provider; ``GET /_admin/freight?provider=&id=&ref=&country=``
is the fake's cheapest option (``{"amount": "4.20"}``; null: none).

In a test (in-process, a background thread)::

    with FakeSupplierServer(seed=1) as fake:
        fake.base_url("ALIEXPRESS")        # http://127.0.0.1:PORT/aliexpress
        fake.configure(next_failures=["429"])
        fake.orders()                      # == GET /_admin/orders

As a process::

    python -m tests.fakes.supplier_server --port 0 --failure-rate 0.3 --seed 7 --state-file F

prints ``READY http://127.0.0.1:PORT`` once listening (``SupplierServerProcess``
does this for a test). Admin (JSON): ``GET /_admin/orders``, ``GET|POST
/_admin/config``, ``POST /_admin/reset``, ``GET /_admin/health``,
``GET /_admin/requests``, ``GET /_admin/products``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ALIEXPRESS, CJ, SPOCKET = "ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET"
PREFIXES = {ALIEXPRESS: "/aliexpress", CJ: "/cj", SPOCKET: "/spocket"}
KINDS = ("500", "timeout", "429", "500_after_record")
READ_KINDS = ("500", "timeout", "429")
_KIND_ALIASES = {
    "500-after-record": "500_after_record",
    "500 after recording": "500_after_record",
    "500_after": "500_after_record",
    "500-before-record": "500",
    "500_before_record": "500",
}
MAX_BODY = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FakeCredentials:
    """What the fake accepts; give the same to the adapters."""

    aliexpress_app_key: str = "fake-ae-app-key"
    aliexpress_app_secret: str = "fake-ae-app-secret"
    aliexpress_access_token: str = "fake-ae-access-token"
    cj_access_token: str = "fake-cj-access-token"
    spocket_api_key: str = "fake-spocket-api-key"


@dataclass
class FakeConfig:
    failure_rate: float = 0.0
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    seed: int | None = None
    retry_after: float = 1.0
    timeout_sleep_s: float = 2.0
    tracking_delay_s: float = 0.0
    delivered_after_s: float | None = None
    #: forced failures for the next creates, in order (then the rate applies)
    next_failures: list[str] = field(default_factory=list)
    #: providers whose creates may fail (None: all)
    failure_providers: list[str] | None = None
    #: product reads: forced failures for the next reads (500, timeout, 429), then this rate
    next_read_failures: list[str] = field(default_factory=list)
    read_failure_rate: float = 0.0
    #: product ids the supplier no longer has (any provider)
    removed_products: list[str] = field(default_factory=list)
    #: per product id, values replacing the generated ones for every variant:
    #: ``{"stock": 3, "price": "9.99", "shipping": "0.50"}``
    product_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: freight: per product id, the cheapest option's amount ("4.20"), or None: no delivery option
    freight_overrides: dict[str, str | None] = field(default_factory=dict)
    #: freight reads: forced failures for the next quotes (500, timeout, 429), then this rate
    next_freight_failures: list[str] = field(default_factory=list)
    freight_failure_rate: float = 0.0

    def validate(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be in [0, 1]")
        self.kinds = [_kind(k) for k in self.kinds]
        self.next_failures = [_kind(k) for k in self.next_failures]
        self.next_read_failures = [_read_kind(k) for k in self.next_read_failures]
        if not 0.0 <= self.read_failure_rate <= 1.0:
            raise ValueError("read_failure_rate must be in [0, 1]")
        self.next_freight_failures = [_read_kind(k) for k in self.next_freight_failures]
        if not 0.0 <= self.freight_failure_rate <= 1.0:
            raise ValueError("freight_failure_rate must be in [0, 1]")
        for pid, amount in self.freight_overrides.items():
            if amount is not None and not re.fullmatch(r"\d{1,9}\.\d{2}", str(amount)):
                raise ValueError(f"freight_overrides[{pid!r}]: {amount!r} is not an amount like 4.20")
        self.removed_products = [str(p) for p in self.removed_products]
        for pid, override in self.product_overrides.items():
            unknown = set(override) - {"stock", "price", "shipping"}
            if unknown:
                raise ValueError(f"product_overrides[{pid!r}]: unknown keys {sorted(unknown)}")
        if self.failure_providers is not None:
            unknown = set(self.failure_providers) - set(PREFIXES)
            if unknown:
                raise ValueError(f"unknown providers {sorted(unknown)}")
        for name in ("retry_after", "timeout_sleep_s", "tracking_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


def _read_kind(value: str) -> str:
    kind = _kind(value)
    return "500" if kind == "500_after_record" else kind  # a read records nothing


def _kind(value: str) -> str:
    kind = _KIND_ALIASES.get(str(value).strip().lower(), str(value).strip().lower())
    if kind not in KINDS:
        raise ValueError(f"unknown failure kind {value!r} (one of {', '.join(KINDS)})")
    return kind


# --------------------------------------------------------------------------- #
# State
# --------------------------------------------------------------------------- #


class SupplierState:
    """Recorded orders, the failure plan and counters; thread-safe."""

    def __init__(self, config: FakeConfig, state_file: Path | None = None) -> None:
        config.validate()
        self.lock = threading.RLock()
        self.initial = FakeConfig(**asdict(config))
        self.config = config
        self.rng = random.Random(config.seed)
        self.state_file = state_file
        self.orders: list[dict[str, Any]] = []
        self.seq = 0
        self.stats: dict[str, Any] = {}
        self._reset_stats()
        self._load()

    def _reset_stats(self) -> None:
        self.stats = {
            "requests": 0,
            "creates_received": 0,
            "creates_recorded": 0,
            "failures_injected": {k: 0 for k in KINDS},
            "auth_failures": 0,
            "product_requests": {p: 0 for p in PREFIXES},
            "read_failures_injected": {k: 0 for k in READ_KINDS},
            "freight_requests": {p: 0 for p in PREFIXES},
            "freight_failures_injected": {k: 0 for k in READ_KINDS},
            #: AliExpress product gets per ``ship_to_country`` asked for
            "aliexpress_ship_to": {},
        }
        #: the last freight requests' parameters, newest last: {"provider", "request"}
        self.freight_log: list[dict[str, Any]] = []
        #: CJ vids this fake has shown in a product answer -> their product id
        self.cj_vids: dict[str, str] = {}
        #: provider -> whole second (int(time.time())) -> requests that arrived in it
        self.per_second: dict[str, dict[int, int]] = {p: {} for p in PREFIXES}

    def arrived(self, provider: str) -> None:
        """Count one request of ``provider`` in the second it arrived."""
        with self.lock:
            second = int(time.time())
            counts = self.per_second[provider]
            counts[second] = counts.get(second, 0) + 1

    def requests_per_second(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {p: {str(sec): n for sec, n in sorted(c.items())} for p, c in self.per_second.items()}

    def _draw(self, provider: str, forced: list[str], rate: float, injected: str) -> str | None:
        """The read failure to inject: the next forced one, else one drawn at ``rate``
        (for the providers that may fail); counted in ``stats[injected]``. Under the lock."""
        cfg = self.config
        if forced:
            kind: str | None = forced.pop(0)
        elif cfg.failure_providers is not None and provider not in cfg.failure_providers:
            kind = None
        elif rate > 0 and self.rng.random() < rate:
            kind = self.rng.choice(READ_KINDS)
        else:
            kind = None
        if kind:
            self.stats[injected][kind] += 1
        return kind

    def next_read_failure(self, provider: str) -> str | None:
        with self.lock:
            self.stats["product_requests"][provider] += 1
            cfg = self.config
            return self._draw(provider, cfg.next_read_failures, cfg.read_failure_rate, "read_failures_injected")

    def next_freight_failure(self, provider: str, request: dict[str, Any]) -> str | None:
        """Count a freight request (and keep its parameters); the failure to inject, if any."""
        with self.lock:
            self.stats["freight_requests"][provider] += 1
            self.freight_log = self.freight_log[-99:] + [{"provider": provider, "request": request}]
            cfg = self.config
            return self._draw(provider, cfg.next_freight_failures, cfg.freight_failure_rate, "freight_failures_injected")

    def freight(self, provider: str, source_id: str, ref: str, country: str) -> list[tuple[str, str]] | None:
        """The delivery options (service, amount) of one unit of variant ``ref`` of the
        product to ``country``, in the order the API lists them; None when the product is
        removed or has no such variant."""
        with self.lock:
            product = self.product(provider, source_id)
            if product is None or ref not in {v["id"] for v in product["variants"]}:
                return None
            override = self.config.freight_overrides.get(source_id, "")
        if override is None:
            return []
        h = _h(self.config.seed, "freight", provider, source_id, ref, country.upper())
        n = 2 + h % 3
        cheapest = str(override) if override != "" else ("0.00" if h % 8 == 0 else _cents(50 + h // 8 % 1500))
        base = int(Decimal(cheapest) * 100)
        amounts = [cheapest] + [_cents(base + 100 * (i + 1) + h // (i + 11) % 90) for i in range(n - 1)]
        names = ["Cainiao Saver", "AliExpress Standard", "Yanwen Express", "DHL Express"] if provider == ALIEXPRESS \
            else ["CJPacket Ordinary", "CJPacket Liquid", "USPS+", "DHL"]
        options = list(zip(names, amounts))
        shift = 1 + h % (n - 1)  # the cheapest is never listed first
        return options[shift:] + options[:shift]

    def cheapest_freight(self, provider: str, source_id: str, ref: str, country: str) -> str | None:
        options = self.freight(provider, source_id, ref, country)
        return min((a for _, a in options), key=Decimal) if options else None

    def product(self, provider: str, source_id: str) -> dict[str, Any] | None:
        """The product as this fake's supplier has it now (None: removed)."""
        with self.lock:
            if source_id in self.config.removed_products:
                return None
            return product_spec(provider, source_id, self.config.seed, self.config.product_overrides.get(source_id))

    def shown_cj(self, product: dict[str, Any]) -> None:
        """Remember the vids of a CJ product answer (CJ's freight is asked by vid)."""
        with self.lock:
            for variant in product["variants"]:
                self.cj_vids[variant["id"]] = product["id"]

    def count(self, name: str) -> None:
        with self.lock:
            self.stats[name] += 1

    # -- persistence
    def _load(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        data = json.loads(self.state_file.read_text())
        self.orders = list(data.get("orders", []))
        self.seq = int(data.get("seq", len(self.orders)))

    def _save(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps({"seq": self.seq, "orders": self.orders}))
        os.replace(tmp, self.state_file)

    # -- failures
    def next_failure(self, provider: str) -> str | None:
        with self.lock:
            cfg = self.config
            self.stats["creates_received"] += 1
            if cfg.next_failures:
                kind = cfg.next_failures.pop(0)
            elif cfg.failure_providers is not None and provider not in cfg.failure_providers:
                kind = None
            elif cfg.failure_rate > 0 and cfg.kinds and self.rng.random() < cfg.failure_rate:
                kind = self.rng.choice(cfg.kinds)
            else:
                kind = None
            if kind:
                self.stats["failures_injected"][kind] += 1
            return kind

    # -- orders
    def create(self, provider: str, reference: str, detail: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.seq += 1
            seq = self.seq
            if provider == ALIEXPRESS:
                order_id = str(8180000000000000 + seq)
            elif provider == CJ:
                order_id = str(2108000000000000000 + seq)
            else:
                order_id = f"spk_{seq:010d}"
            number, carrier, service, url = _tracking_for(provider, order_id, self.config.seed)
            order = {
                "provider": provider,
                "reference": reference,
                "supplier_order_id": order_id,
                "created_at": time.time(),
                "cancelled": False,
                "tracking_number": number,
                "carrier": carrier,
                "logistics_service": service,
                "tracking_url": url,
                "tracking_delay_s": self.config.tracking_delay_s,
                "delivered_after_s": self.config.delivered_after_s,
                **detail,
            }
            self.orders.append(order)
            self.stats["creates_recorded"] += 1
            self._save()
            return order

    def by_reference(self, provider: str, reference: str) -> list[dict[str, Any]]:
        with self.lock:
            return [o for o in self.orders if o["provider"] == provider and o["reference"] == reference]

    def by_id(self, provider: str, order_id: str) -> dict[str, Any] | None:
        with self.lock:
            for order in self.orders:
                if order["provider"] == provider and order["supplier_order_id"] == order_id:
                    return order
            return None

    def by_tracking(self, provider: str, number: str) -> dict[str, Any] | None:
        with self.lock:
            for order in self.orders:
                if order["provider"] == provider and order["tracking_number"] == number and shipped(order):
                    return order
            return None

    def cancel(self, order: dict[str, Any]) -> bool:
        with self.lock:
            if order["cancelled"]:
                return True
            if shipped(order):
                return False
            order["cancelled"] = True
            self._save()
            return True

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            counts: dict[tuple[str, str], list[str]] = {}
            for order in self.orders:
                counts.setdefault((order["provider"], order["reference"]), []).append(order["supplier_order_id"])
            orders = [
                {
                    "provider": o["provider"],
                    "reference": o["reference"],
                    "supplier_order_id": o["supplier_order_id"],
                    "created_at": o["created_at"],
                    "cancelled": o["cancelled"],
                    "status": status_word(o),
                    "tracking_number": o["tracking_number"] if shipped(o) else None,
                    "created_count": len(counts[(o["provider"], o["reference"])]),
                }
                for o in self.orders
            ]
            by_ref = [
                {"provider": p, "reference": r, "count": len(ids), "supplier_order_ids": ids}
                for (p, r), ids in counts.items()
            ]
            return {
                "orders": orders,
                "by_reference": by_ref,
                "duplicates": [row for row in by_ref if row["count"] > 1],
                "stats": json.loads(json.dumps(self.stats)),
            }

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            data = asdict(self.config)
            unknown = set(changes) - set(data)
            if unknown:
                raise ValueError(f"unknown settings {sorted(unknown)}")
            data.update(changes)
            new = FakeConfig(**data)
            new.validate()
            if "seed" in changes:
                self.rng = random.Random(new.seed)
            self.config = new
            return asdict(new)

    def reset(self, keep_config: bool = False) -> None:
        with self.lock:
            self.orders.clear()
            self._reset_stats()
            if not keep_config:
                self.config = FakeConfig(**asdict(self.initial))
                self.rng = random.Random(self.config.seed)
            self._save()  # seq keeps growing: ids are never reused


def _digits(seed: Any, order_id: str, n: int) -> str:
    value = int.from_bytes(hashlib.sha256(f"{seed}|{order_id}".encode()).digest(), "big")
    return str(value)[-n:].rjust(n, "0")


def _tracking_for(provider: str, order_id: str, seed: Any) -> tuple[str, str, str, str]:
    if provider == ALIEXPRESS:
        if int(_digits(seed, order_id, 1)) % 2 == 0:
            number = f"LP00{_digits(seed, order_id, 12)}CN"
            return number, "Cainiao", "CAINIAO_STANDARD", f"https://global.cainiao.com/detail.htm?mailNoList={number}"
        number = f"YT{_digits(seed, order_id, 16)}"
        return number, "Yanwen", "YANWEN_JYT", f"https://track.yw56.com.cn/en/querydel?nums={number}"
    if provider == CJ:
        number = f"CJPKL{_digits(seed, order_id, 10)}YQ"
        return number, "CJPacket Ordinary", "CJPacket Ordinary", f"https://www.17track.net/en/track?nums={number}"
    number = f"9400{_digits(seed, order_id, 18)}"
    return number, "USPS", "USPS", f"https://tools.usps.com/go/TrackConfirmAction?tLabels={number}"


_COLOURS = ("Red", "Blue", "Black", "White", "Green")


def _h(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def _cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


def product_spec(
    provider: str, source_id: str, seed: Any, override: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The product ``source_id`` of ``provider``, generated from (seed, provider,
    id): 1-3 variants, stock 0-199, prices as decimal strings (cents), USD.
    ``override`` replaces stock/price/shipping of every variant. This is the
    provider-neutral truth the fake's three API shapes render."""
    override = override or {}
    h = _h(seed, provider, source_id)
    n_variants = 1 + h % 3
    shipping = _cents(h // 7 % 500) if provider == SPOCKET else "0.00"
    variants = []
    for i in range(n_variants):
        hv = _h(seed, provider, source_id, i)
        colour = _COLOURS[(h + i) % len(_COLOURS)]
        if provider == ALIEXPRESS:
            vid = str(12000000000000 + hv % 10**12)
        elif provider == CJ:
            vid = f"{source_id[-8:].upper()}-V{i + 1}{hv % 10**6:06d}"
        else:
            vid = f"var_{hv % 10**9:09d}"
        price = str(override.get("price", _cents(150 + hv // 13 % 9850)))
        variants.append(
            {
                "id": vid,
                "attr": f"14:{193 + i}#{colour}",
                "name": colour,
                "stock": int(override.get("stock", 0 if hv % 11 == 0 else hv % 200)),
                "price": price,
                "list_price": _cents(int(Decimal(price) * 100) + 300),  # before the discount
            }
        )
    return {
        "id": source_id,
        "title": f"Fake product {source_id}",
        "images": [f"https://img.fake-supplier.test/{provider.lower()}/{source_id}/{k}.jpg" for k in range(1 + h % 2)],
        "currency": "USD",
        "shipping": str(override.get("shipping", shipping)),
        "variants": variants,
    }


def gone_style(source_id: str) -> str:
    """How a removed product shows: ``missing`` (not found / absent from a list)
    or ``delisted`` (still answered, with an offline/inactive status)."""
    return "missing" if _h("gone", source_id) % 2 == 0 else "delisted"


def shipped(order: dict[str, Any]) -> bool:
    return not order["cancelled"] and time.time() - order["created_at"] >= order["tracking_delay_s"]


def delivered(order: dict[str, Any]) -> bool:
    after = order.get("delivered_after_s")
    return shipped(order) and after is not None and time.time() - order["created_at"] >= after


_WORDS = {
    ALIEXPRESS: ("PLACE_ORDER_SUCCESS", "WAIT_BUYER_ACCEPT_GOODS", "FINISH", "IN_CANCEL"),
    CJ: ("CREATED", "SHIPPED", "DELIVERED", "CANCELLED"),
    SPOCKET: ("pending", "shipped", "delivered", "cancelled"),
}


def status_word(order: dict[str, Any]) -> str:
    placed, sent, done, cancelled = _WORDS[order["provider"]]
    if order["cancelled"]:
        return cancelled
    if delivered(order):
        return done
    return sent if shipped(order) else placed


def ae_sign(params: dict[str, str], secret: str) -> str:
    """The fake's own implementation of AliExpress signing (independent of the adapter's)."""
    message = "".join(k + params[k] for k in sorted(params) if k != "sign")
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest().upper()


# --------------------------------------------------------------------------- #
# HTTP
# --------------------------------------------------------------------------- #


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: a stopped fake refuses at once
    server_version = "FakeSupplier/1.0"
    # http.server writes the headers and the body in two sends; with Nagle on, the
    # body waits for the client's delayed ACK of the headers (up to 40 ms a reply).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        if os.environ.get("FAKE_SUPPLIER_LOG"):
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -----------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        state = self.server.state
        state.count("requests")
        parts = urlsplit(self.path)
        path, query = parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise _Reply(413, {"error": "body too large"})
            self.raw = self.rfile.read(length) if length > 0 else b""
            for provider, prefix in PREFIXES.items():
                if path.startswith(prefix + "/"):
                    state.arrived(provider)
            if path.startswith("/_admin/"):
                self._admin(method, path)
            elif path == "/aliexpress/sync" and method == "POST":
                self._aliexpress(query)
            elif path.startswith("/cj/api2.0/v1/"):
                self._cj(method, path[len("/cj/api2.0/v1") :], query)
            elif path.startswith("/spocket/api/v1/"):
                self._spocket(method, path[len("/spocket/api/v1") :], query)
            else:
                raise _Reply(404, {"error": "not_found", "message": f"no route {method} {path}"})
        except _Reply as reply:
            self._send(reply.status, reply.body, reply.headers)
        except Exception as exc:  # a bug in the fake: say so loudly
            self._send(500, {"error": "fake_bug", "message": repr(exc)})

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout failure)

    def _json(self) -> Any:
        try:
            return json.loads(self.raw or b"null")
        except ValueError:
            raise _Reply(400, {"error": "bad_json", "message": "body is not JSON"}) from None

    def _inject(self, provider: str, error_body: Any) -> str | None:
        """Apply the failure plan to a create. Returns ``500_after_record`` when
        the caller must record and then fail; raises for the other kinds."""
        state = self.server.state
        kind = state.next_failure(provider)
        if kind == "500":
            raise _Reply(500, error_body)
        if kind == "429":
            after = state.config.retry_after
            seconds = str(int(after)) if float(after).is_integer() else str(after)
            raise _Reply(429, {"error": "too_many_requests", "message": "Too Many Requests"}, {"Retry-After": seconds})
        if kind == "timeout":
            time.sleep(state.config.timeout_sleep_s)
            raise _Reply(504, error_body)
        return kind

    def _inject_read(self, provider: str, error_body: Any) -> None:
        """Apply the read failure plan to a product read (raises for a failure)."""
        self._fail_read(self.server.state.next_read_failure(provider), error_body)

    def _inject_freight(self, provider: str, request: dict[str, Any], error_body: Any) -> None:
        """Count a freight request and apply the freight failure plan (raises for a failure)."""
        self._fail_read(self.server.state.next_freight_failure(provider, request), error_body)

    def _fail_read(self, kind: str | None, error_body: Any) -> None:
        state = self.server.state
        if kind == "500":
            raise _Reply(500, error_body)
        if kind == "429":
            after = state.config.retry_after
            seconds = str(int(after)) if float(after).is_integer() else str(after)
            raise _Reply(429, {"error": "too_many_requests", "message": "Too Many Requests"}, {"Retry-After": seconds})
        if kind == "timeout":
            time.sleep(state.config.timeout_sleep_s)
            raise _Reply(504, error_body)

    # --------------------------------------------------------------- admin

    def _admin(self, method: str, path: str) -> None:
        state = self.server.state
        if path == "/_admin/health":
            raise _Reply(200, {"ok": True})
        if path == "/_admin/orders" and method == "GET":
            raise _Reply(200, state.snapshot())
        if path == "/_admin/requests" and method == "GET":
            raise _Reply(200, {"per_second": state.requests_per_second(),
                               "product_requests": dict(state.stats["product_requests"]),
                               "freight_requests": dict(state.stats["freight_requests"]),
                               "aliexpress_ship_to": dict(state.stats["aliexpress_ship_to"])})
        if path == "/_admin/freight" and method == "GET":
            q = dict(parse_qsl(urlsplit(self.path).query))
            amount = state.cheapest_freight(q.get("provider", ""), q.get("id", ""), q.get("ref", ""),
                                            q.get("country", ""))
            raise _Reply(200, {"amount": amount})
        if path == "/_admin/products" and method == "GET":
            query = dict(parse_qsl(urlsplit(self.path).query))
            raise _Reply(200, {"product": state.product(query.get("provider", ""), query.get("id", ""))})
        if path == "/_admin/config" and method == "GET":
            raise _Reply(200, asdict(state.config))
        if path == "/_admin/config" and method == "POST":
            body = self._json() or {}
            if not isinstance(body, dict):
                raise _Reply(400, {"error": "expected a JSON object"})
            try:
                raise _Reply(200, state.configure(body))
            except (TypeError, ValueError) as exc:
                raise _Reply(400, {"error": "bad_config", "message": str(exc)}) from None
        if path == "/_admin/reset" and method == "POST":
            body = self._json() or {}
            state.reset(keep_config=bool(isinstance(body, dict) and body.get("keep_config")))
            raise _Reply(200, {"ok": True})
        raise _Reply(404, {"error": "not_found"})

    # ----------------------------------------------------------- aliexpress

    def _aliexpress(self, query: dict[str, str]) -> None:
        creds, state = self.server.credentials, self.server.state
        params = dict(query)
        params.update(dict(parse_qsl(self.raw.decode("utf-8", "replace"), keep_blank_values=True)))
        request_id = uuid.uuid4().hex[:13]

        def error(code: str, msg: str, kind: str = "ISV") -> _Reply:
            return _Reply(200, {"error_response": {"type": kind, "code": code, "msg": msg, "request_id": request_id}})

        app_key, sign = params.get("app_key", ""), params.get("sign", "")
        if not hmac.compare_digest(app_key.encode(), creds.aliexpress_app_key.encode()):
            state.count("auth_failures")
            raise error("InvalidAppKey", "The app key is invalid")
        if params.get("sign_method") != "sha256" or not sign:
            state.count("auth_failures")
            raise error("IncompleteSignature", "sign_method must be sha256 and sign present")
        if not hmac.compare_digest(sign.encode(), ae_sign(params, creds.aliexpress_app_secret).encode()):
            state.count("auth_failures")
            raise error("IncompleteSignature", "The request signature does not conform to platform standards")
        try:
            skew = abs(time.time() - int(params.get("timestamp", "0")) / 1000)
        except ValueError:
            skew = float("inf")
        if skew > 900:
            raise error("InvalidTimestamp", "timestamp is missing or too far from the server's time")
        token = params.get("access_token") or params.get("session") or ""
        if not hmac.compare_digest(token.encode(), creds.aliexpress_access_token.encode()):
            state.count("auth_failures")
            raise error("IllegalAccessToken", "The specified access token is invalid or expired")

        method = params.get("method", "")
        key = method.replace(".", "_") + "_response"
        if method == "aliexpress.trade.buy.placeorder":
            raise _Reply(200, {key: {"result": self._ae_place(params), "request_id": request_id}})
        if method == "aliexpress.ds.product.get":
            self._inject_read(ALIEXPRESS, {"error": "internal", "message": "Internal Server Error"})
            pid = params.get("product_id", "")
            if not pid:
                raise error("MissingParameter", "product_id is required")
            with state.lock:
                ship_to = state.stats["aliexpress_ship_to"]
                country = params.get("ship_to_country", "")
                ship_to[country] = ship_to.get(country, 0) + 1
            product = state.product(ALIEXPRESS, pid)
            if product is None and gone_style(pid) == "missing":
                raise error("isv.product-not-exist", "The product does not exist or has been removed")
            raise _Reply(200, {key: {"result": _ae_product(pid, product), "rsp_code": 200,
                                     "rsp_msg": "Call succeeds", "request_id": request_id}})
        if method == "aliexpress.ds.freight.query":
            raise _Reply(200, {key: {"result": self._ae_freight(params), "request_id": request_id}})
        if method == "aliexpress.trade.ds.order.get":
            raw_query = params.get("single_order_query") or "{}"
            try:
                q = json.loads(raw_query)
            except ValueError:
                raise error("MissingParameter", "single_order_query must be JSON") from None
            if q.get("order_id") not in (None, ""):
                order = state.by_id(ALIEXPRESS, str(q["order_id"]))
            elif q.get("out_order_id"):
                found = state.by_reference(ALIEXPRESS, str(q["out_order_id"]))
                order = found[0] if found else None
            else:
                raise error("MissingParameter", "order_id or out_order_id is required")
            if order is None:
                raise _Reply(200, {key: {"rsp_code": 404, "rsp_msg": "order not found", "request_id": request_id}})
            result = {
                "order_id": int(order["supplier_order_id"]),
                "out_order_id": order["reference"],
                "order_status": status_word(order),
                "logistics_status": "SELLER_SEND_GOODS" if shipped(order) else "NO_LOGISTICS",
                "gmt_create": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(order["created_at"])),
                "receipt_address": {"country": order.get("country")},
                "logistics_info_list": {
                    "ae_order_logistics_info": (
                        [{"logistics_no": order["tracking_number"], "logistics_service": order["logistics_service"]}]
                        if shipped(order)
                        else []
                    )
                },
            }
            raise _Reply(200, {key: {"result": result, "rsp_code": 200, "request_id": request_id}})
        if method == "aliexpress.logistics.ds.trackinginfo.query":
            order = state.by_tracking(ALIEXPRESS, params.get("logistics_no", ""))
            if order is None:
                raise _Reply(200, {key: {"result_success": False, "error_desc": "no tracking information yet"}})
            events = [{"event_desc": "Accepted by carrier", "status": "PICKEDUP", "event_date": "", "address": "CN"}]
            if delivered(order):
                events.append({"event_desc": "Delivered", "status": "DELIVERED", "event_date": "", "address": ""})
            raise _Reply(
                200,
                {
                    key: {
                        "result_success": True,
                        "official_website": order["tracking_url"],
                        "details": {"details": events},
                        "request_id": request_id,
                    }
                },
            )
        if method == "aliexpress.trade.ds.order.cancel":
            order = state.by_id(ALIEXPRESS, params.get("order_id", ""))
            if order is None:
                raise error("isv.order-not-found", "order not found")
            if state.cancel(order):
                raise _Reply(200, {key: {"result": {"is_success": True}, "request_id": request_id}})
            result = {
                "is_success": False,
                "error_code": "ORDER_STATUS_NOT_SUPPORT_CANCEL",
                "error_msg": "the order has shipped",
            }
            raise _Reply(200, {key: {"result": result, "request_id": request_id}})
        raise error("InvalidApiPath", f"The specified API {method!r} is not found")

    def _ae_freight(self, params: dict[str, str]) -> dict[str, Any]:
        state = self.server.state
        try:
            req = json.loads(params.get("queryDeliveryReq") or "")
        except ValueError:
            req = None
        if not isinstance(req, dict):
            return {"success": False, "code": 400, "msg": "queryDeliveryReq must be a JSON object"}
        self._inject_freight(ALIEXPRESS, req, {"error": "internal", "message": "Internal Server Error"})
        missing = [k for k in ("productId", "shipToCountry", "quantity") if req.get(k) in (None, "")]
        if missing:
            return {"success": False, "code": 400, "msg": f"{', '.join(missing)} required"}
        pid, country = str(req["productId"]), str(req["shipToCountry"])
        currency = str(req.get("currency") or "USD")
        product = state.product(ALIEXPRESS, pid)
        if product is None:
            return {"success": False, "code": 501, "msg": "The product does not exist or has been removed"}
        sku = str(req.get("selectedSkuId") or product["variants"][0]["id"])
        options = state.freight(ALIEXPRESS, pid, sku, country)
        if options is None:
            return {"success": False, "code": 501, "msg": f"sku {sku} not found in product {pid}"}
        rows = []
        for i, (name, amount) in enumerate(options):
            row: dict[str, Any] = {
                "code": name.upper().replace(" ", "_"), "company": name, "shipping_fee_currency": currency,
                "free_shipping": amount == "0.00", "min_delivery_days": 5 + 3 * i, "max_delivery_days": 12 + 4 * i,
                "tracking": True, "ship_from_country": "CN", "delivery_date_desc": "",
            }
            if amount != "0.00":  # a free option carries no fee, only free_shipping
                row["shipping_fee_cent"] = amount
                row["shipping_fee_format"] = f"US ${amount}"
            rows.append(row)
        return {"success": True, "code": 200, "msg": "Call succeeds",
                "delivery_options": {"delivery_option_d_t_o": rows}}

    def _ae_place(self, params: dict[str, str]) -> dict[str, Any]:
        try:
            dto = json.loads(params.get("param_place_order_request4_open_api_d_t_o") or "")
        except ValueError:
            return {"is_success": False, "error_code": "PARAM_ERROR", "error_msg": "request DTO is not JSON"}
        address = dto.get("logistics_address") or {}
        items = dto.get("product_items") or []
        if not all(address.get(k) for k in ("address", "city", "country", "contact_person")):
            return {
                "is_success": False,
                "error_code": "B_DROPSHIPPER_DELIVERY_ADDRESS_VALIDATE_FAIL",
                "error_msg": "address, city, country and contact_person are required",
            }
        if not items or not all(i.get("product_id") and int(i.get("product_count") or 0) >= 1 for i in items):
            return {"is_success": False, "error_code": "PRODUCT_ITEMS_INVALID", "error_msg": "no valid product item"}
        kind = self._inject(ALIEXPRESS, {"error": "internal", "message": "Internal Server Error"})
        order = self.server.state.create(
            ALIEXPRESS, str(dto.get("out_order_id") or ""), {"lines": len(items), "country": address.get("country")}
        )
        if kind == "500_after_record":
            raise _Reply(500, {"error": "internal", "message": "Internal Server Error"})
        return {"is_success": True, "order_list": {"number": [int(order["supplier_order_id"])]}}

    # ------------------------------------------------------------------ cj

    def _cj(self, method: str, path: str, query: dict[str, str]) -> None:
        state = self.server.state
        token = self.headers.get("CJ-Access-Token") or ""
        if not hmac.compare_digest(token.encode(), self.server.credentials.cj_access_token.encode()):
            state.count("auth_failures")
            raise _Reply(401, _cj_body(1600001, "Invalid API key or access token", None))
        if path == "/shopping/order/createOrderV2" and method == "POST":
            body = self._json()
            if not isinstance(body, dict):
                raise _Reply(200, _cj_body(1600100, "Param error: body must be an object", None))
            products = body.get("products") or []
            missing = [k for k in ("orderNumber", "shippingCountryCode", "shippingCustomerName", "shippingAddress")
                       if not body.get(k)]
            if missing:
                raise _Reply(200, _cj_body(1600100, f"Param error: {', '.join(missing)} required", None))
            if not products or not all(p.get("vid") and int(p.get("quantity") or 0) >= 1 for p in products):
                raise _Reply(200, _cj_body(1600100, "Param error: products invalid", None))
            kind = self._inject(CJ, _cj_body(500, "Internal Server Error", None))
            order = state.create(CJ, str(body["orderNumber"]), {"lines": len(products),
                                                                "country": body["shippingCountryCode"]})
            if kind == "500_after_record":
                raise _Reply(500, _cj_body(500, "Internal Server Error", None))
            raise _Reply(200, _cj_body(200, "Success", _cj_order(order, full=False)))
        if path == "/product/query" and method == "GET":
            self._inject_read(CJ, _cj_body(500, "Internal Server Error", None))
            pid = query.get("pid", "")
            if not pid:
                raise _Reply(200, _cj_body(1600100, "Param error: pid is required", None))
            product = state.product(CJ, pid)
            if product is None:
                raise _Reply(200, _cj_body(1605001, "Product does not exist or has been removed", None))
            state.shown_cj(product)
            raise _Reply(200, _cj_body(200, "Success", _cj_product(product)))
        if path == "/product/list" and method == "GET":
            self._inject_read(CJ, _cj_body(500, "Internal Server Error", None))
            pids = [p for p in query.get("pids", "").split(",") if p]
            if not pids:
                raise _Reply(200, _cj_body(1600100, "Param error: pids is required", None))
            if len(pids) > CJ_LIST_MAX:
                raise _Reply(200, _cj_body(1600100, f"Param error: at most {CJ_LIST_MAX} pids", None))
            found = [p for p in (state.product(CJ, pid) for pid in pids) if p is not None]
            for product in found:
                state.shown_cj(product)
            data = {"pageNum": 1, "pageSize": len(pids), "total": len(found), "list": [_cj_product(p) for p in found]}
            raise _Reply(200, _cj_body(200, "Success", data))
        if path == "/logistic/freightCalculate" and method == "POST":
            body = self._json()
            self._inject_freight(CJ, body if isinstance(body, dict) else {}, _cj_body(500, "Internal Server Error", None))
            products = body.get("products") if isinstance(body, dict) else None
            if (not isinstance(body, dict) or not body.get("startCountryCode") or not body.get("endCountryCode")
                    or not isinstance(products, list) or len(products) != 1
                    or not products[0].get("vid") or int(products[0].get("quantity") or 0) < 1):
                raise _Reply(200, _cj_body(1600100, "Param error: startCountryCode, endCountryCode and one "
                                                     "product {vid, quantity} required", None))
            vid = str(products[0]["vid"])
            with state.lock:
                pid = state.cj_vids.get(vid)
            options = None if pid is None else state.freight(CJ, pid, vid, str(body["endCountryCode"]))
            if options is None:
                raise _Reply(200, _cj_body(1600100, f"Param error: variant {vid} does not exist", None))
            data = [{"logisticName": name, "logisticPrice": float(amount), "logisticPriceCn": float(amount) * 7,
                     "logisticAging": "7-15", "taxesFee": 0} for name, amount in options]
            raise _Reply(200, _cj_body(200, "Success", data))
        if path == "/shopping/order/getOrderDetail" and method == "GET":
            if query.get("orderId"):
                order = state.by_id(CJ, query["orderId"])
            elif query.get("orderNumber"):
                found = state.by_reference(CJ, query["orderNumber"])
                order = found[0] if found else None
            else:
                raise _Reply(200, _cj_body(1600100, "Param error: orderId is required", None))
            if order is None:
                raise _Reply(200, _cj_body(1603001, "Order does not exist", None))
            raise _Reply(200, _cj_body(200, "Success", _cj_order(order, full=True)))
        if path == "/logistic/trackInfo" and method == "GET":
            order = state.by_tracking(CJ, query.get("trackNumber", ""))
            data = []
            if order is not None:
                data.append(
                    {
                        "trackingNumber": order["tracking_number"],
                        "logisticName": order["carrier"],
                        "trackingFrom": "CN",
                        "trackingTo": order.get("country"),
                        "trackingStatus": "Delivered" if delivered(order) else "In transit",
                        "deliveryDay": "7-12",
                    }
                )
            raise _Reply(200, _cj_body(200, "Success", data))
        if path == "/shopping/order/deleteOrder" and method == "DELETE":
            order = state.by_id(CJ, query.get("orderId", ""))
            if order is None:
                raise _Reply(200, _cj_body(1603001, "Order does not exist", None))
            if not state.cancel(order):
                raise _Reply(200, _cj_body(1603002, "Order status does not support deletion (shipped)", None))
            raise _Reply(200, _cj_body(200, "Success", order["supplier_order_id"]))
        raise _Reply(404, _cj_body(404, f"no route {method} {path}", None))

    # ------------------------------------------------------------- spocket

    def _spocket(self, method: str, path: str, query: dict[str, str]) -> None:
        state = self.server.state
        auth = self.headers.get("Authorization") or ""
        expected = f"Bearer {self.server.credentials.spocket_api_key}"
        if not hmac.compare_digest(auth.encode(), expected.encode()):
            state.count("auth_failures")
            raise _Reply(401, {"error": "unauthorized", "message": "invalid or missing API key"})
        segments = [s for s in path.split("/") if s]
        if segments == ["products"] and method == "GET":
            self._inject_read(SPOCKET, {"error": "internal", "message": "Internal Server Error"})
            ids = [p for p in query.get("ids", "").split(",") if p]
            if not ids:
                raise _Reply(422, {"error": "validation_failed", "message": "ids is required"})
            if len(ids) > SPOCKET_LIST_MAX:
                raise _Reply(422, {"error": "validation_failed", "message": f"at most {SPOCKET_LIST_MAX} ids"})
            products = []
            for pid in ids:
                product = state.product(SPOCKET, pid)
                if product is not None:
                    products.append(_spocket_product(product, active=True))
                elif gone_style(pid) == "delisted":
                    products.append(_spocket_product(product_spec(SPOCKET, pid, state.config.seed), active=False))
            raise _Reply(200, {"products": products})
        if segments == ["orders"] and method == "POST":
            body = self._json()
            if not isinstance(body, dict):
                raise _Reply(422, {"error": "validation_failed", "message": "body must be an object"})
            items = body.get("line_items") or []
            address = body.get("shipping_address") or {}
            problems = []
            if not body.get("external_id"):
                problems.append("external_id is required")
            if not items or not all(i.get("product_id") and int(i.get("quantity") or 0) >= 1 for i in items):
                problems.append("line_items are invalid")
            if not all(address.get(k) for k in ("name", "address1", "city", "country_code")):
                problems.append("shipping_address is incomplete")
            if problems:
                raise _Reply(422, {"error": "validation_failed", "message": "; ".join(problems)})
            kind = self._inject(SPOCKET, {"error": "internal", "message": "Internal Server Error"})
            order = state.create(SPOCKET, str(body["external_id"]), {"lines": len(items),
                                                                    "country": address.get("country_code")})
            if kind == "500_after_record":
                raise _Reply(500, {"error": "internal", "message": "Internal Server Error"})
            raise _Reply(201, {"order": _spocket_order(order, fresh=True)})
        if segments == ["orders"] and method == "GET":
            ref = query.get("external_id")
            with state.lock:
                orders = [o for o in state.orders if o["provider"] == SPOCKET and (ref is None or o["reference"] == ref)]
            raise _Reply(200, {"orders": [_spocket_order(o) for o in orders]})
        if len(segments) == 2 and segments[0] == "orders" and method == "GET":
            order = state.by_id(SPOCKET, segments[1])
            if order is None:
                raise _Reply(404, {"error": "not_found", "message": "order not found"})
            raise _Reply(200, {"order": _spocket_order(order)})
        if len(segments) == 3 and segments[0] == "orders" and segments[2] == "cancel" and method == "POST":
            order = state.by_id(SPOCKET, segments[1])
            if order is None:
                raise _Reply(404, {"error": "not_found", "message": "order not found"})
            if not state.cancel(order):
                raise _Reply(422, {"error": "order_shipped", "message": "the order has shipped"})
            raise _Reply(200, {"order": _spocket_order(order)})
        raise _Reply(404, {"error": "not_found", "message": f"no route {method} {path}"})


CJ_LIST_MAX = 20
SPOCKET_LIST_MAX = 50


def _ae_product(pid: str, product: dict[str, Any] | None) -> dict[str, Any]:
    """``aliexpress.ds.product.get``'s result; a delisted product (None) keeps
    its id and an ``offline`` status, without SKUs."""
    if product is None:
        return {"ae_item_base_info_dto": {"product_id": int(pid) if pid.isdigit() else pid,
                                          "product_status_type": "offline"},
                "ae_item_sku_info_dtos": {"ae_item_sku_info_d_t_o": []}}
    skus = [
        {
            "sku_id": v["id"],
            "id": v["attr"],
            "sku_attr": v["attr"],
            "sku_price": v["list_price"],
            "offer_sale_price": v["price"],
            "sku_available_stock": v["stock"],
            "currency_code": product["currency"],
        }
        for v in product["variants"]
    ]
    return {
        "ae_item_base_info_dto": {
            "product_id": int(pid) if pid.isdigit() else pid,
            "subject": product["title"],
            "product_status_type": "onSelling",
            "currency_code": product["currency"],
        },
        "ae_item_sku_info_dtos": {"ae_item_sku_info_d_t_o": skus},
        "ae_multimedia_info_dto": {"image_urls": ";".join(product["images"])},
    }


def _cj_product(product: dict[str, Any]) -> dict[str, Any]:
    """CJ's product object: prices as JSON numbers, stock per warehouse."""
    variants = []
    for v in product["variants"]:
        china = v["stock"] // 2
        variants.append(
            {
                "vid": v["id"],
                "pid": product["id"],
                "variantNameEn": v["name"],
                "variantSellPrice": float(v["price"]),  # a JSON number, as CJ sends
                "inventories": [{"areaEn": "China", "totalInventory": china},
                                {"areaEn": "US", "totalInventory": v["stock"] - china}],
            }
        )
    prices = [float(v["price"]) for v in product["variants"]]
    return {
        "pid": product["id"],
        "productNameEn": product["title"],
        "productImageSet": product["images"],
        "sellPrice": f"{min(prices):.2f} -- {max(prices):.2f}" if len(prices) > 1 else f"{prices[0]:.2f}",
        "variants": variants,
    }


def _spocket_product(product: dict[str, Any], *, active: bool) -> dict[str, Any]:
    return {
        "id": product["id"],
        "title": product["title"],
        "status": "active" if active else "inactive",
        "currency": product["currency"],
        "images": [{"src": url} for url in product["images"]],
        "shipping": {"cost": product["shipping"]},
        "variants": [
            {"id": v["id"], "title": v["name"], "price": v["price"], "inventory_quantity": v["stock"] if active else 0}
            for v in product["variants"]
        ],
    }


def _cj_body(code: int, message: str, data: Any) -> dict[str, Any]:
    return {"code": code, "result": code == 200, "message": message, "data": data, "requestId": uuid.uuid4().hex}


def _cj_order(order: dict[str, Any], *, full: bool) -> dict[str, Any]:
    data = {
        "orderId": order["supplier_order_id"],
        "orderNumber": order["reference"],
        "orderStatus": status_word(order) if full else _WORDS[CJ][0],
    }
    if full:
        data["trackNumber"] = order["tracking_number"] if shipped(order) else None
        data["logisticName"] = order["carrier"]
        data["shippingCountryCode"] = order.get("country")
    return data


def _spocket_order(order: dict[str, Any], *, fresh: bool = False) -> dict[str, Any]:
    """``fresh``: the answer to its create (placed, no tracking yet)."""
    tracking = None
    if shipped(order) and not fresh:
        tracking = {
            "number": order["tracking_number"],
            "carrier": order["carrier"],
            "url": order["tracking_url"],
            "status": "delivered" if delivered(order) else "in_transit",
        }
    return {
        "id": order["supplier_order_id"],
        "external_id": order["reference"],
        "status": _WORDS[SPOCKET][0] if fresh else status_word(order),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(order["created_at"]))
        + f".{int(order['created_at'] * 1e6) % 1_000_000:06d}Z",
        "tracking": tracking,
    }


class _KeepAliveHandler(_Handler):
    """HTTP/1.1 with keep-alive, as real supplier APIs are (for benchmarks: a stopped fake
    then refuses only new connections)."""

    protocol_version = "HTTP/1.1"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default backlog of 5 refuses connections under a burst of
    # concurrent clients (one connection per request, HTTP/1.0).
    request_queue_size = 512

    def __init__(
        self, address: tuple[str, int], state: SupplierState, credentials: FakeCredentials, keep_alive: bool = False
    ) -> None:
        self.state = state
        self.credentials = credentials
        super().__init__(address, _KeepAliveHandler if keep_alive else _Handler)


# --------------------------------------------------------------------------- #
# Running it
# --------------------------------------------------------------------------- #


class _Admin:
    """The admin endpoints over HTTP (for a fake in another process)."""

    url: str

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read()[:300]!r}") from None

    def base_url(self, provider: str) -> str:
        """The adapter's ``base_url`` for ``provider`` (ALIEXPRESS, CJ_DROPSHIPPING, SPOCKET)."""
        return self.url + PREFIXES[provider]

    def orders(self) -> dict[str, Any]:
        return self._call("GET", "/_admin/orders")

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._call("POST", "/_admin/config", changes)

    def reset(self, keep_config: bool = False) -> None:
        self._call("POST", "/_admin/reset", {"keep_config": keep_config})

    def requests(self) -> dict[str, Any]:
        """``{"per_second": {provider: {epoch second: count}}, "product_requests": {provider: n},
        "freight_requests": {provider: n}, "aliexpress_ship_to": {country: product gets}}``."""
        return self._call("GET", "/_admin/requests")

    def product(self, provider: str, source_id: str) -> dict[str, Any] | None:
        """The fake's truth about a product (None: removed)."""
        query = urllib.parse.urlencode({"provider": provider, "id": source_id})
        return self._call("GET", f"/_admin/products?{query}")["product"]

    def freight(self, provider: str, source_id: str, ref: str, country: str) -> str | None:
        """The fake's cheapest freight of one unit of variant ``ref`` to ``country`` (None: no option)."""
        query = urllib.parse.urlencode({"provider": provider, "id": source_id, "ref": ref, "country": country})
        return self._call("GET", f"/_admin/freight?{query}")["amount"]


class FakeSupplierServer(_Admin):
    """The fake in this process, served from a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        failure_rate: float = 0.0,
        seed: int | None = None,
        kinds: list[str] | tuple[str, ...] = KINDS,
        state_file: str | os.PathLike[str] | None = None,
        credentials: FakeCredentials | None = None,
        keep_alive: bool = False,
        **config: Any,
    ) -> None:
        self.keep_alive = keep_alive
        cfg = FakeConfig(failure_rate=failure_rate, seed=seed, kinds=list(kinds), **config)
        self.state = SupplierState(cfg, Path(state_file) if state_file else None)
        self.credentials = credentials or FakeCredentials()
        self.host, self.port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:  # type: ignore[override]
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeSupplierServer:
        self._server = _Server((self.host, self.port), self.state, self.credentials, self.keep_alive)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-supplier", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused from now on."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSupplierServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # direct (no HTTP) versions of the admin endpoints
    def orders(self) -> dict[str, Any]:
        return self.state.snapshot()

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self.state.configure(changes)

    def reset(self, keep_config: bool = False) -> None:
        self.state.reset(keep_config)

    def requests(self) -> dict[str, Any]:
        return {"per_second": self.state.requests_per_second(),
                "product_requests": dict(self.state.stats["product_requests"]),
                "freight_requests": dict(self.state.stats["freight_requests"]),
                "aliexpress_ship_to": dict(self.state.stats["aliexpress_ship_to"])}

    def product(self, provider: str, source_id: str) -> dict[str, Any] | None:
        return self.state.product(provider, source_id)

    def freight(self, provider: str, source_id: str, ref: str, country: str) -> str | None:
        return self.state.cheapest_freight(provider, source_id, ref, country)

    def freight_log(self) -> list[dict[str, Any]]:
        """The last freight requests' parameters, newest last."""
        with self.state.lock:
            return list(self.state.freight_log)


class SupplierServerProcess(_Admin):
    """The fake as a separate process (``python -m tests.fakes.supplier_server``)."""

    def __init__(
        self,
        port: int = 0,
        *,
        failure_rate: float = 0.0,
        seed: int | None = None,
        state_file: str | os.PathLike[str] | None = None,
        kinds: list[str] | tuple[str, ...] | None = None,
        extra_args: list[str] | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self.args = [sys.executable, "-m", "tests.fakes.supplier_server", "--port", str(port)]
        self.args += ["--failure-rate", str(failure_rate)]
        if seed is not None:
            self.args += ["--seed", str(seed)]
        if state_file is not None:
            self.args += ["--state-file", str(state_file)]
        if kinds is not None:
            self.args += ["--kinds", ",".join(kinds)]
        self.args += extra_args or []
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> SupplierServerProcess:
        self.proc = subprocess.Popen(
            self.args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(self.startup_timeout)
        if not line or not line[0].startswith("READY "):
            self.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"fake supplier did not start: {line!r} {err[-2000:]}")
        self.url = line[0].split()[1]
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: a supplier crash (what the state file survives)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> SupplierServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        for stream in (self.proc.stdout, self.proc.stderr) if self.proc else ():
            if stream:
                stream.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.supplier_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--state-file", default=None, help="persist recorded orders here (kept across restarts)")
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--timeout-sleep", type=float, default=2.0, help="s slept by the timeout failure")
    parser.add_argument("--tracking-delay", type=float, default=0.0, help="s from creation to a tracking number")
    parser.add_argument("--delivered-after", type=float, default=None, help="s from creation to delivery")
    parser.add_argument("--keep-alive", action="store_true", help="HTTP/1.1 keep-alive (as real APIs)")
    args = parser.parse_args(argv)
    fake = FakeSupplierServer(
        args.host,
        args.port,
        failure_rate=args.failure_rate,
        seed=args.seed,
        kinds=[k for k in args.kinds.split(",") if k.strip()],
        state_file=args.state_file,
        retry_after=args.retry_after,
        timeout_sleep_s=args.timeout_sleep,
        tracking_delay_s=args.tracking_delay,
        delivered_after_s=args.delivered_after,
        keep_alive=args.keep_alive,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fake.start()
    print(f"READY {fake.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
