"""Faust's per-event sensors: switched off on the hot path, or exported to Prometheus.

Faust installs a ``Monitor`` sensor that records every message in and out,
every stream event and every table get/set in Python dicts and deques. On
this kind of machine it cost a quarter of a worker's time per event (measured
5,000 -> 7,300 events/s without it). The engine's own Prometheus metrics
(connectors/metrics.py) count what operators need instead, so the app runs
with this delegate, which registers no sensor and does nothing per event.

With ``OPS_FAUST_METRICS=true`` the app keeps Faust's sensors and its monitor
is faust-streaming's ``PrometheusMonitor``: Faust's own figures (messages
received per topic, events per stream, commit and send latencies,
rebalances, per-partition committed and end offsets) are exported as
``faust_*`` metrics in the same registry the engine's ``/metrics`` view
serves. Faust's ``setup_prometheus_sensors`` would also add a second
``/metrics`` page; ``install_faust_monitor`` only installs the monitor. Its
cost, measured with bench/inventory.py (100,000 single snapshots): 2.6 s of the
worker's CPU without it, 5.8 s with it (docs/metrics.md).
"""

from __future__ import annotations

from typing import Any

from faust.sensors.base import SensorDelegate

#: Prefix of Faust's own metrics (outside the engine's ``ops_`` scheme, named as Faust names them).
FAUST_PREFIX = "faust"
_faust_metrics: Any = None


def install_faust_monitor(app: Any) -> None:
    """Make ``app``'s monitor faust-streaming's PrometheusMonitor (metrics registered once per process)."""
    global _faust_metrics
    from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
    from prometheus_client import REGISTRY

    if _faust_metrics is None:
        _faust_metrics = FaustMetrics.create(REGISTRY, FAUST_PREFIX)
    app.monitor = PrometheusMonitor(metrics=_faust_metrics)


class QuietSensors(SensorDelegate):
    def add(self, sensor: Any) -> None:  # the Monitor is never registered
        return None

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None

    def on_topic_buffer_full(self, tp: Any) -> None:
        return None

    def on_rebalance_start(self, app: Any) -> dict[str, Any]:
        # Faust warns "Missing sensor state for rebalance" when this is empty.
        return {"quiet": True}
