"""The metric names a PromQL expression reads (enough of PromQL for our rules and dashboard).

Removes string literals, label matchers ``{...}``, ranges ``[5m]`` / subqueries
``[10m:1m]`` and ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``
label lists; what is left that looks like an identifier and is not a function
call, an aggregation or a keyword is a metric name.
"""

from __future__ import annotations

import re

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile",
}


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in KEYWORDS or word in AGGREGATIONS:
            continue
        names.add(word)
    return names


def exposition_names(text: str) -> set[str]:
    """Every series name a /metrics text can yield, from its ``# TYPE`` lines and samples.

    A labelled metric with no sample yet still declares its family; a counter
    family ``x`` is queried as ``x_total``, a histogram as ``x_bucket``,
    ``x_sum`` and ``x_count``.
    """
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            if kind == "counter":
                # "x" with samples, "x_total" for a labelled counter that has none yet
                base = name.removesuffix("_total")
                names.update({f"{base}_total", f"{base}_created"})
            elif kind in ("histogram", "summary"):
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"})
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names
