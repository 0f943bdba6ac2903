"""Definition and builder of the caption style set (issue 15): burned captions of random styles over
public-domain film and procedural backgrounds, with exact pair labels from the cue timing.

Backgrounds ("sources"; the split is by source, so no background is in both tuning and test):

* ``popeye_T00-1``, ``popeye_T01-2``: the public-domain Popeye film (1936, Library of Congress) from
  shared/data/real/popeye (the ``*_pgs.mkv`` picture, which has no text; see SOURCES.md there),
  decoded at 10 fps and scaled to the set's frame size.
* ``noise``, ``gradient``, ``shapes``, ``night_lights``, ``snow``, ``foliage``: drawn here by numpy
  from a seed (no footage): a static multi-scale noise texture with flicker; a panning colour
  gradient; coloured shapes moving over a plain ground; dark ground with drifting twinkling bright
  dots; falling white flakes over grey-blue; a swaying green leaf texture with bright highlights.
  They are stand-ins for such footage, not real video.

Fonts come from Debian packages (fonts-dejavu-core: Latin, Cyrillic, Arabic; fonts-wqy-microhei:
CJK). Captions are drawn with Pillow (raqm layout when available, for Arabic shaping). Styles are
drawn at random per clip from :data:`STYLE_RANGES`. Labels: cue ``c`` covers frames
``[start_c, end_c)`` at 10 fps (a cue is active at frame k iff start <= k/10 < end); pair labels as
in shared/data/real/SOURCES.md "Labels".
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

FPS = 10
WIDTH, HEIGHT = 480, 272
SOURCES = ("popeye_T00-1", "popeye_T01-2", "noise", "gradient", "shapes", "night_lights", "snow", "foliage")
SPLIT = {"tune": ("popeye_T00-1", "noise", "shapes", "snow"),
         "test": ("popeye_T01-2", "gradient", "night_lights", "foliage")}
"""Tuning and test sources: each split has one film source, one static-busy, one moving, one bright texture."""
BACKGROUND_KIND = {"popeye_T00-1": "film", "popeye_T01-2": "film", "noise": "static_busy",
                   "gradient": "moving", "shapes": "moving", "night_lights": "bright_texture",
                   "snow": "bright_texture", "foliage": "bright_texture"}
POPEYE_FILE = {"popeye_T00-1": "popeye/T00-1_pgs.mkv", "popeye_T01-2": "popeye/T01-2_pgs.mkv"}

STYLE_RANGES = {
    "colour": ("white", "yellow", "cyan", "green", "magenta", "light_grey"),
    "decoration": ("outline", "shadow", "none"),
    "box": ("none", "none", "opaque", "semi"),
    "size": ("small", "medium", "large"),
    "lines": (1, 2),
    "position": ("bottom", "top", "mid"),
    "align": ("left", "center", "right"),
    "script": ("latin", "cjk", "cyrillic", "arabic"),
}
COLOURS = {"white": (255, 255, 255), "yellow": (255, 230, 40), "cyan": (60, 235, 255),
           "green": (70, 240, 90), "magenta": (250, 90, 240), "light_grey": (205, 205, 205)}
SIZE_PX = {"small": (12, 15), "medium": (16, 20), "large": (21, 27)}
FONTS = {"latin": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
         "cyrillic": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
         "arabic": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
         "cjk": "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"}
WORDS = {
    "latin": "the sailor boat island storm captain quickly look there never again come with me now what "
             "happened to your ship we need help before night falls".split(),
    "cyrillic": "капитан остров корабль буря быстро смотри туда никогда снова пойдём со мной что "
                "случилось помощь ночь море".split(),
    "arabic": "البحار السفينة الجزيرة العاصفة القبطان بسرعة انظر هناك أبدا مرة أخرى تعال معي الآن".split(),
    "cjk": list("我们今天晚上一起去看海吧船长快点这里那里没有问题为什么不可以"),
}


@dataclass(frozen=True)
class Style:
    colour: str
    decoration: str
    box: str
    size: str
    lines: int
    position: str
    align: str
    script: str


@dataclass(frozen=True)
class Clip:
    name: str
    source: str
    split: str
    style: Style
    seed: int
    frames: int
    start_s: float
    """Offset into the popeye film (s); 0 for procedural sources."""


def plan_clips(clips_per_source: int = 4, seconds: int = 20, seed: int = 15) -> list[Clip]:
    """The set's clips: ``clips_per_source`` per source, each with a style drawn at random (seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for source in SOURCES:
        split = "tune" if source in SPLIT["tune"] else "test"
        for i in range(clips_per_source):
            style = Style(**{k: (v[int(rng.integers(len(v)))]) for k, v in STYLE_RANGES.items()})
            style = Style(**{**asdict(style), "lines": int(style.lines)})
            start = float(i * 13) if source.startswith("popeye") else 0.0
            out.append(Clip(f"{source}_{i}", source, split, style, int(rng.integers(1 << 30)),
                            seconds * FPS, start))
    return out


# ---------------------------------------------------------------- backgrounds

def _smooth_noise(rng: np.random.Generator, h: int, w: int, scales=(4, 16, 48)) -> np.ndarray:
    """float32 (h, w) in [0, 1]: sum of upsampled random grids at several scales."""
    from PIL import Image

    acc = np.zeros((h, w), np.float32)
    for s in scales:
        g = rng.random((max(2, h // s), max(2, w // s))).astype(np.float32)
        acc += np.asarray(Image.fromarray(g).resize((w, h), Image.BILINEAR)) / len(scales)
    acc -= acc.min()
    return acc / max(float(acc.max()), 1e-6)


def procedural_frames(source: str, n: int, seed: int, h: int = HEIGHT, w: int = WIDTH) -> Iterator[np.ndarray]:
    """uint8 (h, w, 3) RGB frames of a procedural background (see module docstring)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if source == "noise":
        tex = _smooth_noise(rng, h, w, (2, 6, 24))
        tint = rng.uniform(0.4, 1.0, 3).astype(np.float32)
        base = tex[..., None] * tint * 255
        for k in range(n):
            f = 1.0 + 0.05 * np.sin(k / 7.0)
            yield np.clip(base * f + rng.normal(0, 4, (h, w, 1)), 0, 255).astype(np.uint8)
    elif source == "gradient":
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        for k in range(n):
            t = (np.sin((xx + 6 * k) / w * np.pi * 1.5 + yy / h) + 1) / 2
            img = c0 * (1 - t[..., None]) + c1 * t[..., None]
            yield np.clip(img + rng.normal(0, 3, (h, w, 1)), 0, 255).astype(np.uint8)
    elif source == "shapes":
        ground = rng.uniform(20, 120, 3)
        m = 14
        pos = rng.uniform(0, 1, (m, 2)) * (w, h)
        vel = rng.normal(0, 6, (m, 2))
        size = rng.uniform(10, 60, (m, 2))
        col = rng.uniform(0, 255, (m, 3))
        for _k in range(n):
            img = np.broadcast_to(ground, (h, w, 3)).astype(np.float32).copy()
            for j in range(m):
                cx, cy = pos[j]
                if j % 2:
                    sel = ((xx - cx) / size[j, 0]) ** 2 + ((yy - cy) / size[j, 1]) ** 2 < 1
                else:
                    sel = (abs(xx - cx) < size[j, 0]) & (abs(yy - cy) < size[j, 1] / 2)
                img[sel] = col[j]
            pos = (pos + vel) % (w, h)
            yield img.astype(np.uint8)
    elif source == "night_lights":
        m = 900
        pos = rng.uniform(0, 1, (m, 2)) * (w, h)
        phase = rng.uniform(0, 2 * np.pi, m)
        col = rng.uniform(150, 255, (m, 3))
        rad = rng.choice([0, 0, 1, 1, 2], m)
        sky = _smooth_noise(rng, h, w)[..., None] * np.array([20, 20, 45], np.float32)
        drift = rng.normal(0, 1.5, 2)
        for k in range(n):
            img = sky.copy()
            p = ((pos + drift * k) % (w, h)).astype(int)
            b = (0.6 + 0.4 * np.sin(phase + k * 0.8))[:, None]
            for r in (0, 1, 2):
                s = rad >= r
                for dx, dy in ((0, 0), (r, 0), (-r, 0), (0, r), (0, -r)):
                    yi, xi = np.clip(p[s, 1] + dy, 0, h - 1), np.clip(p[s, 0] + dx, 0, w - 1)
                    img[yi, xi] = np.maximum(img[yi, xi], col[s] * b[s])
            yield np.clip(img, 0, 255).astype(np.uint8)
    elif source == "snow":
        m = 700
        pos = rng.uniform(0, 1, (m, 2)) * (w, h)
        vel = np.stack([rng.normal(0, 1, m), rng.uniform(2, 9, m)], 1)
        rad = rng.choice([0, 1, 1, 2], m)
        ground = _smooth_noise(rng, h, w)[..., None] * np.array([60, 70, 90], np.float32) + 60
        for _k in range(n):
            img = ground.copy()
            p = pos.astype(int)
            for r in (0, 1, 2):
                s = rad >= r
                for dx, dy in ((0, 0), (r, 0), (-r, 0), (0, r), (0, -r)):
                    img[np.clip(p[s, 1] + dy, 0, h - 1), np.clip(p[s, 0] + dx, 0, w - 1)] = 245
            pos = (pos + vel) % (w, h)
            yield img.astype(np.uint8)
    elif source == "foliage":
        tex = _smooth_noise(rng, h + 40, w + 40, (2, 5, 12))
        leaf = np.stack([tex * 90, 60 + tex * 170, tex * 60], -1)
        hi = tex > 0.78
        leaf[hi] = (230, 250, 200)
        for k in range(n):
            dx = int(round(12 * np.sin(k / 6.0))) + 20
            dy = int(round(6 * np.sin(k / 9.0))) + 20
            yield np.clip(leaf[dy:dy + h, dx:dx + w] + rng.normal(0, 3, (h, w, 1)), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"source {source!r} is not procedural; one of {SOURCES[2:]}")


@functools.lru_cache(maxsize=1)
def _film(path: Path, h: int, w: int) -> tuple[np.ndarray, ...]:
    from PIL import Image

    from boundaries.ingest import decode_resampled

    out = []
    for fr in decode_resampled(path, FPS):
        im = Image.fromarray(fr)
        sh = round(im.height * w / im.width)
        a = np.asarray(im.resize((w, sh), Image.BILINEAR))
        top = max(0, (sh - h) // 2)
        out.append(a[top:top + h])
    return tuple(out)


def film_frames(path: Path, start_s: float, n: int, h: int = HEIGHT, w: int = WIDTH) -> Iterator[np.ndarray]:
    """Frames of the film at 10 fps from ``start_s``, scaled to width ``w`` and centre-cropped to ``h``
    (the decoded film is cached: the clips of one source are built one after another)."""
    frames = _film(path, h, w)
    skip = int(round(start_s * FPS))
    if skip + n > len(frames):
        raise ValueError(f"{path}: {len(frames)} frames at {FPS} fps, fewer than {skip + n}")
    yield from frames[skip:skip + n]


# ---------------------------------------------------------------- captions

def plan_cues(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Cue frame ranges ``[start, end)`` over ``n`` frames: gaps of 0 (back-to-back), 1-3 or 4-30
    frames, durations 8-40 frames."""
    cues, k = [], int(rng.integers(3, 25))
    while True:
        d = int(rng.integers(8, 41))
        if k + d > n - 2:
            return cues
        cues.append((k, k + d))
        u = rng.random()
        gap = 0 if u < 0.3 else int(rng.integers(1, 4)) if u < 0.45 else int(rng.integers(4, 31))
        k += d + gap


def cue_text(script: str, lines: int, rng: np.random.Generator) -> str:
    words = WORDS[script]
    out = []
    for _ in range(lines):
        m = int(rng.integers(3, 8)) if script != "cjk" else int(rng.integers(5, 14))
        sep = "" if script == "cjk" else " "
        out.append(sep.join(words[int(i)] for i in rng.integers(0, len(words), m)))
    return "\n".join(out)


def render_cue(text: str, style: Style, font_px: int, w: int = WIDTH,
               h: int = HEIGHT) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Premultiplied overlay: float32 (h, w, 4) RGBA in [0, 1] of one cue, and its box (l, t, r, b)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    font = ImageFont.truetype(FONTS[style.script], font_px)
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    stroke = max(1, font_px // 9) if style.decoration == "outline" else 0
    align = {"left": "left", "center": "center", "right": "right"}[style.align]
    direction = "rtl" if style.script == "arabic" else None
    kw = {"direction": direction} if direction else {}
    bb = d.multiline_textbbox((0, 0), text, font=font, align=align, stroke_width=stroke, spacing=4, **kw)
    tw, th = bb[2] - bb[0], bb[3] - bb[1]
    margin = int(0.05 * w)
    x = {"left": margin, "center": (w - tw) // 2, "right": w - margin - tw}[style.align]
    y = {"bottom": h - int(0.06 * h) - th, "top": int(0.06 * h), "mid": int(0.55 * h) - th // 2}[style.position]
    pad = max(3, font_px // 4)
    box = (x - pad, y - pad, x + tw + pad, y + th + pad)
    if style.box != "none":
        alpha = 255 if style.box == "opaque" else 150
        d.rectangle(box, fill=(16, 16, 16, alpha))
    ox, oy = x - bb[0], y - bb[1]
    if style.decoration == "shadow":
        sh = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        off = max(1, font_px // 10)
        ImageDraw.Draw(sh).multiline_text((ox + off, oy + off), text, font=font, fill=(0, 0, 0, 210),
                                          align=align, spacing=4, **kw)
        layer = Image.alpha_composite(layer, sh.filter(ImageFilter.GaussianBlur(0.8)))
        d = ImageDraw.Draw(layer)
    d.multiline_text((ox, oy), text, font=font, fill=COLOURS[style.colour] + (255,), align=align,
                     spacing=4, stroke_width=stroke, stroke_fill=(0, 0, 0, 255), **kw)
    a = np.asarray(layer).astype(np.float32) / 255.0
    a[..., :3] *= a[..., 3:]
    return a, (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))


def pair_labels(cue_of_frame: list[int]) -> list[str]:
    """SOURCES.md labels of pairs (k-1, k) for k >= 1 (``-1`` = no caption)."""
    out = []
    for a, b in zip(cue_of_frame[:-1], cue_of_frame[1:], strict=True):
        out.append("empty_empty" if a < 0 and b < 0 else "empty_valid" if a < 0 else "valid_empty" if b < 0
                   else "same" if a == b else "different")
    return out


def build_clip(clip: Clip, out_dir: Path, data_dir: Path) -> dict:
    """Write ``<name>.mp4`` (H.264, 10 fps, pts k/10 s) and ``<name>_labels.csv``; return its manifest row."""
    import av

    rng = np.random.default_rng(clip.seed)
    st = clip.style
    font_px = int(rng.integers(SIZE_PX[st.size][0], SIZE_PX[st.size][1] + 1))
    cues = plan_cues(clip.frames, rng)
    texts = [cue_text(st.script, st.lines, rng) for _ in cues]
    overlays = [render_cue(t, st, font_px) for t in texts]
    cue_of = [-1] * clip.frames
    for c, (a, b) in enumerate(cues):
        for k in range(a, b):
            cue_of[k] = c
    if clip.source in POPEYE_FILE:
        bg = film_frames(data_dir / POPEYE_FILE[clip.source], clip.start_s, clip.frames)
    else:
        bg = procedural_frames(clip.source, clip.frames, clip.seed)
    path = out_dir / f"{clip.name}.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        s.options = {"crf": "20", "preset": "veryfast"}
        for k, fr in enumerate(bg):
            img = fr.astype(np.float32) / 255.0
            if cue_of[k] >= 0:
                ov = overlays[cue_of[k]][0]
                img = ov[..., :3] + img * (1 - ov[..., 3:])
            vf = av.VideoFrame.from_ndarray((img * 255 + 0.5).astype(np.uint8), format="rgb24")
            vf.pts = k
            vf.time_base = Fraction(1, FPS)
            out.mux(s.encode(vf))
        out.mux(s.encode(None))
    labels = pair_labels(cue_of)
    with (out_dir / f"{clip.name}_labels.csv").open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["frame", "t_sec", "cue", "pair_label_prev_to_this", "text"])
        for k in range(clip.frames):
            wr.writerow([k, f"{k / FPS:.1f}", cue_of[k], "" if k == 0 else labels[k - 1],
                         texts[cue_of[k]].replace("\n", " / ") if cue_of[k] >= 0 else ""])
    # caption band: the union of the cue boxes' rows, widened by 20% of its height, full frame width
    tops = [o[1][1] for o in overlays] or [int(0.8 * HEIGHT)]
    bots = [o[1][3] for o in overlays] or [int(0.95 * HEIGHT)]
    t, b = min(tops), max(bots)
    m = max(2, (b - t) // 5)
    crop = [0.02, max(0, t - m) / HEIGHT, 0.98, min(HEIGHT, b + m) / HEIGHT]
    return {"name": clip.name, "group": clip.split, "source": clip.source, "split": clip.split,
            "background": BACKGROUND_KIND[clip.source], "path": path.name, "labels": f"{clip.name}_labels.csv",
            "crop": [round(v, 4) for v in crop], "anchor": st.align, "font_px": font_px,
            "cues": len(cues), "style": asdict(st)}


def write_manifest(rows: list[dict], out_dir: Path) -> Path:
    """``manifest.toml`` (eval/manifest.toml's format plus style fields) and ``manifest.json``."""
    lines = ["# caption style set built by scripts/build_style_set.py (see eval/style_set.py)", ""]
    for r in rows:
        lines.append("[[video]]")
        for k in ("name", "group", "source", "split", "background", "path", "labels", "anchor"):
            lines.append(f'{k} = "{r[k]}"')
        lines.append(f"crop = {json.dumps(r['crop'])}")
        lines.append(f"font_px = {r['font_px']}")
        lines.append("style = {" + ", ".join(f'{k} = {json.dumps(v)}' for k, v in r["style"].items()) + "}")
        lines.append("")
    p = out_dir / "manifest.toml"
    p.write_text("\n".join(lines))
    (out_dir / "manifest.json").write_text(json.dumps(rows, indent=1))
    return p
