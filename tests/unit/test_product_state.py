"""Unit tests of ``models.product``: the compact state encoding, keys and times."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from models.events import AlertStatus, AlertType, ProductStatus
from models.product import (
    EPOCH,
    OpenAlert,
    ProductState,
    compact,
    decode_state,
    encode_state,
    from_micros,
    product_key,
    split_product_key,
    store_prefix,
    to_micros,
)

D = Decimal
UTC = timezone.utc


def state(**overrides: object) -> ProductState:
    data: dict[str, object] = {
        "provider": "ALIEXPRESS",
        "source_id": "AE-100",
        "available": True,
        "stock": 20,
        "cost_price": D("10.00"),
        "shipping_cost": D("2.00"),
        "currency": "USD",
        "selling_price": D("18.99"),
        "compare_at_price": None,
        "status": ProductStatus.ACTIVE,
        "captured_at_us": 1_714_564_800_123_456,
        "alerts": {},
        "sync_run_id": None,
    }
    data.update(overrides)
    return ProductState(**data)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# encode_state / decode_state
# --------------------------------------------------------------------------- #

STATES = {
    "plain": state(),
    "with-sync-run": state(sync_run_id="run-42"),
    "compare-at-set": state(compare_at_price=D("22.99")),
    "out-of-stock-removed": state(available=False, stock=0, status=ProductStatus.OUT_OF_STOCK),
    "one-alert": state(alerts={AlertType.STOCK_LOW: OpenAlert("a-1", AlertStatus.ACTIVE)}),
    "many-alerts": state(
        stock=0,
        status=ProductStatus.OUT_OF_STOCK,
        compare_at_price=D("30.00"),
        sync_run_id="run-7",
        alerts={
            AlertType.STOCK_OUT: OpenAlert("2f1c-out", AlertStatus.ACTIVE),
            AlertType.PRICE_INCREASE: OpenAlert("9a7b-inc", AlertStatus.ACKNOWLEDGED),
            AlertType.STOCK_LOW: OpenAlert("c3d4-low", AlertStatus.ACTIVE),
        },
    ),
    "fine-decimals": state(cost_price=D("0.000001"), shipping_cost=D("0"), selling_price=D("0.99")),
    "big-amounts": state(cost_price=D("123456789012.123456"), selling_price=D("185185183518.99")),
    "unicode-and-pre-epoch": state(provider="SPOCKET", source_id="ü-ß/42", currency="EUR", captured_at_us=-1),
}


@pytest.mark.parametrize("original", list(STATES.values()), ids=list(STATES))
def test_encode_decode_round_trip(original: ProductState) -> None:
    raw = encode_state(original)
    assert isinstance(raw, bytes)
    back = decode_state(raw)
    assert back == original
    assert encode_state(back) == raw  # stable: re-encoding gives the same bytes
    # the exact decimal text survives (18.90 stays 18.90, not 18.9)
    for name in ("cost_price", "shipping_cost", "selling_price", "compare_at_price"):
        assert str(getattr(back, name)) == str(getattr(original, name))
    assert all(isinstance(t, AlertType) for t in back.alerts)
    assert all(isinstance(a.status, AlertStatus) for a in back.alerts.values())
    assert back.status is original.status
    assert back.captured_at == original.captured_at


def test_encoding_layout() -> None:
    original = STATES["many-alerts"]
    decoded = orjson.loads(encode_state(original))
    assert decoded[0] == 1  # version
    assert decoded[1:5] == ["ALIEXPRESS", "AE-100", True, 0]
    assert decoded[5:10] == ["10.00", "2.00", "USD", "18.99", "30.00"]  # money as decimal strings
    assert decoded[10] == "O"
    assert decoded[11] == original.captured_at_us
    assert decoded[12] == {
        "STOCK_OUT": ["2f1c-out", "ACTIVE"],
        "PRICE_INCREASE": ["9a7b-inc", "ACKNOWLEDGED"],
        "STOCK_LOW": ["c3d4-low", "ACTIVE"],
    }
    assert decoded[13] == "run-7"


def test_empty_alerts_and_no_compare_at_encode_as_null() -> None:
    decoded = orjson.loads(encode_state(state()))
    assert decoded[9] is None
    assert decoded[12] is None
    assert decoded[13] is None
    assert decode_state(encode_state(state())).alerts == {}


def test_state_is_compact() -> None:
    assert len(encode_state(state(sync_run_id="run-42"))) < 200


@pytest.mark.parametrize("raw", [b"", b"]", b'[1,"x"]', bytes(300)])
def test_compact_is_an_equal_copy(raw: bytes) -> None:
    assert compact(raw) == raw


def test_compact_values_take_their_own_size_not_orjsons_buffer() -> None:
    """orjson's bytes sit in a 4 KiB allocation; a kept table value must not."""
    import tracemalloc

    fields = orjson.loads(encode_state(state(sync_run_id="run-42")))
    tracemalloc.start()
    try:
        kept = [compact(orjson.dumps(fields)) for _ in range(1000)]
        per_value = tracemalloc.get_traced_memory()[0] / len(kept)
    finally:
        tracemalloc.stop()
    assert per_value < 400, f"{per_value:.0f} bytes a value"


# --------------------------------------------------------------------------- #
# product_key / split_product_key
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("store_id", "product_id", "variant_id", "key"),
    [
        pytest.param("store-1", "prod-1", None, "store-1|prod-1|", id="no-variant"),
        pytest.param("store-1", "prod-1", "v-1", "store-1|prod-1|v-1", id="variant"),
        pytest.param("s", "p", "red:XL", "s|p|red:XL", id="variant-with-colon"),
        pytest.param("store-ü", "gid://shopify/Product/1", "gid://shopify/ProductVariant/2",
                     "store-ü|gid://shopify/Product/1|gid://shopify/ProductVariant/2", id="gid-ids"),
    ],
)
def test_product_key_round_trip(store_id: str, product_id: str, variant_id: str | None, key: str) -> None:
    assert product_key(store_id, product_id, variant_id) == key
    assert split_product_key(key) == (store_id, product_id, variant_id)
    assert key.startswith(store_prefix(store_id))


def test_empty_variant_is_no_variant() -> None:
    assert product_key("s", "p", "") == product_key("s", "p", None) == "s|p|"
    assert split_product_key("s|p|") == ("s", "p", None)


def test_variant_and_no_variant_keys_differ() -> None:
    assert product_key("s", "p", None) != product_key("s", "p", "v")
    # a store prefix does not match a longer store id
    assert not product_key("store-10", "p", None).startswith(store_prefix("store-1"))


# --------------------------------------------------------------------------- #
# to_micros / from_micros
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(datetime(1970, 1, 1, tzinfo=UTC), 0, id="epoch"),
        pytest.param(datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC), 1, id="one-us"),
        pytest.param(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), -1, id="one-us-before-epoch"),
        pytest.param(
            datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
            calendar.timegm((2024, 5, 1, 12, 0, 0)) * 1_000_000 + 123456,
            id="with-microseconds",
        ),
        pytest.param(
            datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
            calendar.timegm((2024, 5, 1, 12, 0, 0)) * 1_000_000 + 123456,
            id="offset-same-instant",
        ),
        # far enough that timestamp() * 1e6 as a float loses the last microsecond
        pytest.param(
            datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            calendar.timegm((2999, 12, 31, 23, 59, 59)) * 1_000_000 + 999999,
            id="far-future-exact",
        ),
    ],
)
def test_to_micros_is_exact(moment: datetime, expected: int) -> None:
    micros = to_micros(moment)
    assert isinstance(micros, int)
    assert micros == expected
    back = from_micros(micros)
    assert back == moment
    assert back.tzinfo is UTC
    assert back.microsecond == moment.astimezone(UTC).microsecond


def test_float_timestamp_would_not_be_exact() -> None:
    # Documents why to_micros avoids floats: the naive float path is off here.
    moment = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert int(moment.timestamp() * 1_000_000) != to_micros(moment)


def test_state_captured_at_property() -> None:
    moment = datetime(2024, 5, 1, 12, 0, 0, 654321, tzinfo=UTC)
    st = state(captured_at_us=to_micros(moment))
    assert st.captured_at == moment
    assert from_micros(0) == EPOCH


def test_outbox_travels_with_the_state_and_splits_off() -> None:
    from models.product import has_outbox, split_outbox, with_outbox

    plain = encode_state(
        ProductState(
            provider="CJ",
            source_id="x",
            available=True,
            stock=3,
            cost_price=Decimal("1.00"),
            shipping_cost=Decimal("0"),
            currency="USD",
            selling_price=Decimal("2.99"),
            compare_at_price=None,
            status=ProductStatus.ACTIVE,
            captured_at_us=5,
        )
    )
    outbox = [("c", b'{"change_id":"c1","n":1.5}'), ("a", b'{"alert_id":"a1"}')]
    record = with_outbox(plain, outbox)
    assert has_outbox(record) and not has_outbox(plain)
    assert decode_state(record) == decode_state(plain)
    back, items = split_outbox(record)
    assert back == plain
    assert [(code, orjson.loads(value)) for code, value in items] == [
        ("c", {"change_id": "c1", "n": 1.5}),
        ("a", {"alert_id": "a1"}),
    ]
    assert split_outbox(plain) == (plain, [])
