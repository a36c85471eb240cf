"""Hosted AI providers, optional: off unless their key is configured.

``VoiceProvider.speak(script, wav)`` writes a voice-over WAV file; without a
provider the renderer speaks with espeak-ng (local). ``ElevenLabsVoice`` asks
ElevenLabs' text-to-speech API for raw 16-bit PCM and wraps it in a WAV
header, so ffmpeg reads it with the same forced ``wav`` format as espeak-ng's.
A provider failure is a retryable ``RenderError`` (a 4xx other than 429 is
not retryable: the key or the request is wrong).
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Protocol

import httpx

from connectors.render.ffmpeg import RenderError
from connectors.render.settings import RenderSettings

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
