"""The composition root: the Faust app, its topics and tables, assembled once.

``build(settings)`` makes an :class:`Engine`; ``agents.register`` and
``connectors.web.register`` wire the agents and the web views onto it. Nothing
builds clients at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams import codecs, fastdrain, outputs, tables, topics
from streams.sensors import QuietSensors, install_faust_monitor
from streams.settings import Settings


@dataclass
class Engine:
    settings: Settings
    app: faust.App
    inputs: faust.TopicT  # the store-keyed inputs, consumed by one agent
    changes: faust.TopicT
    alerts: faust.TopicT
    deadletter: faust.TopicT
    commands: faust.TopicT
    order_events: faust.TopicT
    webhook_inputs: faust.TopicT  # webhooks.inbound, catalog.variants, catalog.sources, supplier.updates
    video_inputs: faust.TopicT  # video.requests + video.events, one agent (agents/video.py)
    video_requests: faust.TopicT  # video.requests alone (the views publish on it)
    video_events: faust.TopicT  # video.events alone (the views' retry/cancel)
    tables: tables.Tables
    outputs: outputs.Outputs


def faust_settings(settings: Settings) -> dict[str, object]:
    """The Faust/aiokafka client settings, with why each one is what it is."""
    return {
        "broker": settings.broker_url,
        "store": settings.store,
        "datadir": str(settings.data_dir),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication,
        "web_enabled": True,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "canonical_url": settings.web_url,
        # Ready in seconds: the embedded broker holds a JoinGroup for half the
        # session timeout (6 s -> 3 s join); real Kafka's minimum session is 6 s.
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": settings.heartbeat_interval,
        "broker_rebalance_timeout": max(settings.session_timeout, 10.0),
        "broker_request_timeout": max(settings.session_timeout * 5, 30.0),
        # Commit often: at-least-once replays what was not committed.
        "broker_commit_interval": settings.commit_interval,
        "broker_commit_every": 10_000,
        "processing_guarantee": "at_least_once",
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        # streams/outputs.py hands the agents' records over in record batches, and
        # aiokafka takes a partition's next batch only once its last one is on its
        # way: with the default 16 KiB, a sync page's 500 changes were 25 batches
        # and the agent waited a broker round trip for each. Under Kafka's
        # default 1 MB message.max.bytes.
        "producer_max_batch_size": 512 * 1024,
        "table_standby_replicas": settings.standby_replicas,
        "recovery_consistency_check": True,
        "stream_wait_empty": True,
        # A fetch round brings 16k-26k records here; with Faust's default of 4,096
        # the stream's buffer fills and aiokafka pauses the partitions.
        "stream_buffer_maxsize": settings.stream_buffer,
        "autodiscover": False,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }


def keep_buffered_events_on_resume(app: faust.App) -> None:
    """Keep fetched events when recovery ends (faust-streaming 0.15.3).

    ``FlowControlEvent.resume()`` also empties every stream buffer. At the end
    of a table recovery, ``Recovery.on_recovery_completed`` resumes the stream
    partitions, awaits ``consumer.perform_seek()`` (a committed-offset request
    per partition, ~0.25 s here) and only then calls
    ``app.flow_control.resume()``, though flow is already active since the
    changelog read. Events fetched in that window are in the agent's buffer
    and are dropped, while the consumer's position and read offset are past
    them: with no committed offset yet (a worker killed before its first
    commit) nothing seeks back, and events fetched after a seek are lost the
    same way. The agent goes on with the store's later messages (a transition
    applied one snapshot late, a later replay of the lost one STALE) and the
    lost offset is never acked. Buffers are still emptied where they must be:
    at a revocation or stop (``suspend()`` + ``clear()``) and at a resume after
    a suspension. (faust-streaming#216/#217 fixed the same kind of race on the
    path without tables; this one is on the path with tables.)
    """
    flow_control = app.flow_control
    resume = flow_control.resume

    def resume_keeping_buffers() -> None:
        if flow_control.is_active():
            return  # already flowing: nothing to resume, and the buffers hold live events
        resume()

    flow_control.resume = resume_keeping_buffers  # type: ignore[method-assign]


def build(settings: Settings) -> Engine:
    codecs.register()
    if settings.embedded_broker:
        from streams.embedded import install_end_offset_fix, install_fetch_wait_fix

        install_end_offset_fix()
        install_fetch_wait_fix()
    if settings.fast_drain:
        fastdrain.install(settings.stream_buffer_bytes)
    app = faust.App(settings.app_id, **faust_settings(settings))  # type: ignore[arg-type]
    if settings.faust_metrics:
        install_faust_monitor(app)  # Faust's own sensors, exported as faust_* (costs per event)
    else:
        app.sensors = QuietSensors(app)  # no per-event Monitor (streams/sensors.py)
    keep_buffered_events_on_resume(app)

    def topic(*names: str) -> faust.TopicT:
        return app.topic(
            *names,
            schema=codecs.RawSchema(),
            partitions=settings.partitions,
            internal=False,
        )

    batcher = outputs.Outputs(app)
    outputs.install(app, batcher)
    return Engine(
        outputs=batcher,
        settings=settings,
        app=app,
        inputs=topic(*topics.STORE_KEYED_INPUTS),
        changes=topic(topics.INVENTORY_CHANGES),
        alerts=topic(topics.ALERTS),
        deadletter=topic(topics.DEADLETTER),
        commands=topic(topics.INVENTORY_COMMANDS),
        order_events=topic(topics.ORDERS_EVENTS),
        webhook_inputs=topic(
            topics.WEBHOOKS_INBOUND, topics.CATALOG_VARIANTS, topics.CATALOG_SOURCES, topics.SUPPLIER_UPDATES
        ),
        video_inputs=topic(topics.VIDEO_REQUESTS, topics.VIDEO_EVENTS),
        video_requests=topic(topics.VIDEO_REQUESTS),
        video_events=topic(topics.VIDEO_EVENTS),
        tables=tables.define(app, settings.partitions),
    )
