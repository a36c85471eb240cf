"""The executor's Prometheus metrics (served by the executor process at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SUPPLIER_CALLS = Counter(
    "ops_supplier_calls_total",
    "Calls to supplier APIs, by supplier, operation (place, find, cancel, tracking) and result",
    ["supplier", "operation", "result"],
)
COMMANDS = Counter(
    "ops_executor_commands_total",
    "orders.commands records handled by the executor, by type and outcome (PLACED, FAILED, CANCEL, INVALID, ERROR)",
    ["type", "outcome"],
)
COMMAND_SECONDS = Histogram(
    "ops_executor_command_seconds",
    "Time to carry out one supplier order command (lock, supplier calls, record)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TRACKING_FOUND = Counter(
    "ops_tracking_polled_total",
    "Tracking polls of placed supplier orders, by supplier and result (TRACKING, DELIVERED, NONE, ERROR)",
    ["supplier", "result"],
)
