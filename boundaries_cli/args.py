"""argparse types of the ``boundaries`` commands: checked before any service starts."""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_crop(text: str) -> tuple[float, float, float, float]:
    """``L,T,R,B`` fractions of width/height, 0 <= L < R <= 1, 0 <= T < B <= 1."""
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--crop must be four numbers L,T,R,B, got {text!r}") from e
    if len(vals) != 4:
        raise argparse.ArgumentTypeError(f"--crop must be four numbers L,T,R,B, got {text!r}")
    left, top, right, bottom = vals
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise argparse.ArgumentTypeError(f"--crop needs 0 <= L < R <= 1 and 0 <= T < B <= 1, got {text!r}")
    return vals


def existing_file(text: str) -> str:
    """argparse type: a path to an existing regular file (checked before any service starts)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"file not found: {text!r}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"not a regular file: {text!r}")
    return text


def video_file(text: str) -> str:
    """argparse type: an existing file that opens as a container with a video stream."""
    import av

    existing_file(text)
    try:
        with av.open(text) as container:
            if not container.streams.video:
                raise argparse.ArgumentTypeError(f"not a readable video (no video stream): {text!r}")
    except av.FFmpegError as e:
        raise argparse.ArgumentTypeError(f"not a readable video: {text!r} ({e.strerror or e})") from e
    return text


def uuid_arg(text: str) -> str:
    """argparse type: a canonical UUID (ids reach storage keys and SQL)."""
    from boundaries.errors import InvalidId
    from boundaries.ids import validate_uuid

    try:
        return validate_uuid(text, "id")
    except InvalidId as e:
        raise argparse.ArgumentTypeError(f"must be a UUID, got {text!r}") from e
