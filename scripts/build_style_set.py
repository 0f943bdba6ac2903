"""Build the caption style set (issue 15): see :mod:`boundaries.style_set` for sources, styles, split.

Usage::

    .venv/bin/python scripts/build_style_set.py [--out /tmp/boundaries-style-set] [--data ../shared/data/real]
                                                [--clips-per-source 4] [--seconds 20] [--seed 15]

Writes ``<clip>.mp4`` + ``<clip>_labels.csv`` per clip and ``manifest.toml`` / ``manifest.json``
(read by scripts/eval_styles.py). Needs fonts-dejavu-core and fonts-wqy-microhei (Debian).
Deterministic for a given seed (same styles, cues and procedural pixels; the film decode is exact).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from boundaries.style_set import FONTS, build_clip, plan_clips, write_manifest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "boundaries-style-set")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "real")
    ap.add_argument("--clips-per-source", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--seed", type=int, default=15)
    args = ap.parse_args(argv)
    missing = sorted({f for f in FONTS.values() if not Path(f).exists()})
    if missing:
        print(f"missing fonts {missing}: apt-get install fonts-dejavu-core fonts-wqy-microhei", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for clip in plan_clips(args.clips_per_source, args.seconds, args.seed):
        t0 = time.perf_counter()
        rows.append(build_clip(clip, args.out, args.data))
        print(f"{clip.name:>16} {clip.split:>4} {rows[-1]['cues']:>2} cues  {clip.style}  "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
    print(f"manifest: {write_manifest(rows, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
