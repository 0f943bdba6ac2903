"""``boundaries eval``: run the production inference path on a video and score it against labels.

Path: ingest (decode at 10 fps with ffmpeg's fps filter, crop, VP9 chunks + layout.db) into a temporary
local store → the shard function (modal_gpu.shard.run_shard: chunk reads, 256-frame windows, the
predictor) over every planned shard → the shard outputs → forward labels → boundaries.evaluation.score.
"""

from __future__ import annotations

import csv
import tempfile
import uuid
from pathlib import Path

import numpy as np

from boundaries.evaluation import score
from boundaries.frames.keys import shard_output_key
from boundaries.ingest import ingest_video
from boundaries.labels import LABELS
from boundaries.shards import ShardRequest, decode_output, plan_shards, shard_id
from boundaries.storage.local import LocalStore
from config.settings import Settings


def load_pair_labels(csv_path: Path, video: Path | None = None, video_key: str | None = None) -> list[str]:
    """Pair labels from a CSV with columns ``frame,pair_label_prev_to_this`` (and optionally ``video``).

    Element k is the label of pair (k, k+1), read from the row of frame k+1. For a multi-video CSV the
    rows whose ``video`` is ``video_key`` are used, else those whose ``video`` is a path suffix of ``video``.

    Raises:
        ValueError: no rows for the video, or frames that are not 0..N-1.
    """
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "video" in rows[0]:
        if video_key is None and video is not None:
            names = {r["video"] for r in rows}
            matches = [n for n in names if Path(video).as_posix().endswith(n)]
            video_key = max(matches, key=len) if matches else None
        rows = [r for r in rows if r["video"] == video_key]
    if not rows:
        raise ValueError(f"labels {csv_path}: no rows for video {video_key or video}; pass --labels-video")
    rows.sort(key=lambda r: int(r["frame"]))
    frames = [int(r["frame"]) for r in rows]
    if frames != list(range(len(frames))):
        raise ValueError(f"labels {csv_path}: frames must be 0..{len(frames) - 1} without gaps")
    return [r["pair_label_prev_to_this"] for r in rows[1:]]


def predict_video(video: Path, crop, anchor: str, *, checkpoint: str | None = None, shard_pairs: int = 1000,
                  batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, str]:
    """(forward, backward) ``float32 (P, 5)`` and the model_version, through ingest + shard function."""
    from modal_gpu.predictor import load_predictor
    from modal_gpu.shard import run_shard

    predictor = load_predictor(checkpoint, batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="boundaries-eval-") as tmp:
        store = LocalStore(tmp)
        settings = Settings(local_store_dir=Path(tmp))
        tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
        res = ingest_video(video, crop, anchor, store, settings, tenant, vid, 1)
        fwd, bwd = [], []
        for a, b in plan_shards(res.total_frames, shard_pairs):
            key = shard_output_key(settings.shard_output_key_template, tenant, vid, 1, predictor.model_version, a, b)
            req = ShardRequest(shard_id=shard_id(a, b), tenant_id=tenant, video_id=vid, cropped_frames_version=1,
                               model_version=predictor.model_version, first_pair=a, end_pair=b,
                               frames_prefix=res.frames_prefix, layout_db_key=res.layout_db_key, output_key=key,
                               store=store.describe(), checkpoint_path=checkpoint, batch_size=batch_size)
            run_shard(req, predictor)
            out = decode_output(store.get_bytes(key), a, b, predictor.model_version)
            fwd.append(out["forward"])
            bwd.append(out["backward"])
    return np.concatenate(fwd), np.concatenate(bwd), predictor.model_version


def band_frames(video: Path, crop, indices: set[int]) -> dict[int, np.ndarray]:
    """Caption-band crops (uint8 (h, w, 3) RGB) of the 10-fps frames ``indices`` of ``video``, decoded
    and cropped as :func:`boundaries.ingest.ingest_video` does (fps filter, pixel crop)."""
    from boundaries.ingest import crop_pixels, decode_resampled

    out: dict[int, np.ndarray] = {}
    if not indices:
        return out
    last = max(indices)
    for k, frame in enumerate(decode_resampled(video)):
        if k in indices:
            left, top, right, bottom = crop_pixels(crop, frame.shape[1], frame.shape[0])
            out[k] = frame[top:bottom, left:right].copy()
        if k >= last:
            break
    return out


def write_eval_report(report_dir: Path, video: Path, crop, pred: list[str], truth: list[str] | None,
                      title: str) -> list[Path]:
    """``timeline.png`` + one picture per miss / false alarm (:func:`boundaries.eval_report.write_report`)."""
    from boundaries.eval_report import CONTEXT, event_outcomes, write_report

    need: set[int] = set()
    if truth is not None:
        o = event_outcomes(pred, truth)
        for k in o["miss"] + o["false_alarm"]:
            need.update(range(k + CONTEXT[0], k + CONTEXT[1]))
    frames = band_frames(video, crop, {i for i in need if i >= 0})
    return write_report(report_dir, pred, truth, frames.get, title=title)


def evaluate(video: Path, labels_csv: Path, crop, anchor: str, *, checkpoint: str | None = None,
             labels_video: str | None = None, report_dir: Path | None = None) -> dict:
    """Score dict of :func:`boundaries.evaluation.score` plus ``model_version`` and ``video`` (and
    ``report``: the PNG paths written under ``report_dir`` when it is given).

    Raises:
        ValueError: the label count differs from the video's pair count.
    """
    truth = load_pair_labels(labels_csv, video, labels_video)
    fwd, _bwd, model_version = predict_video(video, crop, anchor, checkpoint=checkpoint)
    pred = [LABELS[i] for i in fwd.argmax(1)]
    if len(pred) != len(truth):
        raise ValueError(f"{video}: {len(pred)} pairs predicted but {labels_csv} labels {len(truth)} pairs")
    result = score(pred, truth)
    result["model_version"] = model_version
    result["video"] = str(video)
    if report_dir is not None:
        title = (f"{video.name} ({model_version}): event F1 ±1 {result['event_f1_tol1']:.3f}, "
                 f"macro-F1 {result['macro_f1']:.3f}")
        result["report"] = [str(p) for p in write_eval_report(report_dir, video, crop, pred, truth, title)]
    return result
