"""A settings source for a JSON file of secrets (``OPS_*_SECRETS_FILE``).

The supplier accounts, the webhook secrets and the storefront accounts take
their secrets from the environment or from a JSON file named by a variable;
the environment wins (``SecretsFileSettings``). The
file holds the settings' names, lower case, with or without the ``ops_``
prefix. A file readable by others is warned about; a file that cannot be read
or is not a JSON object stops the process with a message naming the variable
(never a value).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from pydantic_settings import SettingsError as PydanticSettingsError

log = logging.getLogger(__name__)


class JsonSecretsFile(PydanticBaseSettingsSource):
    """Settings of ``settings_cls`` from the JSON file at ``path`` (named by ``variable``)."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        path: str | os.PathLike[str] | None,
        *,
        variable: str,
        error: type[SystemExit],
    ) -> None:
        super().__init__(settings_cls)
        self.path = Path(path) if path else None
        self.variable = variable
        self.error = error

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        where = f"{self.variable}={str(self.path)!r}"
        try:
            raw = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise self.error(f"{where}: cannot read ({exc.strerror})") from None
        try:
            mode = self.path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                log.warning("%s is readable by others (mode %o); chmod 600 it", self.variable, mode & 0o777)
        except OSError:
            pass
        try:
            data = json.loads(raw)
        except ValueError:
            raise self.error(f"{where}: not valid JSON") from None
        if not isinstance(data, dict):
            raise self.error(f"{where}: must hold a JSON object")
        own = self.variable.lower().removeprefix("ops_")  # the file does not name itself
        fields = self.settings_cls.model_fields
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key).lower().removeprefix("ops_")
            if name == own:
                continue
            if name in fields:
                values[name] = value
            else:
                log.warning("%s: unknown key %r ignored", self.variable, name[:100])
        return values


def sources(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
    *,
    variable: str,
    error: type[SystemExit],
) -> tuple[PydanticBaseSettingsSource, ...]:
    """For ``settings_customise_sources``: arguments, then the environment, then the
    file named by ``variable`` (or by the matching argument)."""
    field = variable.lower().removeprefix("ops_")
    init_kwargs = getattr(init_settings, "init_kwargs", {}) or {}
    path = init_kwargs.get(field) or os.environ.get(variable) or None
    return (init_settings, env_settings, JsonSecretsFile(settings_cls, path, variable=variable, error=error))


class SecretsFileSettings(BaseSettings):
    """Settings read from arguments, the environment, then the JSON file named by
    ``secrets_file_var``; ``load`` stops the process with ``settings_error`` and a
    report naming each invalid variable, never a value."""

    secrets_file_var: ClassVar[str]
    settings_error: ClassVar[type[SystemExit]]
    #: what the error report calls these settings ("supplier settings")
    what: ClassVar[str]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return sources(settings_cls, init_settings, env_settings, variable=cls.secrets_file_var, error=cls.settings_error)

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Read and validate, or exit with a message naming the variable (never a secret)."""
        from streams.settings import invalid_settings

        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise cls.settings_error(invalid_settings(exc, f"invalid {cls.what}:")) from None
        except PydanticSettingsError as exc:  # a complex variable that is not JSON
            raise cls.settings_error(f"invalid {cls.what}: {str(exc).splitlines()[0][:300]}") from None
