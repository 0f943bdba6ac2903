"""boundaries.evaluation on small hand-made cases; every expected number is derivable by hand."""

from __future__ import annotations

import json

import pytest

from boundaries.evaluation import format_report, match_events, score

S, D, EE, EV, VE = "same", "different", "empty_empty", "empty_valid", "valid_empty"


def test_perfect_prediction():
    truth = [EE, EV, S, D, S, VE]
    r = score(truth, truth)
    assert r["pairs"] == 6
    assert r["macro_f1"] == 1.0
    assert r["event_f1_tol0"] == r["event_f1_tol1"] == r["event_f1_tol2"] == 1.0
    assert r["events"]["0"]["mean_abs_offset"] == 0.0
    assert r["confusion"][0] == [2, 0, 0, 0, 0]  # two 'same' rows, both predicted 'same'


def test_confusion_and_per_class_f1():
    # truth: S S D EE ; pred: S D D S
    r = score([S, D, D, S], [S, S, D, EE])
    # same: tp=1, true=2, pred=2 -> P=R=0.5 -> F1 0.5 ; different: tp=1, true=1, pred=2 -> P=.5 R=1 -> 2/3
    # empty_empty: tp 0, true 1 -> F1 0 ; empty_valid/valid_empty absent everywhere -> None
    assert r["confusion"] == [[1, 1, 0, 0, 0], [0, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0] * 5, [0] * 5]
    assert r["per_class_f1"] == {"same": 0.5, "different": pytest.approx(2 / 3), "empty_empty": 0.0,
                                 "empty_valid": None, "valid_empty": None}
    assert r["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)


def test_event_tolerance_and_offset():
    # true events at 2 (EV) and 6 (VE); predicted events at 3 (EV) and 6 (D)
    truth = [EE, EE, EV, S, S, S, VE, EE]
    pred = [EE, EE, EE, EV, S, S, D, EE]
    r = score(pred, truth)
    assert r["events"]["0"]["matched"] == 1 and r["event_f1_tol0"] == 0.5  # only 6<->6 (type-agnostic)
    assert r["events"]["1"]["matched"] == 2 and r["event_f1_tol1"] == 1.0
    assert r["events"]["1"]["mean_abs_offset"] == 0.5  # offsets 0 and 1
    assert r["event_f1_tol2"] == 1.0


def test_greedy_matching_is_one_to_one_closest_first():
    # true 5; predicted 4 and 5: only one match, the exact one
    assert match_events([4, 5], [5], tol=1) == [(5, 5)]
    # true 4 and 6, predicted 5: equal distance, lower true index wins
    assert match_events([5], [4, 6], tol=1) == [(4, 5)]


def test_event_precision_recall_with_extra_predictions():
    truth = [S, S, D, S, S]
    pred = [D, S, D, S, D]  # 3 predicted events, 1 true -> P=1/3, R=1 -> F1 = 0.5
    e = score(pred, truth)["events"]["2"]
    assert (e["precision"], e["recall"], e["f1"]) == (pytest.approx(1 / 3), 1.0, pytest.approx(0.5))


def test_no_events_anywhere_is_perfect_and_missing_all_is_zero():
    assert score([S, S], [S, S])["event_f1_tol0"] == 1.0
    assert score([S, S], [S, D])["event_f1_tol2"] == 0.0


def test_errors_name_the_field_and_value():
    with pytest.raises(ValueError, match="pred_labels has 1 pairs but true_labels has 2"):
        score([S], [S, S])
    with pytest.raises(ValueError, match=r"true_labels\[1\] = 'bogus'"):
        score([S, S], [S, "bogus"])


def test_result_is_json_able_and_report_mentions_figures():
    r = score([S, D, EE], [S, S, EE])
    json.dumps(r)
    text = format_report(r)
    assert "macro-F1" in text and "events ±1" in text and f"{r['macro_f1']:.3f}" in text
