"""Where rendered files go: names from the video id and the attempt, inside one folder.

``{video_id}.{attempt}.mp4`` and ``{video_id}.{attempt}.jpg`` (the thumbnail).
A video id is ``[A-Za-z0-9][A-Za-z0-9_-]{0,63}`` (models/video.py), so a name
can never leave the folder; ``path_of`` checks it again for names that come
from a URL. Files are written under a temporary name in the same folder and
renamed (atomic), the thumbnail first: an ``.mp4`` present means the attempt
is complete. ``sweep`` removes what a killed render left behind.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[0-9]{1,4}\.(mp4|jpg)$")
PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[0-9]{1,4}\.part-[0-9a-f]{12}\.(mp4|jpg)$")
WORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[0-9]{1,4}\.[0-9a-f]{12}$")
CONTENT_TYPES = {"mp4": "video/mp4", "jpg": "image/jpeg"}


class Storage:
    def __init__(self, root: Path, public_base: str) -> None:
        self.root = root
        self.public_base = public_base.rstrip("/")

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def names(self, video_id: str, attempt: int) -> tuple[str, str]:
        video, thumb = f"{video_id}.{attempt}.mp4", f"{video_id}.{attempt}.jpg"
        if not NAME.match(video):
            raise ValueError(f"bad video id {video_id!r}")
        return video, thumb

    def path_of(self, name: str) -> Path | None:
        """The file of a public name, or None when the name is not one of ours."""
        if not NAME.match(name):
            return None
        root = self.root.resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root) or path.is_symlink():
            return None
        return path

    def temp(self, name: str) -> Path:
        stem, _, ext = name.rpartition(".")
        return self.root / f"{stem}.part-{uuid.uuid4().hex[:12]}.{ext}"

    def url(self, name: str) -> str:
        return f"{self.public_base}/{name}"


def sweep(output_dir: Path, work_dir: Path, older_than_s: float) -> int:
    """Remove what killed renders left: temporary outputs and work folders not
    touched for ``older_than_s`` (a render still running elsewhere, in another
    renderer sharing the folders, is younger than that). Finished files stay."""
    limit = time.time() - older_than_s
    removed = 0
    for folder, pattern in ((output_dir, PART), (work_dir, WORK)):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if not pattern.match(entry.name) or entry.is_symlink():
                continue
            try:
                if entry.stat().st_mtime >= limit:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += 1
            except FileNotFoundError:
                continue
    return removed
