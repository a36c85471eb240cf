"""The published JSON Schema files are the ones the models generate."""

from pathlib import Path

import orjson

from models.schema import contract_schemas

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schema"


def test_schema_files_match_the_models() -> None:
    schemas = contract_schemas()
    on_disk = {p.stem: orjson.loads(p.read_bytes()) for p in SCHEMA_DIR.glob("*.json")}
    assert set(on_disk) == set(schemas), "run `make schema`"
    for topic, body in schemas.items():
        assert on_disk[topic] == orjson.loads(orjson.dumps(body)), f"docs/schema/{topic}.json is stale: run `make schema`"


def test_snapshot_schema_accepts_a_page_and_names_money_as_strings() -> None:
    snap = contract_schemas()["supplier.snapshots"]
    assert snap["x-message-key"] == "store_id"
    one, page = snap["anyOf"]
    assert one == {"$ref": "#/$defs/SupplierSnapshot"}
    assert page == {"type": "array", "items": {"$ref": "#/$defs/SupplierSnapshot"}}
    cost = snap["$defs"]["SupplierSnapshot"]["properties"]["cost_price"]
    assert cost["type"] == "string" and cost["pattern"].startswith("^[0-9]")
