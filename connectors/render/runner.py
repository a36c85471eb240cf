"""The renderer process (``ops-engine renderer``): consume ``video.renders``,
render each command (renderer.py), publish STARTED / PROGRESS and the final
outcome on ``video.events`` (none for a command taken after its ``start_by``:
its job has failed that attempt and queued the next), and commit an input offset only after the
outcome of its command (and of every command before it) is acknowledged.

A plain aiokafka consumer group (``{app_id}-renderer``): renderers scale out
like the executor. At most ``OPS_RENDER_CONCURRENCY`` renders run at once
(default: one per core); the commands fetched beyond that wait in the
process (``ops_video_render_queue_depth``), and fetching pauses when enough
are in hand. A cancel command (the job was cancelled) stops its attempt's
render if it runs or waits in this process: ffmpeg is killed, the temporary
files removed, and no outcome is published. A crash repeats unfinished commands: the renderer reports a
finished attempt again from its files, and the job machine drops repeated
outcomes. A record that is not a render command goes to ``deadletter``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from pydantic import ValidationError

from connectors.fulfillment.runner import Offsets
from connectors.render.fetch import ImageFetcher
from connectors.render.metrics import GENERATION_SECONDS, RENDER_QUEUE, RENDERING, RENDERS
from connectors.render.providers import clip_provider, voice_provider
from connectors.render.renderer import Renderer
from connectors.render.settings import RenderSettings
from connectors.render.storage import Storage, sweep
from models.events import DeadLetter, DeadLetterReason
from models.video import RenderCommand, RenderCompleted, RenderFailed, VideoEvent
from streams import topics
from streams.codecs import encode
from streams.embedded import EMBEDDED_LOW_LATENCY_FETCH_WAIT_MS
from streams.settings import Settings

log = logging.getLogger(__name__)
COMMIT_EVERY_S = 0.5
RETRY_PAUSE_S = 1.0


class RenderRunner:
    def __init__(self, renderer: Renderer, producer: AIOKafkaProducer, concurrency: int) -> None:
        self.renderer = renderer
        self.producer = producer
        self.concurrency = concurrency
        self.slots = asyncio.Semaphore(concurrency)
        self.offsets = Offsets()
        self.tasks: set[asyncio.Task[None]] = set()
        #: (video_id, attempt) -> its render task, while it runs or waits here.
        self.renders: dict[tuple[str, int], asyncio.Task[None]] = {}
        #: renders cancelled by a cancel command (their offsets are done).
        self.stopped: set[tuple[str, int]] = set()
        self.waiting = 0

    async def publish(self, event: VideoEvent) -> None:
        await (await self.producer.send(topics.VIDEO_EVENTS, key=event.video_id.encode(), value=encode(event)))

    async def dead(self, message: Any, detail: str) -> None:
        RENDERS.labels("INVALID").inc()
        record = DeadLetter.of(message, DeadLetterReason.SCHEMA_VIOLATION, detail)
        await (await self.producer.send(topics.DEADLETTER, key=message.topic.encode(), value=encode(record)))

    async def handle(self, command: RenderCommand) -> None:
        """One render to its published outcome."""
        self.waiting += 1
        RENDER_QUEUE.set(self.waiting)
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
            RENDER_QUEUE.set(self.waiting)
        RENDERING.inc()
        try:
            outcome: RenderCompleted | RenderFailed | None = await self.renderer.render(command, self.publish)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or the disk: FAILED (retryable) with why, never a stuck offset
            log.exception("render of %s crashed", command.command_id)
            outcome = RenderFailed(
                event_id=f"{command.video_id}:{command.attempt}:failed", video_id=command.video_id,
                attempt=command.attempt, occurred_at=datetime.now(timezone.utc),
                reason=f"renderer error: {type(exc).__name__}: {exc}"[:500], retryable=True,
            )
        finally:
            RENDERING.dec()
            self.slots.release()
        if outcome is None:  # taken after its start-by time: the job has moved on to another attempt
            RENDERS.labels("EXPIRED").inc()
            return
        if isinstance(outcome, RenderCompleted):
            if outcome.render_seconds is None:
                RENDERS.labels("REPORTED_AGAIN").inc()
            else:
                RENDERS.labels("COMPLETED").inc()
                GENERATION_SECONDS.observe(outcome.render_seconds)
        else:
            RENDERS.labels("FAILED").inc()
        # Publishing is retried until it succeeds: the offset waits for it.
        while True:
            try:
                await self.publish(outcome)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publishing the outcome of %s failed; trying again", command.command_id)
                await asyncio.sleep(RETRY_PAUSE_S)

    async def _run(self, message: Any, command: RenderCommand | None, problem: str | None) -> None:
        key = None if command is None else (command.video_id, command.attempt)
        try:
            if command is None:
                await self.dead(message, problem or "not a render command")
            else:
                await self.handle(command)
        except asyncio.CancelledError:
            if key is None or key not in self.stopped:
                raise  # the process stops: the offset stays uncommitted
            self.stopped.discard(key)
            RENDERS.labels("CANCELLED").inc()
            log.info("render of %s attempt %d stopped: the video was cancelled", *key)
        except Exception:  # a bug in one render must not stop the others; the offset stays uncommitted
            log.exception("render of %s[%s]@%s crashed", message.topic, message.partition, message.offset)
            return
        self.offsets.done(TopicPartition(message.topic, message.partition), message.offset)

    def submit(self, message: Any) -> None:
        tp = TopicPartition(message.topic, message.partition)
        self.offsets.start(tp, message.offset)
        try:
            command: RenderCommand | None = RenderCommand.model_validate_json(message.value or b"")
            problem = None
        except ValidationError as exc:
            command, problem = None, f"not a render command: {exc.errors()[:3]}"
        if command is not None and command.cancel:
            # Stop that attempt's render if it runs (or waits for a slot) here.
            key = (command.video_id, command.attempt)
            running = self.renders.get(key)
            if running is not None and not running.done():
                self.stopped.add(key)
                running.cancel()
            self.offsets.done(tp, message.offset)
            return
        task = asyncio.create_task(self._run(message, command, problem))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if command is not None:
            key = (command.video_id, command.attempt)
            self.renders[key] = task
            task.add_done_callback(lambda _t, k=key: self.renders.pop(k, None) if self.renders.get(k) is _t else None)


async def run_renderer(
    settings: Settings, render_settings: RenderSettings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    storage = Storage(render_settings.render_output_dir, render_settings.public_base(settings.web_url))
    fetcher = ImageFetcher(render_settings)
    # Leftovers of renders killed before they could clean up (older than any render may run).
    swept = sweep(render_settings.render_output_dir, render_settings.render_work_dir, 2 * render_settings.render_timeout)
    if swept:
        log.warning("removed %d leftovers of interrupted renders", swept)
    voice = voice_provider(render_settings)
    clips = clip_provider(render_settings, fetcher)
    renderer = Renderer(render_settings, storage, fetcher, voice, clips)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, acks="all", enable_idempotence=settings.producer_idempotence, linger_ms=2
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=f"{settings.app_id}-renderer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval * 1000),
        max_poll_records=render_settings.render_concurrency,
        # The renderer polls no more while it holds render_concurrency commands, and a render may
        # take OPS_RENDER_TIMEOUT and more (clips): aiokafka's 300 s default would drop it from the
        # group mid-render, and the commands in hand would be rendered twice at once after the rejoin.
        max_poll_interval_ms=int(max(3600.0, 4 * render_settings.render_timeout) * 1000),
        fetch_max_wait_ms=EMBEDDED_LOW_LATENCY_FETCH_WAIT_MS if settings.embedded_broker else 500,
    )
    runner = RenderRunner(renderer, producer, render_settings.render_concurrency)

    class Rebalance(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            done = {tp: o for tp, o in runner.offsets.committable().items() if tp in revoked}
            if done:
                try:
                    await consumer.commit(done)
                except Exception as exc:
                    log.warning("commit at revocation failed: %s", exc)
            runner.offsets.forget(revoked)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            pass

    await producer.start()
    await consumer.start()
    consumer.subscribe([topics.VIDEO_RENDERS], listener=Rebalance())
    if ready is not None:
        ready.set()
    log.info("renderer running: %d at once, files in %s", render_settings.render_concurrency, storage.root)
    last_commit = time.monotonic()
    try:
        while not stop.is_set():
            if runner.offsets.in_flight() >= 2 * render_settings.render_concurrency:
                await asyncio.sleep(0.05)  # enough in hand: let them finish first
            else:
                batch = await consumer.getmany(timeout_ms=100, max_records=render_settings.render_concurrency)
                for messages in batch.values():
                    for message in messages:
                        runner.submit(message)
            if time.monotonic() - last_commit >= COMMIT_EVERY_S:
                last_commit = time.monotonic()
                done = runner.offsets.committable()
                if done:
                    try:
                        await consumer.commit(done)
                    except Exception as exc:
                        log.warning("commit failed (%s); the new owner renders those commands again", exc)
    finally:
        stop.set()
        for task in list(runner.tasks):
            task.cancel()
        await asyncio.gather(*runner.tasks, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await fetcher.aclose()
        for provider in (voice, clips):
            if provider is not None:
                await provider.aclose()
