"""Video rendering: the renderer process (``ops-engine renderer``) and its parts.

- ``settings``: ``RenderSettings`` (OPS_RENDER_*, OPS_ELEVENLABS_*, OPS_RUNWAY_*);
- ``fetch``: ``ImageFetcher``, SSRF-safe image downloads;
- ``ffmpeg``: the ffmpeg/ffprobe/espeak-ng commands (argument lists, no shell);
- ``storage``: output names from the video id and attempt, inside one folder;
- ``providers``: optional hosted AI adapters (ElevenLabs voice, Runway image-to-video clips);
- ``renderer``: one render command to its outcome;
- ``runner``: the Kafka consumer that drives it (``video.renders`` -> ``video.events``).

The job machine is pure and lives in ``models/video.py``.
"""
