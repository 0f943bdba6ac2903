"""The 6 per-video spatial features fed to the model (COMPAT.md §4, "Spatial features")."""

from __future__ import annotations

import numpy as np

from boundaries.layout_config import LayoutConfig

ANCHOR_ONE_HOT = {"left": (1.0, 0.0, 0.0), "center": (0.0, 1.0, 0.0), "right": (0.0, 0.0, 1.0)}
FALLBACK_X, FALLBACK_Y, FALLBACK_W = 0.5, 0.9, 0.5


def spatial_features(layout: LayoutConfig) -> np.ndarray:
    """``float32 (6,)``: anchor one-hot (left/center/right; unknown -> center), then ``x, y, w``.

    ``x = ((crop_left + crop_right) / 2) / frame_width``, ``y = ((crop_top + crop_bottom) / 2) /
    frame_height``, ``w = (crop_right - crop_left) / frame_width``, all from **pixel** crops; a
    non-positive frame width (height) gives the fallbacks x = 0.5, w = 0.5 (y = 0.9).
    """
    one_hot = ANCHOR_ONE_HOT.get(layout.anchor_type, ANCHOR_ONE_HOT["center"])
    fw, fh = layout.frame_width, layout.frame_height
    x = ((layout.crop_left + layout.crop_right) / 2) / fw if fw and fw > 0 else FALLBACK_X
    y = ((layout.crop_top + layout.crop_bottom) / 2) / fh if fh and fh > 0 else FALLBACK_Y
    w = (layout.crop_right - layout.crop_left) / fw if fw and fw > 0 else FALLBACK_W
    return np.array([*one_hot, x, y, w], dtype=np.float32)
