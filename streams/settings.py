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
    gauge_interval: float = Field(5.0, gt=0, description="how often the active-alert and table-size gauges refresh, s")
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
            lines = ["invalid settings:"]
            for err in exc.errors():
                name = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
                value = os.environ.get(name, "<unset>")
                lines.append(f"  {name}={value!r}: {err['msg']}")
            raise SettingsError("\n".join(lines)) from None


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, description) of every setting, for the README and --help."""
    rows = []
    for name, info in Settings.model_fields.items():
        default = "" if info.default is None else str(info.default)
        rows.append((ENV_PREFIX + name.upper(), default, info.description or ""))
    return rows
