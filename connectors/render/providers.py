"""Hosted AI providers, optional: off unless their key is configured.

``ClipProvider.clip(image, ...)`` turns a product image into a short video
clip the renderer uses as that image's scene (instead of the still with its
zoom or pan). ``RunwayClips`` sends the image (as a data URI: Runway never
fetches our sources) to Runway's image-to-video API, polls the task, and
downloads the clip through the SSRF-safe fetcher (an MP4, size-capped).

``VoiceProvider.speak(script, wav)`` writes a voice-over WAV file; without a
provider the renderer speaks with espeak-ng (local). ``ElevenLabsVoice`` asks
ElevenLabs' text-to-speech API for raw 16-bit PCM and wraps it in a WAV
header, so ffmpeg reads it with the same forced ``wav`` format as espeak-ng's.
A provider failure is a retryable ``RenderError`` (a 4xx other than 429 is
not retryable: the key or the request is wrong).
"""

from __future__ import annotations

import asyncio
import base64
import time
import wave
from pathlib import Path
from typing import Protocol

import httpx

from connectors.render.fetch import FetchError, ImageFetcher
from connectors.render.ffmpeg import RenderError
from connectors.render.settings import RenderSettings
from models.video import AspectRatio

RUNWAY_VERSION = "2024-11-06"
RUNWAY_RATIOS = {AspectRatio.PORTRAIT: "720:1280", AspectRatio.LANDSCAPE: "1280:720", AspectRatio.SQUARE: "960:960"}
_MIME = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}

PCM_RATE = 22050


class VoiceProvider(Protocol):
    async def speak(self, script: str, wav: Path) -> None: ...

    async def aclose(self) -> None: ...


class ElevenLabsVoice:
    def __init__(self, base_url: str, api_key: str, voice_id: str, timeout: float = 60.0) -> None:
        self.voice_id = voice_id
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers={"xi-api-key": api_key}, timeout=httpx.Timeout(timeout),
            follow_redirects=False, trust_env=False,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def speak(self, script: str, wav: Path) -> None:
        try:
            response = await self.client.post(
                f"/v1/text-to-speech/{self.voice_id}",
                params={"output_format": f"pcm_{PCM_RATE}"},
                json={"text": script, "model_id": "eleven_multilingual_v2"},
            )
        except httpx.HTTPError as exc:
            raise RenderError(f"ElevenLabs voice: {type(exc).__name__}") from None
        if response.status_code != 200:
            retryable = response.status_code >= 500 or response.status_code == 429
            raise RenderError(f"ElevenLabs voice: HTTP {response.status_code}", retryable=retryable)
        pcm = response.content
        if not pcm or len(pcm) % 2:
            raise RenderError("ElevenLabs voice: empty or odd-sized audio")
        with wave.open(str(wav), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(PCM_RATE)
            out.writeframes(pcm)


def voice_provider(settings: RenderSettings) -> VoiceProvider | None:
    """The configured voice provider, or None (espeak-ng)."""
    if settings.elevenlabs_api_key is None:
        return None
    return ElevenLabsVoice(
        settings.elevenlabs_base_url, settings.elevenlabs_api_key.get_secret_value(), settings.elevenlabs_voice_id
    )


class ClipProvider(Protocol):
    async def clip(self, image: Path, prompt: str, aspect: AspectRatio, dest: Path) -> Path: ...

    async def aclose(self) -> None: ...


class RunwayClips:
    def __init__(
        self, base_url: str, api_key: str, model: str, fetcher: ImageFetcher,
        poll_interval: float = 2.0, timeout: float = 300.0,
    ) -> None:
        self.model = model
        self.fetcher = fetcher
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "X-Runway-Version": RUNWAY_VERSION},
            timeout=httpx.Timeout(30.0), follow_redirects=False, trust_env=False,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _call(self, method: str, path: str, **kw: object) -> dict[str, object]:
        try:
            response = await self.client.request(method, path, **kw)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise RenderError(f"Runway: {type(exc).__name__}") from None
        if response.status_code >= 400:
            retryable = response.status_code >= 500 or response.status_code == 429
            raise RenderError(f"Runway: HTTP {response.status_code}", retryable=retryable)
        try:
            body = response.json()
        except ValueError:
            raise RenderError("Runway: the answer is not JSON") from None
        if not isinstance(body, dict):
            raise RenderError("Runway: the answer is not a JSON object")
        return body

    async def clip(self, image: Path, prompt: str, aspect: AspectRatio, dest: Path) -> Path:
        data = base64.b64encode(image.read_bytes()).decode()
        task = await self._call("POST", "/v1/image_to_video", json={
            "model": self.model,
            "promptImage": f"data:{_MIME.get(image.suffix, 'image/jpeg')};base64,{data}",
            "promptText": prompt[:1000],
            "ratio": RUNWAY_RATIOS[aspect],
            "duration": 5,
        })
        task_id = str(task.get("id") or "")
        if not task_id.replace("-", "").isalnum():
            raise RenderError("Runway: no task id in the answer")
        deadline = time.monotonic() + self.timeout
        while True:
            state = await self._call("GET", f"/v1/tasks/{task_id}")
            status = state.get("status")
            if status == "SUCCEEDED":
                output = state.get("output")
                if not isinstance(output, list) or not output or not isinstance(output[0], str):
                    raise RenderError("Runway: a finished task without output")
                try:
                    return await self.fetcher.fetch(output[0], dest, video=True)
                except FetchError as exc:
                    raise RenderError(f"Runway clip: {exc.reason}", retryable=exc.retryable) from None
            if status in ("FAILED", "CANCELLED"):
                code = str(state.get("failureCode") or "")
                why = str(state.get("failure") or status)[:300]
                raise RenderError(f"Runway: {why}", retryable=not code.startswith(("SAFETY", "INPUT")))
            if time.monotonic() >= deadline:
                raise RenderError(f"Runway: no clip after {self.timeout:g} s")
            await asyncio.sleep(self.poll_interval)


def clip_provider(settings: RenderSettings, fetcher: ImageFetcher) -> ClipProvider | None:
    """The configured clip provider, or None (stills with zoom or pan)."""
    if settings.runway_api_key is None:
        return None
    return RunwayClips(
        settings.runway_base_url, settings.runway_api_key.get_secret_value(), settings.runway_model, fetcher,
        settings.runway_poll_interval, settings.runway_timeout,
    )
