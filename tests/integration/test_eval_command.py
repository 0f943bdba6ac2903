"""``boundaries eval`` on a real labelled clip, through the production inference path."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from worker.evaluate import load_pair_labels


def test_eval_json_scores_every_pair_of_the_clip(real_data):
    video = real_data / "rapidvideocr" / "2.mp4"
    labels = real_data / "derived" / "manual_10fps" / "pair_labels.csv"

    out = subprocess.run([sys.executable, "-m", "boundaries_cli.main", "eval", "--video", str(video),
                          "--labels", str(labels),
                          "--crop", "0.1,0.8,0.9,1.0", "--json"], capture_output=True, text=True, check=True)

    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("macro_f1", "event_f1_tol0", "event_f1_tol1", "event_f1_tol2", "per_class_f1", "confusion", "pairs"):
        assert key in result, key
    assert result["pairs"] == 29  # 30 frames at 10 fps (SOURCES.md)
    assert sum(map(sum, result["confusion"])) == 29
    assert 0.0 <= result["macro_f1"] <= 1.0


def test_labels_are_selected_by_video_path_suffix_and_shifted_to_pairs(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("video,frame,segment,pair_label_prev_to_this\n"
                        "a/x.mp4,0,0,\na/x.mp4,1,0,empty_valid\na/x.mp4,2,0,same\n"
                        "b/x.mp4,0,0,\nb/x.mp4,1,0,empty_empty\n")

    assert load_pair_labels(csv_path, Path("/data/a/x.mp4")) == ["empty_valid", "same"]
    assert load_pair_labels(csv_path, Path("/data/b/x.mp4")) == ["empty_empty"]
    with pytest.raises(ValueError, match="no rows"):
        load_pair_labels(csv_path, Path("/data/c/x.mp4"))


def test_labels_with_a_gap_in_frames_are_refused(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("frame,pair_label_prev_to_this\n0,\n1,same\n3,same\n")

    with pytest.raises(ValueError, match="without gaps"):
        load_pair_labels(csv_path)
