"""A tracked product's state, and its compact encoding for the product table.

The state of a million products lives in one worker's memory, so a table value
is the product's state encoded as a small JSON array (bytes), about 200 bytes,
instead of a Python object of a kilobyte. Decoding it is a single
``orjson.loads``; the encoding is versioned by its first element.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson

from models.events import AlertStatus, AlertType, ProductStatus, ProductView, trusted

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
KEY_SEP = "|"
_ENCODING_VERSION = 1
#: A changelog record that also carries its transition's outputs (the outbox).
_WITH_OUTBOX = 2
_STATUS_CODE = {ProductStatus.ACTIVE: "A", ProductStatus.OUT_OF_STOCK: "O"}
_CODE_STATUS = {v: k for k, v in _STATUS_CODE.items()}


def compact(raw: bytes) -> bytes:
    """A right-sized copy of ``raw``.

    orjson returns its bytes in a 4 KiB allocation whatever their length, so a
    250-byte state kept in a table took 4 KiB of memory (measured with
    tracemalloc: 6 KiB per tracked product). A table value is kept long, so it
    is copied into an object of its own size (two slices joined: 0.10 us, where
    ``bytes(memoryview(raw))`` took 0.15; a one-byte slice is CPython's cached object).
    """
    return raw[:-1] + raw[-1:]


def to_micros(moment: datetime) -> int:
    """Exact microseconds since the epoch (no float rounding)."""
    return (moment - EPOCH) // _US


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def product_key(store_id: str, product_id: str, variant_id: str | None) -> str:
    """Key of a product in the product table: ``store|product|variant``.

    Its entries live on the partition of ``store_id`` (the agent writes them
    while handling a message keyed by the store), and web views route requests
    by ``store_id`` for that reason.
    """
    return f"{store_id}{KEY_SEP}{product_id}{KEY_SEP}{variant_id or ''}"


def split_product_key(key: str) -> tuple[str, str, str | None]:
    store_id, product_id, variant_id = key.split(KEY_SEP, 2)
    return store_id, product_id, variant_id or None


def store_prefix(store_id: str) -> str:
    return f"{store_id}{KEY_SEP}"


def _list_order(key: str) -> tuple[str, str]:
    _, product_id, variant_id = key.split(KEY_SEP, 2)
    return product_id, variant_id


def product_cursor(key: str) -> str:
    """The cursor a product list continues after: ``product_id|variant_id`` of ``key``."""
    return key.split(KEY_SEP, 1)[1]


def product_page(
    keys: Iterable[str],
    data: Mapping[str, bytes],
    after: str | None,
    limit: int,
    status: ProductStatus | None = None,
) -> tuple[list[tuple[str, bytes]], bool, int]:
    """One page of a store's product list: (key, state) pairs, whether more follow,
    and how many products the whole list holds.

    ``keys`` are the store's product keys and ``data`` the product table. The
    list is ordered by product id, then variant id (none first), and holds only
    products in ``status`` when given; the page starts after the cursor
    ``after`` (``product_cursor`` of the last key of the page before) and holds
    at most ``limit`` of them. A cursor stays valid while products come and go:
    the next page starts after its place in the order.
    """
    ordered = sorted(keys, key=_list_order)
    start = 0
    if after is not None:
        product_id, _, variant_id = after.partition(KEY_SEP)
        start = bisect_right(ordered, (product_id, variant_id), key=_list_order)
    page: list[tuple[str, bytes]] = []
    total = following = 0
    for index, key in enumerate(ordered):
        raw = data.get(key)
        if raw is None:
            continue
        if status is not None and _CODE_STATUS[state_fields(raw)[10]] is not status:
            continue
        total += 1
        if index >= start:
            if len(page) < limit:
                page.append((key, raw))
            else:
                following += 1
    return page, following > 0, total


@dataclass(frozen=True, slots=True)
class OpenAlert:
    alert_id: str
    status: AlertStatus


@dataclass(slots=True)
class ProductState:
    """What the engine knows of one product (or variant) of one store.

    A value: nothing changes one in place; a transition builds a new one
    (``dataclasses.replace``). Not ``frozen``: a frozen dataclass sets each of
    its 13 fields through ``object.__setattr__`` (1.0 us a state instead of
    0.2), and the diff builds two of them for every changed product.
    """

    provider: str
    source_id: str
    available: bool
    stock: int
    cost_price: Decimal
    shipping_cost: Decimal
    currency: str
    selling_price: Decimal
    compare_at_price: Decimal | None
    status: ProductStatus
    captured_at_us: int
    #: Alerts opened for this product and not yet resolved or dismissed.
    alerts: dict[AlertType, OpenAlert] = field(default_factory=dict)
    sync_run_id: str | None = None

    @property
    def captured_at(self) -> datetime:
        return from_micros(self.captured_at_us)

    def view(self) -> ProductView:
        return trusted(
            ProductView,
            status=self.status,
            available=self.available,
            stock=self.stock,
            cost_price=self.cost_price,
            shipping_cost=self.shipping_cost,
            currency=self.currency,
            selling_price=self.selling_price,
            compare_at_price=self.compare_at_price,
        )

    def with_alerts(self, alerts: dict[AlertType, OpenAlert]) -> ProductState:
        return replace(self, alerts=alerts)

    def to_json_dict(self, key: str) -> dict[str, Any]:
        """The state as the web views show it."""
        store_id, product_id, variant_id = split_product_key(key)
        return {
            "store_id": store_id,
            "product_id": product_id,
            "variant_id": variant_id,
            "provider": self.provider,
            "source_id": self.source_id,
            "status": self.status.value,
            "available": self.available,
            "stock": self.stock,
            "cost_price": str(self.cost_price),
            "shipping_cost": str(self.shipping_cost),
            "currency": self.currency,
            "selling_price": str(self.selling_price),
            "compare_at_price": None if self.compare_at_price is None else str(self.compare_at_price),
            "captured_at": self.captured_at.isoformat().replace("+00:00", "Z"),
            "sync_run_id": self.sync_run_id,
            "open_alerts": {t.value: {"alert_id": a.alert_id, "status": a.status.value} for t, a in self.alerts.items()},
        }


def encode_state(state: ProductState) -> bytes:
    alerts = {t.value: [a.alert_id, a.status.value] for t, a in state.alerts.items()} if state.alerts else None
    return compact(orjson.dumps(
        [
            _ENCODING_VERSION,
            state.provider,
            state.source_id,
            state.available,
            state.stock,
            str(state.cost_price),
            str(state.shipping_cost),
            state.currency,
            str(state.selling_price),
            None if state.compare_at_price is None else str(state.compare_at_price),
            _STATUS_CODE[state.status],
            state.captured_at_us,
            alerts,
            state.sync_run_id,
        ]
    ))


#: An output of a transition: (topic code, JSON bytes). Codes: "c" inventory.changes, "a" alerts.
OutboxItem = tuple[str, bytes]


def with_outbox(encoded: bytes, outbox: list[OutboxItem]) -> bytes:
    """The changelog form of a state: the state and the outputs its transition made.

    One record holds both, so a crash cannot keep the state and lose the
    outputs: whoever recovers a record that still has its outbox sends it
    again (the ids in it are deterministic). Memory holds the plain state.
    """
    fields = orjson.loads(encoded)
    fields[0] = _WITH_OUTBOX
    fields.append([[code, orjson.Fragment(value)] for code, value in outbox])
    return orjson.dumps(fields)


def has_outbox(raw: bytes) -> bool:
    return raw[1:3] == b"2,"


def split_outbox(raw: bytes) -> tuple[bytes, list[OutboxItem]]:
    """(plain state bytes, outbox) of a changelog record."""
    if not has_outbox(raw):
        return raw, []
    fields = orjson.loads(raw)
    outbox = [(code, orjson.dumps(value)) for code, value in fields.pop(14)]
    fields[0] = _ENCODING_VERSION
    return compact(orjson.dumps(fields)), outbox


def state_fields(raw: bytes) -> list[Any]:
    """The encoded state as its list of fields, without an outbox it may carry.

    Index: 1 provider, 2 source_id, 3 available, 4 stock, 5 cost_price,
    6 shipping_cost, 7 currency, 8 selling_price, 9 compare_at_price,
    10 status, 11 captured_at_us, 12 alerts, 13 sync_run_id.
    ``compact(orjson.dumps(fields))`` encodes it again.
    """
    fields = orjson.loads(raw)
    if len(fields) > 14:  # a recovered changelog record still carrying its outbox
        del fields[14:]
        fields[0] = _ENCODING_VERSION
    return fields


def decode_state(raw: bytes) -> ProductState:
    return state_of_fields(orjson.loads(raw))


def state_of_fields(fields: list[Any]) -> ProductState:
    """The state of an encoded state's fields (``state_fields``, or the record parsed whole)."""
    (
        version,
        provider,
        source_id,
        available,
        stock,
        cost,
        shipping,
        currency,
        selling,
        compare_at,
        status,
        captured_at_us,
        alerts,
        sync_run_id,
        *_outbox,
    ) = fields
    if version not in (_ENCODING_VERSION, _WITH_OUTBOX):  # pragma: no cover
        raise ValueError(f"unknown product state encoding {version}")
    return ProductState(
        provider=provider,
        source_id=source_id,
        available=available,
        stock=stock,
        cost_price=Decimal(cost),
        shipping_cost=Decimal(shipping),
        currency=currency,
        selling_price=Decimal(selling),
        compare_at_price=None if compare_at is None else Decimal(compare_at),
        status=_CODE_STATUS[status],
        captured_at_us=captured_at_us,
        alerts=(
            {AlertType(t): OpenAlert(a[0], AlertStatus(a[1])) for t, a in alerts.items()} if alerts else {}
        ),
        sync_run_id=sync_run_id,
    )
