"""Classical caption-boundary detector: numpy only, no checkpoint, no torch (issue 8).

Implements :class:`modal_gpu.predictor.PairPredictor` on caption-band crops (COMPAT.md §2, 10 fps).
Everything is window-local: ``predict`` is called on windows of ~256 consecutive frames that share
one frame with the previous window (modal_gpu/shard.py); nothing is carried between calls.

What it does (features in :mod:`modal_gpu.detector_features`):

1. **Stroke mask**: white top-hat of ``max(R, G, B)`` (a light stroke of any colour is bright in it:
   white, yellow, cyan, green, magenta; issue 15 — ``min(R, G, B)``, classical-v2, lost coloured text)
   with a square wider than a stroke (``~h/12``), above ``contrast``;
   horizontal runs longer than ``4k`` removed (edges, letterbox lines); only pixels on a vertical
   run of >= 6 px of the dilated mask kept (glyphs have height, dashes and thin lines do not).
   Bands are box-downsampled first by ``max(h // 64, ceil(w / 960))`` when that is > 1.
   **Static background** (issue 15): in a window of >= ``bg_min_frames`` frames, stroke pixels present
   in >= ``bg_share`` of its frames (and their 3x3 neighbours) are dropped: a static texture or
   drawing agrees with itself exactly like a caption, but it stays through the caption changes.
2. **Agreement** a->b: stroke pixels of a that are strokes in b (3x3) with nearly the same grey level.
   A burned-in caption is static, so it agrees with itself over any moving background.
3. **Presence** of frame i: strokes agreeing over 3 frames (i..i+2, i-1..i+1 or i-2..i), / h^2,
   log10; at the window's two first/last frames 2-frame agreement also counts (the seam may cut a run).
4. **Losses** of pair (a, b): of a's strokes that were already stable (agreeing with a-1), the
   fraction missing from b; of b's strokes stable into b+1, the fraction missing from a. Both high:
   replaced; only a's: the caption ended (what stays was there before); only b's: one started.
   Cores that are tiny or a small share of the frame's strokes give no evidence.
5. **Decoding**: a 2-state (empty / caption) chain over the window with switch prior ``q_switch``
   and change prior ``q_change``; logistic presence evidence and the two loss evidences;
   forward-backward gives the posterior of each pair's five classes. These posteriors are the
   probabilities returned (exact marginals of that simple model: calibrated where the model holds,
   over-confident where it does not), argmax is the label. A 1-frame flicker needs two switches, so
   it needs strong evidence (hysteresis without a fixed minimum duration).
   Backward rows swap ``empty_valid`` and ``valid_empty`` (COMPAT.md §4).

Where it fails: a caption shown for >= ``bg_share`` of a window counts as background and is lost
(in production a 256-frame window needs a 20-s caption; the last window of a video can be as short
as ``bg_min_frames`` frames, where a 2-s caption is enough). Static textures shown for less than
that share of a window (a still shot of a few seconds) still look like a caption. Captions not
lighter than their surroundings (dark text, light text without outline over a light ground) are
missed. A caption replaced by one that keeps most strokes (a line appended) reads as ``same``.
Captions shorter than 3 frames (0.3 s) are not seen inside a window. Fades spread an event over
frames. The OCR prior image in ``layout`` is not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boundaries.errors import PermanentError
from boundaries.labels import LABELS
from boundaries.layout_config import LayoutConfig
from boundaries.model_versions import CLASSICAL_MODEL_VERSION
from modal_gpu.detector_features import window_features


@dataclass(frozen=True)
class DetectorParams:
    """Thresholds and priors. ``presence_*`` and ``change_threshold`` defaults: the grid point of
    scripts/eval_real.py tuned on all of eval/manifest.toml for classical-v2 (issue 8), kept for
    classical-v3 (they score every manifest clip 1.000; never tuned on the issue-15 style set);
    the rest fixed by hand (README "Caption style set" has the figures)."""

    presence_log10: float = -1.0
    """log10 of the 3-frame-stable stroke-pixel count / h^2 at which presence evidence is even."""
    presence_scale: float = 0.6
    """Logistic width of presence evidence, in log10 units."""
    change_threshold: float = 0.5
    """Lost fraction of a frame's stable strokes at which "lost" evidence is even."""
    change_scale: float = 0.05
    q_switch: float = 0.05
    """Prior probability per pair that a caption starts or ends."""
    q_change: float = 0.05
    """Prior probability per caption pair that the caption is replaced."""
    contrast: int = 50
    """Top-hat threshold, grey levels (0-255)."""
    diff_level: int = 40
    """Largest grey-level difference of a stroke pixel that still agrees (0-255)."""
    channel: str = "max"
    """Grey image the strokes are found in: ``max`` of R, G, B (classical-v3: light strokes of any
    colour) or ``min`` (classical-v2: neutral strokes only; misses yellow, cyan, green text)."""
    reveal: float = 1.0
    """Weight of "a caption's start / end may hide / reveal background strokes" (issue 15): at 1 the
    other frame's losses say nothing about ``empty_valid`` / ``valid_empty`` (a box or outline
    hides the background under it, so the empty frame next to it seems to lose or gain strokes);
    at 0 (classical-v2) an empty frame must keep all its stable strokes."""
    bg_share: float = 0.8
    """Static background: stroke pixels present in at least this share of a window's frames are
    dropped from the stroke mask (static textures, drawn lines of a still shot, logos); 0 disables.
    Chosen by hand (a caption lasts far less than 4/5 of a 256-frame window)."""
    bg_min_frames: int = 24
    """Windows shorter than this (frames) keep their whole mask (too short to tell a caption from
    a static background)."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def _pair_posteriors(pp: np.ndarray, pl: np.ndarray, params: DetectorParams) -> np.ndarray:
    """Pair marginals ``(N-1, 5)`` in LABELS order of a 2-state (empty / caption) chain over the window.

    Frame evidence: presence probability ``pp`` (N,) read as a likelihood ratio against a flat prior.
    Pair evidence ``pl`` (N-1, 2): probability that the first / second frame's stable strokes are
    lost in the other frame (0.5 = no evidence). Pair factors, switch prior ``qs``, change ``qc``:
    same ``(1-qs)(1-qc)(1-la)(1-lb)``, different ``(1-qs) qc la lb``, empty_empty ``(1-qs)/4``
    (losses say nothing about clutter), empty_valid ``qs ((1-r)(1-la) + r/2) lb``, valid_empty
    ``qs la ((1-r)(1-lb) + r/2)`` with ``r = params.reveal``.
    Forward-backward (scaled) gives exact marginals of the five pair classes given the window.
    """
    eps = 1e-6
    e1 = np.clip(pp.astype(np.float64), eps, 1 - eps)
    e0 = 1.0 - e1
    qs, qc = params.q_switch, params.q_change
    la = np.clip(pl[:, 0], eps, 1 - eps)
    lb = np.clip(pl[:, 1], eps, 1 - eps)
    f_same = (1 - qs) * (1 - qc) * (1 - la) * (1 - lb)
    f_diff = (1 - qs) * qc * la * lb
    f_ee = np.full(len(la), (1 - qs) / 4)
    r = params.reveal
    f_ev = qs * ((1 - r) * (1 - la) + r * 0.5) * lb
    f_ve = qs * la * ((1 - r) * (1 - lb) + r * 0.5)
    f11 = f_same + f_diff
    n = len(e1)
    a0, a1, b0, b1 = [0.0] * n, [0.0] * n, [1.0] * n, [1.0] * n
    e0l, e1l, f11l = e0.tolist(), e1.tolist(), f11.tolist()
    eel, evl, vel = f_ee.tolist(), f_ev.tolist(), f_ve.tolist()
    x0, x1 = 0.5 * e0l[0], 0.5 * e1l[0]
    s = x0 + x1
    a0[0], a1[0] = x0 / s, x1 / s
    for i in range(n - 1):
        y0 = (a0[i] * eel[i] + a1[i] * vel[i]) * e0l[i + 1]
        y1 = (a0[i] * evl[i] + a1[i] * f11l[i]) * e1l[i + 1]
        s = y0 + y1
        a0[i + 1], a1[i + 1] = y0 / s, y1 / s
    for i in range(n - 2, -1, -1):
        u0, u1 = e0l[i + 1] * b0[i + 1], e1l[i + 1] * b1[i + 1]
        z0 = eel[i] * u0 + evl[i] * u1
        z1 = vel[i] * u0 + f11l[i] * u1
        s = z0 + z1
        b0[i], b1[i] = z0 / s, z1 / s
    a0v, a1v = np.array(a0[:-1]), np.array(a1[:-1])
    t0 = e0[1:] * np.array(b0[1:])
    t1 = e1[1:] * np.array(b1[1:])
    out = np.stack([a1v * f_same * t1, a1v * f_diff * t1, a0v * f_ee * t0,
                    a0v * f_ev * t1, a1v * f_ve * t0], axis=1)
    return out / out.sum(axis=1, keepdims=True)


class ClassicalDetector:
    """Caption presence + change detector (see module docstring); stateless, thread-safe."""

    model_version = CLASSICAL_MODEL_VERSION

    def __init__(self, params: DetectorParams | None = None) -> None:
        self.params = params or DetectorParams()

    def pair_scores(self, frames: np.ndarray, layout: LayoutConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw window scores: ``(presence (N,) float64 log10, lost (N-1, 2) float64 in [0, 1] or NaN)``
        (see :func:`modal_gpu.detector_features.window_features`).

        Raises:
            PermanentError: ``frames`` is not ``uint8 (N, H, W, 3)`` with N >= 2.
        """
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 2:
            raise PermanentError(f"frames must be uint8 (N>=2, H, W, 3), got {frames.dtype} {frames.shape}")
        p = self.params
        return window_features(frames, p.contrast, p.diff_level, p.channel, p.bg_share, p.bg_min_frames)

    @staticmethod
    def probabilities_from_scores(scores: tuple[np.ndarray, np.ndarray],
                                  params: DetectorParams) -> tuple[np.ndarray, np.ndarray]:
        """``(forward, backward)`` float32 (N-1, 5) from one window's :meth:`pair_scores` output."""
        pres, lost = scores
        pp = _sigmoid((pres - params.presence_log10) / params.presence_scale)
        pl = np.where(np.isnan(lost), 0.5, _sigmoid((np.nan_to_num(lost) - params.change_threshold)
                                                    / params.change_scale))
        fwd = _pair_posteriors(pp, pl, params).astype(np.float32)
        bwd = fwd[:, [0, 1, 2, 4, 3]].copy()
        return fwd, bwd

    @staticmethod
    def labels_from_scores(scores: tuple[np.ndarray, np.ndarray], params: DetectorParams) -> list[str]:
        """Forward argmax labels from one window's :meth:`pair_scores` output (evaluation, tuning)."""
        fwd, _ = ClassicalDetector.probabilities_from_scores(scores, params)
        return [LABELS[i] for i in fwd.argmax(axis=1)]

    def predict(self, frames: np.ndarray, layout: LayoutConfig) -> tuple[np.ndarray, np.ndarray]:
        """``(forward, backward)`` probabilities, each float32 (N-1, 5) in ``LABELS`` order, rows sum to 1.

        ``frames``: uint8 (N, H, W, 3) RGB caption-band crops of consecutive frames, N >= 2.
        Row k of ``backward`` is the pair (k+1, k): ``empty_valid`` and ``valid_empty`` swapped.

        Raises:
            PermanentError: bad ``frames`` shape or dtype (names the shape).
        """
        return self.probabilities_from_scores(self.pair_scores(frames, layout), self.params)
