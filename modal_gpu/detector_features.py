"""Window-local image features of the classical detector (numpy only; see :mod:`modal_gpu.detector`).

All functions take one window of consecutive caption-band frames and never look outside it.

* :func:`grey`: ``max(R, G, B)`` (colour-agnostic for light strokes), downsampled.
* :func:`text_mask`: white top-hat of that grey image -> bool ``(N, h, w)`` "bright thin stroke" mask.
* :func:`window_features`: per-frame presence (log10 of caption-like pixels that persist over 3
  frames, / h^2) and per-pair losses (fraction of each frame's persistent strokes that the other
  frame lacks, both directions).
"""

from __future__ import annotations

import numpy as np

WORK_HEIGHT = 64
"""Bands at least twice this tall (pixels) are downsampled by ``h // WORK_HEIGHT`` (strokes stay >= 2 px)."""
MAX_WORK_WIDTH = 960
"""Bands wider than this (pixels) are downsampled further, by an integer factor (bounds the cost)."""
MIN_GLYPH_HEIGHT = 6
"""Shortest vertical run (pixels, in the 3x3-dilated stroke mask) a stroke pixel must lie on."""
CORE_SHARE = 0.2
"""A frame's stable-stroke core counts for change when it holds at least this share of its strokes..."""
MIN_CORE = 0.01
"""... and at least this many pixels per h^2 (the lost fraction of a few clutter specks is noise)."""
FLOOR = 1e-4
"""Added to presence fractions before log10 (the log of an empty mask)."""


def _minmax_filter(a: np.ndarray, k: int, axis: int, op) -> np.ndarray:
    """Running min/max over a window of ``k`` (odd) pixels along ``axis`` (1 or 2), edges replicated."""
    r = k // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="edge")
    n = a.shape[axis]

    def sl(d: int) -> np.ndarray:
        return p[:, d:d + n] if axis == 1 else p[:, :, d:d + n]

    out = sl(0).copy()
    for d in range(1, k):
        op(out, sl(d), out=out)
    return out


def _all_runs(m: np.ndarray, length: int) -> np.ndarray:
    """``s[..., x] = all(m[..., x:x+length])`` along the last axis (width W - length + 1), by doubling."""
    a, c = m, 1
    while 2 * c <= length:
        a = a[..., :-c] & a[..., c:]
        c *= 2
    if c < length:
        a = a[..., : a.shape[-1] - (length - c)] & a[..., length - c:]
    return a


def _in_long_runs(m: np.ndarray, length: int) -> np.ndarray:
    """Pixels of bool ``(N, A, B)`` ``m`` inside a run of True of at least ``length`` along the last axis."""
    if length > m.shape[2]:
        return np.zeros_like(m)
    starts = _all_runs(m, length)  # (N, A, B - length + 1)
    padded = np.zeros(m.shape[:2] + (m.shape[2] + length - 1,), bool)
    padded[:, :, length - 1: length - 1 + starts.shape[2]] = starts
    # covered[x] = any(starts[x - length + 1 .. x]) = not all(not padded[x .. x + length - 1])
    return ~_all_runs(~padded, length)


def dilate3(m: np.ndarray) -> np.ndarray:
    """3x3 binary dilation of bool ``(N, H, W)`` masks (per frame)."""
    d = m.copy()
    d[:, :, 1:] |= m[:, :, :-1]
    d[:, :, :-1] |= m[:, :, 1:]
    e = d.copy()
    e[:, 1:] |= d[:, :-1]
    e[:, :-1] |= d[:, 1:]
    return e


def grey(frames: np.ndarray, channel: str = "max") -> np.ndarray:
    """``max(R, G, B)`` (``channel="max"``: a stroke of any light colour, white, yellow, cyan, green or
    magenta, is bright in it) or ``min(R, G, B)`` (``"min"``: only neutral strokes stay bright, the
    issue-8 detector) as uint8 ``(N, h, w)``, box-downsampled by an integer factor
    ``max(1, H // WORK_HEIGHT, ceil(W / MAX_WORK_WIDTH))``.

    Raises:
        ValueError: ``channel`` is neither ``max`` nor ``min``.
    """
    if channel not in ("max", "min"):
        raise ValueError(f"channel must be 'max' or 'min', got {channel!r}")
    op = np.maximum if channel == "max" else np.minimum
    w = op(op(frames[..., 0], frames[..., 1]), frames[..., 2])
    f = max(1, w.shape[1] // WORK_HEIGHT, -(-w.shape[2] // MAX_WORK_WIDTH))
    if f > 1:  # box mean, floored: integer sums of the f x f phases (exactly mean().astype(uint8))
        hh, ww = w.shape[1] // f * f, w.shape[2] // f * f
        acc = np.zeros((w.shape[0], hh // f, ww // f), np.uint32 if f > 16 else np.uint16)
        for dy in range(f):
            for dx in range(f):
                acc += w[:, dy:hh:f, dx:ww:f]
        w = (acc // (f * f)).astype(np.uint8)
    return w


def text_mask(w: np.ndarray, contrast: int) -> np.ndarray:
    """Bright thin strokes of grey ``w`` (uint8 (N, h, w)): white top-hat with a ``k x k`` square,
    ``k ~ h / 12`` (odd, >= 5), above ``contrast`` grey levels, minus horizontal runs >= ``4k`` px
    (picture edges, letterbox lines), keeping only pixels on a vertical run of at least
    MIN_GLYPH_HEIGHT px of the 3x3-dilated mask (glyphs have height; thin horizontal lines and
    dashes do not). bool ``(N, h, w)``."""
    k = max(5, round(w.shape[1] / 12)) | 1
    opened = _minmax_filter(_minmax_filter(w, k, 2, np.minimum), k, 1, np.minimum)
    opened = _minmax_filter(_minmax_filter(opened, k, 2, np.maximum), k, 1, np.maximum)
    m = (w - opened) > contrast  # opening <= w, so uint8 subtraction does not wrap
    m &= ~_in_long_runs(m, 4 * k)
    tall = _in_long_runs(np.ascontiguousarray(dilate3(m).transpose(0, 2, 1)), MIN_GLYPH_HEIGHT)
    return m & tall.transpose(0, 2, 1)


def window_features(frames: np.ndarray, contrast: int, diff_level: int,
                    channel: str = "max", bg_share: float = 0.0,
                    bg_min_frames: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """``(presence (N,) float64, lost (N-1, 2) float64 in [0, 1] or NaN)`` for uint8 ``(N >= 2, H, W, 3)``.

    With ``bg_share > 0`` and N >= ``bg_min_frames``, stroke pixels in >= ``bg_share * N`` frames'
    masks (3x3-dilated) are removed from every frame's mask first (static background).

    ``agree(a -> b)`` = stroke pixels of a that are strokes in b too (3x3 neighbourhood) with grey
    level within ``diff_level``: a static caption agrees with itself over any background, moving
    clutter does not.

    * presence[i] = log10(max(#(agree(i -> i+1) & agree(i -> i+2)), #(agree(i -> i-1) & agree(i -> i-2)))
      / h^2 + FLOOR), also centred (i-1, i, i+1): strokes that persist 3 frames (a caption lasts >= 3
      frames; a 1-frame empty gap between two captions stays empty). Where the window may cut a run,
      2-frame agreement also counts: frames 0 and N-1 with their neighbour inside, frames 1 and N-2
      with frame 0 and N-1 (a caption whose first or last 2 frames only are in this window).
    * core(i) = agree(i -> i-1) (strokes already present before; the frame's own mask when i is the
      window's first frame). lost(a -> b) = fraction of core(a) not in agree(a -> b).
      lost[k] = (lost(k -> k+1), lost'(k+1 -> k)), where lost' uses core'(k+1) = agree(k+1 -> k+2):
      the caption's own stable strokes, not the whole textured background, are compared. Both high:
      replaced; only the first: the caption ended (what remains was there before); only the second:
      one started. A core smaller than CORE_SHARE of its frame's strokes (a caption's first or last
      frame) or than MIN_CORE h^2 pixels (specks of clutter) gives NaN (no evidence).
    """
    w = grey(frames, channel)
    h = w.shape[1]
    m = text_mask(w, contrast)
    n = len(w)
    if bg_share > 0 and n >= bg_min_frames:
        bg = np.count_nonzero(m, axis=0) >= bg_share * n
        m &= ~dilate3(bg[None])[0]
    md = dilate3(m)
    wi = w.astype(np.int16)
    close1 = np.abs(wi[1:] - wi[:-1]) <= diff_level  # (N-1, h, w): pixels k and k+1 alike
    fwd1 = m[:-1] & md[1:] & close1  # agree(k -> k+1), index k
    bwd1 = m[1:] & md[:-1] & close1  # agree(k+1 -> k), index k
    norm = float(h * h)
    c1 = np.count_nonzero(fwd1, axis=(1, 2)).astype(float)  # agree(k -> k+1)
    cb1 = np.count_nonzero(bwd1, axis=(1, 2)).astype(float)  # agree(k+1 -> k)
    stable = np.zeros(n)
    if n >= 3:
        close2 = np.abs(wi[2:] - wi[:-2]) <= diff_level
        fwd2 = fwd1[:-1] & md[2:] & close2  # agree(i -> i+1) & agree(i -> i+2), index i
        bwd2 = bwd1[1:] & md[:-2] & close2  # agree(i -> i-1) & agree(i -> i-2), index i - 2
        stable[:-2] = np.count_nonzero(fwd2, axis=(1, 2))
        np.maximum(stable[2:], np.count_nonzero(bwd2, axis=(1, 2)), out=stable[2:])
        mid = np.count_nonzero(bwd1[:-1] & fwd1[1:], axis=(1, 2))  # agree(i -> i-1) & agree(i -> i+1)
        np.maximum(stable[1:-1], mid, out=stable[1:-1])
    # the window cuts runs: the first two and last two frames may only have a 2-frame run inside it
    for i, v in ((0, c1[0]), (1, cb1[0]), (n - 2, c1[-1]), (n - 1, cb1[-1])):
        stable[i] = max(stable[i], v)
    presence = np.log10(stable / norm + FLOOR)

    # core of frame a (for pair a -> a+1): agree(a -> a-1); first frame: its mask
    core_a = np.concatenate([m[:1], bwd1[:-1]]) if n >= 2 else m[:1]
    # core of frame b = a+1 (for pair a -> b): agree(b -> b+1); last frame: its mask
    core_b = np.concatenate([fwd1[1:], m[-1:]])
    ca = np.count_nonzero(core_a, axis=(1, 2)).astype(float)
    cb = np.count_nonzero(core_b, axis=(1, 2)).astype(float)
    cnt = np.count_nonzero(m, axis=(1, 2)).astype(float)
    lost_a = 1.0 - np.count_nonzero(core_a & fwd1, axis=(1, 2)) / np.maximum(ca, 1)
    lost_b = 1.0 - np.count_nonzero(core_b & bwd1, axis=(1, 2)) / np.maximum(cb, 1)
    # a core is usable when it holds a fair share of the frame's strokes (not a caption's first /
    # last frame, whose neighbour lacks it); none usable: no evidence either way (0.5)
    use_a = (ca >= CORE_SHARE * np.maximum(cnt[:-1], 1)) & (ca >= MIN_CORE * norm)
    use_b = (cb >= CORE_SHARE * np.maximum(cnt[1:], 1)) & (cb >= MIN_CORE * norm)
    return presence, np.stack([np.where(use_a, lost_a, np.nan), np.where(use_b, lost_b, np.nan)], axis=1)
