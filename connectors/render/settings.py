"""Settings of video rendering (``ops-engine renderer``, and the worker's file view),
read from ``OPS_RENDER_*`` (and the AI providers' ``OPS_RUNWAY_*``/``OPS_ELEVENLABS_*``).

Apart from streams/settings.py, like the notifier's: a worker must not fail
to start over a renderer setting.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.settings import ENV_PREFIX, SettingsError, invalid_settings

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")  # Debian fonts-dejavu-core


class RenderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    render_output_dir: Path = Field(Path(".run/videos"), description="folder the finished MP4s and thumbnails go to")
    render_work_dir: Path = Field(Path(".run/render-work"), description="folder of each render's temporary files")
    render_public_url: str | None = Field(
        None, description="public base URL of the output folder (default: the worker's WEB_URL/video-files)"
    )
    render_concurrency: int = Field(
        os.cpu_count() or 1, ge=1, le=64, description="renders at once in one renderer process (default: one per core)"
    )
    render_fps: int = Field(30, ge=10, le=60, description="frames per second of the videos")
    render_preset: str = Field(
        "veryfast", pattern=r"^(ultrafast|superfast|veryfast|faster|fast|medium|slow)$", description="x264 preset"
    )
    render_crf: int = Field(23, ge=0, le=51, description="x264 quality (lower: better and larger)")
    render_thumbnail_width: int = Field(540, ge=64, le=1920, description="thumbnail width, px (height keeps the ratio)")
    render_timeout: float = Field(600.0, gt=0, description="s one render may take before ffmpeg is stopped (FAILED)")
    render_allow_private: bool = Field(
        False,
        description="fetch images from private, loopback and link-local addresses too (tests; never in production)",
    )
    render_allowed_networks: str = Field(
        "", description="comma list of CIDRs fetched from even when private (e.g. 10.2.0.0/16 for an internal CDN)"
    )
    render_local_dir: Path | None = Field(
        None, description="folder file:// image URLs may point into (unset: file URLs are refused)"
    )
    render_max_image_bytes: int = Field(15 * 1024 * 1024, ge=1024, description="largest image fetched, bytes")
    render_max_image_pixels: int = Field(
        40_000_000, ge=1, description="largest image, width x height (a small file can decode to gigabytes)"
    )
    render_fetch_timeout: float = Field(20.0, gt=0, description="s to fetch one image (connect, read, whole)")
    render_font: Path = Field(FONT, description="font file of the title card and text overlays")
    render_voice: str = Field("en-us", pattern=r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$", description="espeak-ng voice")
    render_metrics_port: int = Field(6071, ge=0, le=65535, description="port of the renderer's /metrics; 0: none")

    runway_api_key: SecretStr | None = Field(None, description="Runway key: image-to-video clips (unset: off)")
    runway_base_url: str = Field("https://api.dev.runwayml.com", description="Runway API base URL")
    runway_model: str = Field("gen4_turbo", pattern=r"^[a-z0-9_.-]{1,64}$", description="Runway image-to-video model")
    runway_poll_interval: float = Field(2.0, gt=0, description="s between polls of a Runway task")
    runway_timeout: float = Field(300.0, gt=0, description="s a Runway clip may take before the render fails (retryable)")
    elevenlabs_api_key: SecretStr | None = Field(None, description="ElevenLabs key: voice-over (unset: espeak-ng)")
    elevenlabs_base_url: str = Field("https://api.elevenlabs.io", description="ElevenLabs API base URL")
    elevenlabs_voice_id: str = Field("21m00Tcm4TlvDq8EAfMR", pattern=r"^[A-Za-z0-9]{1,64}$", description="ElevenLabs voice")

    @field_validator("render_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"{part.strip()!r} is not a network (CIDR such as 10.0.0.0/8)") from None
        return value

    @property
    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in self.render_allowed_networks.split(",") if p.strip())

    @field_validator("render_public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    def public_base(self, web_url: str) -> str:
        return self.render_public_url or f"{web_url.rstrip('/')}/video-files"

    @classmethod
    def load(cls) -> RenderSettings:
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError(invalid_settings(exc, "invalid settings:", show_values=True, hidden=("KEY",))) from None
