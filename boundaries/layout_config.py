"""Per-video layout (COMPAT.md §3) as used by preprocessing and spatial features.

Reading and writing ``layout.db`` lives in :mod:`boundaries.frames.layoutdb`.
"""

from __future__ import annotations

from dataclasses import dataclass

ANCHORS = ("left", "center", "right")


@dataclass(frozen=True)
class LayoutConfig:
    """Crop of the caption region in **pixels** of the full frame, plus the OCR prior image.

    ``ocr_visualization_png``: PNG bytes, the size of the crop (every OCR box drawn on the crop, or
    a text-likelihood map computed from the frames for videos ingested by this project).
    ``anchor_type``: one of ``left``, ``center``, ``right`` (unknown values are kept as given;
    consumers treat unknown as center, COMPAT.md §4).
    """

    frame_width: int
    frame_height: int
    crop_left: int
    crop_top: int
    crop_right: int
    crop_bottom: int
    anchor_type: str
    ocr_visualization_png: bytes

    @property
    def crop_width(self) -> int:
        return self.crop_right - self.crop_left

    @property
    def crop_height(self) -> int:
        return self.crop_bottom - self.crop_top
