"""The caption style set's builder (boundaries.style_set): exact labels from cue timing, split by source."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from boundaries.style_set import FONTS, SPLIT, Clip, Style, build_clip, pair_labels, plan_clips, plan_cues


def test_pair_labels_follow_the_cue_of_each_frame():
    cue_of = [-1, 0, 0, 1, 1, -1, -1, 2]
    assert pair_labels(cue_of) == ["empty_valid", "same", "different", "same", "valid_empty", "empty_empty",
                                   "empty_valid"]


def test_cues_fit_the_clip_and_do_not_overlap():
    rng = np.random.default_rng(3)
    for _ in range(20):
        cues = plan_cues(200, rng)
        assert cues and all(8 <= b - a <= 40 for a, b in cues)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(cues, cues[1:], strict=False))
        assert cues[-1][1] <= 198


def test_no_source_is_in_both_splits_and_styles_are_seeded():
    clips = plan_clips()
    assert not set(SPLIT["tune"]) & set(SPLIT["test"])
    assert {c.split for c in clips if c.source in SPLIT["tune"]} == {"tune"}
    assert {c.split for c in clips if c.source in SPLIT["test"]} == {"test"}
    assert plan_clips() == clips and plan_clips(seed=16) != clips


@pytest.mark.skipif(not Path(FONTS["latin"]).exists(), reason="needs fonts-dejavu-core")
def test_a_tiny_clip_has_one_label_row_per_decoded_frame(tmp_path):
    from boundaries.ingest import decode_resampled

    style = Style("yellow", "outline", "none", "medium", 1, "bottom", "center", "latin")
    clip = Clip("tiny", "snow", "tune", style, seed=5, frames=40, start_s=0.0)
    row = build_clip(clip, tmp_path, tmp_path)
    frames = list(decode_resampled(tmp_path / row["path"]))
    with (tmp_path / row["labels"]).open() as f:
        rows = list(csv.DictReader(f))
    assert len(frames) == len(rows) == 40
    cue_of = [int(r["cue"]) for r in rows]
    assert [r["pair_label_prev_to_this"] for r in rows[1:]] == pair_labels(cue_of)
    assert row["cues"] == len({c for c in cue_of if c >= 0}) >= 1
    # the caption is burned where the labels say: the crop band differs between a captioned and an empty frame
    top, bottom = (round(v * frames[0].shape[0]) for v in row["crop"][1::2])
    on = next(k for k, c in enumerate(cue_of) if c >= 0) + 1
    band = [f[top:bottom].astype(int) for f in frames]
    assert np.abs(band[on] - band[0]).mean() > np.abs(band[1] - band[0]).mean() + 5
