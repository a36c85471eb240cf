"""The worker's consumption gauges: consumer lag, stream buffers, pending outputs.

Refreshed by a timer every ``OPS_GAUGE_INTERVAL`` seconds (streams/probes.py
reads them). A partition this worker no longer owns drops out of
``ops_consumer_lag`` at the next refresh, so summing the workers' series
never counts a partition twice for long.
"""

from __future__ import annotations

from connectors import metrics
from streams import probes
from streams.app import Engine


async def refresh(engine: Engine) -> None:
    app = engine.app
    lag = await probes.consumer_lag(app)
    # Set the new series in one synchronous step (no await between clear and set): a scrape
    # never sees the gauge half-filled.
    metrics.CONSUMER_LAG.clear()
    for (topic, partition), value in lag.items():
        metrics.CONSUMER_LAG.labels(topic, str(partition)).set(value)
    for buffer in probes.stream_buffers(app):
        metrics.STREAM_BUFFER.labels(buffer.agent).set(buffer.events)
    metrics.OUTPUTS_PENDING.set(engine.outputs.pending)


def register(engine: Engine) -> None:
    @engine.app.timer(interval=engine.settings.gauge_interval)
    async def refresh_consumption_gauges() -> None:
        await refresh(engine)
