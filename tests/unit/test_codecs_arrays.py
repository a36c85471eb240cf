"""streams.codecs.json_arrays: a page of records as messages a broker takes."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from streams.codecs import json_arrays


@given(st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=40), max_size=4), max_size=60),
       st.integers(min_value=2, max_value=400))
def test_every_item_once_in_order_each_array_within_the_limit_unless_one_item_alone(
    items: list[dict[str, str]], limit: int
) -> None:
    encoded = [orjson.dumps(i) for i in items]
    arrays = json_arrays(encoded, limit)
    parsed = [orjson.loads(a) for a in arrays]
    assert [x for array in parsed for x in array] == items
    assert all(array for array in parsed)  # no empty message
    for raw, array in zip(arrays, parsed):
        assert len(raw) <= limit or len(array) == 1


def test_a_page_under_the_limit_is_one_message() -> None:
    encoded = [orjson.dumps({"n": n}) for n in range(100)]
    assert json_arrays(encoded, 1 << 20) == [orjson.dumps([{"n": n} for n in range(100)])]
    assert json_arrays([], 100) == []
