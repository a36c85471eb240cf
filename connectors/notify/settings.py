"""Settings of the notifier (``ops-engine notifier``), read from ``OPS_*`` variables.

Apart from streams/settings.py: only the notifier needs them, and a worker
must not fail to start over an SMTP setting.
"""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.settings import ENV_PREFIX, SettingsError, invalid_settings

_EMAIL = r"^[^@\s<>,;]+@[^@\s<>,;]+$"


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    smtp_host: str = Field("127.0.0.1", description="SMTP server host")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP server port (587 with STARTTLS, usually)")
    smtp_username: str | None = Field(None, description="SMTP login user (unset: no login)")
    smtp_password: SecretStr | None = Field(None, description="SMTP login password")
    smtp_starttls: bool = Field(False, description="upgrade the SMTP connection with STARTTLS (refuse if unsupported)")
    smtp_timeout: float = Field(30.0, gt=0, description="timeout of each SMTP step, s")
    smtp_from: str = Field("ops-engine@localhost", pattern=_EMAIL, description="From: address of every message")
    admin_email: str | None = Field(
        None, description="admin recipient of stores that have no EMAIL notification target"
    )
    digest_window_s: int = Field(
        300, ge=1, le=86400, description="alert digest window, s (one digest per store per window)"
    )
    digest_max_age_s: int = Field(
        86400,
        ge=60,
        description="alerts older than this are not digested (so a first start does not mail the topic's history)",
    )
    digest_interval_s: float = Field(10.0, gt=0, description="how often due digests are looked for, s")

    @field_validator("admin_email")
    @classmethod
    def _admin_email(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        if not re.match(_EMAIL, value):
            raise ValueError("must be one e-mail address")
        return value

    @property
    def from_domain(self) -> str:
        return self.smtp_from.rpartition("@")[2]

    @classmethod
    def load(cls) -> NotifySettings:
        """Read and validate the environment, or exit with a readable message."""
        try:
            return cls()
        except ValidationError as exc:
            report = invalid_settings(exc, "invalid settings:", show_values=True, hidden=("PASSWORD",))
            raise SettingsError(report) from None
