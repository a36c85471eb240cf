"""docs/metrics.md lists exactly the ``ops_`` metrics the code registers, with their types and labels."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agents", "connectors", "models", "streams")
# A label value this long, or one of these names, would be an id: unbounded.
UNBOUNDED_LABELS = {"store_id", "product_id", "variant_id", "order_id", "alert_id", "event_id", "id", "shop", "key"}


def registered() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Exposition name -> (type, labels) of every ops_ metric any module registers."""
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            importlib.import_module(info.name)
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for collector in list(REGISTRY._collector_to_names):  # noqa: SLF001 - the registry's own index
        for family in collector.describe() if hasattr(collector, "describe") else ():
            if not family.name.startswith("ops_"):
                continue
            name = family.name + "_total" if family.type == "counter" else family.name
            found[name] = (family.type, tuple(getattr(collector, "_labelnames", ())))
    return found


def documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    section = text.split("## Engine metrics", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`ops_"):
            continue
        labels = tuple(re.findall(r"`([a-z_]+)`", cells[2]))
        rows[cells[0].strip("`")] = (cells[1], labels)
    return rows


def test_the_doc_table_is_the_registry() -> None:
    code = registered()
    doc = documented()
    assert len(code) >= 30
    missing = sorted(set(code) - set(doc))
    stale = sorted(set(doc) - set(code))
    assert not missing, f"registered but not in docs/metrics.md: {missing}"
    assert not stale, f"in docs/metrics.md but not registered: {stale}"
    wrong = {name: (doc[name], code[name]) for name in code if doc[name] != code[name]}
    assert not wrong, f"documented (type, labels) differ from the code's: {wrong}"


def test_names_follow_the_scheme() -> None:
    for name, (kind, labels) in registered().items():
        assert re.fullmatch(r"ops_[a-z][a-z0-9_]*", name), name
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), f"{name}: _total is for counters"
        for unit in ("_ms", "_milliseconds", "_minutes", "_hours", "_bytes_kb"):
            assert not name.endswith(unit), f"{name}: use base units"
        assert not set(labels) & UNBOUNDED_LABELS, f"{name} has an id label: {labels}"
