"""Settings: one typed object read from ``OPS_*`` environment variables.

Every setting is validated when a command starts; a bad value stops it with a
message that names the variable (``Settings.load``). The README's table of
settings is this class.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "OPS_"


class SettingsError(SystemExit):
    """Raised with a readable message when the environment is invalid."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    app_id: str = Field("ops-engine", description="Faust app id: consumer group and changelog topic prefix")
    broker_url: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap, kafka://host:port[;host:port]")
    embedded_broker: bool = Field(
        False,
        description=(
            "true when the broker is the embedded Tansu: turns on the end-offset workaround "
            "(streams/embedded.py); make run and the tests set it"
        ),
    )
    producer_idempotence: bool = Field(
        False,
        description="idempotent producer for ops-engine publish (real Kafka only; the embedded broker refuses it)",
    )
    web_host: str = Field("127.0.0.1", description="address the worker's web server binds")
    web_port: int = Field(6066, ge=1, le=65535, description="port of the worker's web server")
    canonical_url: str | None = Field(
        None, description="URL other workers use to reach this one (default http://WEB_HOST:WEB_PORT)"
    )
    partitions: int = Field(8, ge=1, le=1024, description="partitions of the topics the engine creates")
    replication: int = Field(1, ge=1, le=16, description="replication factor of the topics it creates")
    store: str = Field("memory://", description="table store: memory:// or rocksdb:// (needs rocksdict)")
    data_dir: Path = Field(Path(".run/data"), description="folder of the worker's table data")
    session_timeout: float = Field(
        6.0, gt=0, description="consumer session timeout, s (the embedded broker holds a join for half of it)"
    )
    heartbeat_interval: float = Field(1.0, gt=0, description="consumer heartbeat interval, s")
    commit_interval: float = Field(1.0, gt=0, description="offset commit interval, s")
    standby_replicas: int = Field(1, ge=0, description="standby replicas of each table")
    log_level: str = Field("info", description="worker log level")
    gauge_interval: float = Field(
        5.0, gt=0, description="how often the alert, order, table-size, lag and buffer gauges refresh, s"
    )
    faust_metrics: bool = Field(
        False,
        description=(
            "also export Faust's own Prometheus monitor (faust_* metrics); costs per event "
            "(streams/sensors.py: about 2.2 times the worker's CPU per snapshot), so off unless asked"
        ),
    )
    health_max_lag: int = Field(
        10000, ge=1, description="/health says degraded when an owned input partition lags by more messages"
    )
    health_check_timeout: float = Field(
        2.0, gt=0, description="s /health waits for the broker's metadata or the database before calling it failed"
    )
    fast_drain: bool = Field(
        True, description="Faust's consumer loop without per-message Tasks (streams/fastdrain.py); false: Faust's own"
    )
    stream_buffer: int = Field(
        32768,
        ge=1,
        description="events buffered per stream; above one fetch round, or aiokafka stops fetching for a while",
    )
    stream_buffer_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="bytes of message values buffered for the streams (with OPS_FAST_DRAIN; bounds memory for pages)",
    )
    database_url: str | None = Field(None, description="PostgreSQL DSN; unset: make run / tests start a local one")

    order_retry_backoff: str = Field(
        "60,300,900",
        description="seconds to wait before each retry of a retryable supplier order failure (comma list; its length is the retries)",
    )
    order_outcome_timeout: float = Field(
        120.0, gt=0, description="s without an outcome before a supplier order command is re-issued (same key)"
    )
    order_tracking_timeout: float = Field(
        7 * 24 * 3600.0, gt=0, description="s after placement without tracking before an order needs intervention"
    )
    order_missing_timeout: float = Field(
        24 * 3600.0, gt=0, description="s an order's events wait for the order itself before a PAYMENT_ISSUE alert"
    )
    order_abandon_timeout: float = Field(
        30 * 24 * 3600.0, gt=0,
        description="s after its first event an order that never arrived is given up: its waiting events go to "
        "deadletter and its record to the archive sweep",
    )
    order_payment_timeout: float = Field(
        72 * 3600.0, gt=0, description="s a created order waits for its payment before a PAYMENT_ISSUE alert"
    )
    order_delivery_timeout: float = Field(
        45 * 24 * 3600.0, gt=0, description="s a shipped group waits for delivery before an ORDER_ISSUE alert"
    )
    order_scan_interval: float = Field(5.0, gt=0, description="how often each worker looks for passed order deadlines, s")
    tracking_poll_interval: float = Field(
        6 * 3600.0, gt=0, description="how often the executor asks suppliers for tracking of placed orders, s"
    )

    video_active_timeout: float = Field(
        900.0, gt=0, description="s a video render may take from its start (PROCESSING) before it is failed (and retried)"
    )
    video_queue_timeout: float = Field(
        86400.0, gt=0, description="s a video job may wait QUEUED for a renderer to start it before it is failed (and retried)"
    )
    video_max_retries: int = Field(2, ge=0, le=10, description="automatic retries of a failed video render")
    video_scan_interval: float = Field(5.0, gt=0, description="how often each worker looks for overdue video jobs, s")

    alert_keep_days: float = Field(
        30.0, gt=0, description="days a closed (RESOLVED or DISMISSED) alert stays in the alerts table after its last change"
    )
    order_keep_days: float = Field(
        90.0, gt=0, description="days a final order (DELIVERED, CANCELLED, REFUNDED, no deadline) stays whole in the "
        "orders table after it entered its status; then an archive marker replaces it"
    )
    video_keep_days: float = Field(
        30.0, gt=0, description="days a final video job (COMPLETED, FAILED, CANCELLED) stays whole in the video-jobs "
        "table after its last change; then an archive marker replaces it"
    )
    archive_interval_s: float = Field(
        3600.0, gt=0, description="how often each worker archives the final orders and video jobs past their keep days, s"
    )
    webhook_dedup_days: float = Field(
        7.0, gt=0, description="days a webhook's delivery id is remembered (Stripe retries for 3, Shopify for 4 h)"
    )
    executor_concurrency: int = Field(32, ge=1, le=1000, description="supplier order commands the executor carries out at once")
    executor_metrics_port: int = Field(
        6068, ge=0, le=65535, description="port of the executor's /metrics (Prometheus); 0: none"
    )
    recorder_metrics_port: int = Field(
        6070, ge=0, le=65535, description="port of the recorder's /metrics (Prometheus); 0: none"
    )

    notifier_metrics_port: int = Field(
        6069, ge=0, le=65535, description="port of the notifier's /metrics (Prometheus); 0: none"
    )

    sync_schedule: bool = Field(True, description="each worker requests the due syncs of the stores it owns (false: only by hand)")
    sync_high_interval: int = Field(900, ge=1, description="s between syncs of a HIGH-frequency store")
    sync_standard_interval: int = Field(3600, ge=1, description="s between syncs of a STANDARD-frequency store")
    sync_full_at: str = Field("03:00", pattern=r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$", description="daily FULL sync of every store, HH:MM UTC")
    sync_run_timeout: float = Field(1800.0, gt=0, description="s a sync run may stay RUNNING before it is marked FAILED")
    sync_scan_interval: float = Field(30.0, gt=0, description="how often each worker looks for due syncs and overdue runs, s")
    sync_page_size: int = Field(
        200, ge=1, le=2000,
        description="tracked products per sync.jobs page (at most 2,000: a page is one sync.jobs message, about 200 bytes a product, under Kafka's default 1 MB message limit)",
    )
    syncer_concurrency: int = Field(8, ge=1, le=256, description="sync.jobs pages the syncer fetches at once")
    syncer_metrics_port: int = Field(
        6072, ge=0, le=65535, description="port of the syncer's /metrics (Prometheus); 0: none"
    )
    freight_lookups_per_page: int = Field(
        20, ge=0, le=1000,
        description="supplier freight quotes the syncer asks for per sync page and supplier (AliExpress, CJ); 0: off",
    )
    freight_max_age_s: float = Field(
        86400.0, gt=0, description="s a freight quote is used before it is asked for again"
    )
    freight_memory_quotes: int = Field(
        100_000, ge=1, description="freight quotes the syncer keeps in memory when it has no OPS_DATABASE_URL"
    )
    freight_keep_s: float = Field(
        30 * 86400.0, ge=0,
        description="s after its fetch a freight quote not fetched again leaves the store (hourly); 0: kept for good",
    )

    gc_threshold: str = Field(
        "50000,20,100",
        description="the worker's gc.set_threshold (comma list; empty: Python's 700,10,10); start-up objects are frozen",
    )

    @property
    def gc_thresholds(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.gc_threshold.split(",") if p.strip())

    @field_validator("order_retry_backoff")
    @classmethod
    def _backoff(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ValueError("must be comma-separated seconds, e.g. 60,300,900") from None
        if any(d < 0 for d in delays):
            raise ValueError("delays must be >= 0")
        return ",".join(f"{d:g}" for d in delays)

    @property
    def retry_backoff(self) -> tuple[float, ...]:
        return tuple(float(part) for part in self.order_retry_backoff.split(",") if part)

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if not value.startswith("kafka://"):
            raise ValueError("must start with kafka:// (e.g. kafka://127.0.0.1:9092)")
        for hostport in value[len("kafka://") :].split(";"):
            host, _, port = hostport.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{hostport!r} is not host:port")
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if not (value.startswith("memory://") or value.startswith("rocksdb://")):
            raise ValueError("must be memory:// or rocksdb://")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value == "":
            return None  # OPS_DATABASE_URL= (empty) reads as unset, as a shell user means it
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgres:// (e.g. postgresql://user@host:5432/ops)")
        return value

    @property
    def bootstrap(self) -> str:
        """host:port[,host:port] for plain Kafka clients."""
        return self.broker_url[len("kafka://") :].replace(";", ",")

    @property
    def web_url(self) -> str:
        if self.canonical_url:
            return self.canonical_url
        host = self.web_host if self.web_host not in ("0.0.0.0", "::") else socket.gethostname()
        return f"http://{host}:{self.web_port}"

    @classmethod
    def load(cls) -> Settings:
        """Read and validate the environment, or exit with a readable message."""
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError(invalid_settings(exc, "invalid settings:", show_values=True)) from None


def invalid_settings(
    exc: ValidationError, title: str, *, show_values: bool = False, hidden: tuple[str, ...] = ()
) -> str:
    """A readable report of ``exc``: each variable (``OPS_...``) with what is wrong.

    ``show_values`` adds the value the environment holds, except for variables
    whose name contains one of ``hidden`` (passwords); settings that hold
    secrets never show values. A nested error says where in the value it is.
    """
    lines = [title]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        name = ENV_PREFIX + loc[0].upper() if loc else "(settings)"
        where = f" at {'.'.join(loc[1:])}" if len(loc) > 1 else ""
        shown = ""
        if show_values:
            value = "<hidden>" if any(h in name for h in hidden) else os.environ.get(name, "<unset>")
            shown = f"={value!r}"
        lines.append(f"  {name}{shown}{where}: {err['msg']}")
    return "\n".join(lines)


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, description) of every setting, for the README and --help."""
    rows = []
    for name, info in Settings.model_fields.items():
        default = "" if info.default is None else str(info.default)
        rows.append((ENV_PREFIX + name.upper(), default, info.description or ""))
    return rows
