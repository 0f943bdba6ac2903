"""boundaries.eval_report: event outcomes, the timeline picture and the pictures around misses / false alarms."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from boundaries.eval_report import COLOURS, MARK, event_outcomes, timeline_image, write_report

TRUTH = ["empty_empty"] * 5 + ["empty_valid"] + ["same"] * 10 + ["valid_empty"] + ["empty_empty"] * 10 + \
    ["empty_valid"] + ["same"] * 3
PRED = list(TRUTH)
PRED[6] = "empty_valid"  # true event at 5 -> predicted at 6: a hit within ±1
PRED[5] = "empty_empty"
PRED[16] = "same"  # caption end missed
PRED[22] = "different"  # false alarm


def test_outcomes_match_within_one_frame():
    o = event_outcomes(PRED, TRUTH)
    assert o == {"hit": [5, 27], "miss": [16], "false_alarm": [22]}


def test_report_writes_timeline_and_one_picture_per_error(tmp_path):
    band = np.zeros((12, 40, 3), np.uint8)
    asked = []

    def frames(i):
        asked.append(i)
        return band + i

    paths = write_report(tmp_path / "rep", PRED, TRUTH, frames, title="t")
    assert [p.name for p in paths] == ["timeline.png", "miss_000016.png", "false_alarm_000022.png"]
    miss = Image.open(paths[1])
    assert miss.width == 40 and miss.height > 6 * 12  # frames 14..19 stacked with captions
    assert sorted(set(asked)) == list(range(14, 20)) + list(range(20, 26))
    timeline = np.asarray(Image.open(paths[0]).convert("RGB"))
    for kind in ("miss", "false_alarm", "hit"):
        assert (timeline == MARK[kind]).all(axis=2).any(), kind


def test_timeline_without_labels_draws_only_predictions():
    im = timeline_image(PRED, None)
    assert not (np.asarray(im) == MARK["miss"]).all(axis=2).any()


def test_bad_label_is_named(tmp_path):
    with pytest.raises(ValueError, match="'blank'"):
        write_report(tmp_path, ["same", "blank"], None)
    with pytest.raises(ValueError, match="truth has 1 pairs but pred has 2"):
        timeline_image(["same", "same"], ["same"])


def test_run_timeline_from_a_results_database(tmp_path):
    from boundaries.eval_report import write_run_timeline
    from boundaries.labels import LABELS
    from boundaries.results_db import RunMetadata, build_results_db

    fwd = np.zeros((len(PRED), 5), np.float32)
    fwd[np.arange(len(PRED)), [LABELS.index(x) for x in PRED]] = 1.0
    meta = RunMetadata("r1", 1, "classical-v3", None, "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", len(PRED), 1.0)
    db = build_results_db(meta, np.arange(len(PRED), dtype=np.int64), fwd, fwd, np.zeros(len(PRED)))

    png = write_run_timeline(db, tmp_path / "run")
    im = np.asarray(Image.open(png).convert("RGB"))[36:]  # below the title and legend
    assert png.name == "timeline.png"
    assert (im == COLOURS["different"]).all(axis=2).any()  # the predicted "different" at pair 22
    assert not (im == MARK["miss"]).all(axis=2).any()  # no labels: no hit/miss strip
