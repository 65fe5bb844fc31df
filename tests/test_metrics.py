"""Metrics on hand-checked cases (labels 1 = anomaly, higher score = more anomalous)."""
from __future__ import annotations

import numpy as np
import pytest

from adlib.metrics import (auroc, average_precision, equal_error_rate, evaluate, pixel_auroc,
                           f1_at_threshold, roc_curve, best_f1)


def test_auroc_perfect_inverted_tied():
    y = [0, 0, 1, 1]
    assert auroc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert auroc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_auroc_hand_case():
    # pairs (anomaly, normal): (0.35, 0.1) yes, (0.35, 0.4) no, (0.8, .) yes twice -> 3/4
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auroc_counts_ties_as_half():
    # anomaly 0.5 vs normals 0.5 (tie: 1/2) and 0.1 (win): (0.5 + 1) / 2
    assert auroc([0, 0, 1], [0.5, 0.1, 0.5]) == pytest.approx(0.75)


def test_auroc_accepts_column_vectors_and_tensors():
    import torch
    y = np.array([[0], [1], [0], [1]])
    s = torch.tensor([[0.1], [0.9], [0.2], [0.3]])
    assert auroc(y, s.numpy()) == 1.0


def test_average_precision_hand_case():
    # ranking by score: 0.8 (anomaly), 0.4 (normal), 0.35 (anomaly), 0.1 (normal)
    # AP = sum over anomalies of precision at their rank / #anomalies = (1/1 + 2/3) / 2
    ap = average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert ap == pytest.approx((1 + 2 / 3) / 2)


def test_average_precision_perfect():
    assert average_precision([1, 0, 1, 0, 0], [0.9, 0.1, 0.8, 0.2, 0.3]) == pytest.approx(1.0)


def test_f1_at_threshold():
    y = [0, 0, 1, 1, 1]
    s = [0.1, 0.6, 0.4, 0.7, 0.9]
    # threshold 0.5: predicted anomalies {0.6, 0.7, 0.9}: tp 2, fp 1, fn 1 -> F1 = 2/3
    assert f1_at_threshold(y, s, 0.5) == pytest.approx(2 / 3)
    # score >= threshold is anomalous: at 0.4 we also catch the third anomaly: tp 3, fp 1
    assert f1_at_threshold(y, s, 0.4) == pytest.approx(2 * 3 / (2 * 3 + 1))
    # nothing called anomalous: F1 = 0 without a warning-turned-error
    assert f1_at_threshold(y, s, 2.0) == 0.0


def test_f1_normal_positive_hand_checked():
    y = [0, 0, 1, 1, 1]
    s = [0.1, 0.6, 0.4, 0.7, 0.9]
    # threshold 0.5, normal positive: predicted normal {0.1, 0.4}: tp 1 (0.1), fp 1 (0.4),
    # fn 1 (0.6) -> F1 = 2 / (2 + 1 + 1) = 1/2
    assert f1_at_threshold(y, s, 0.5, positive="normal") == pytest.approx(0.5)
    # every image called normal: precision 2/5, recall 1 -> F1 = 2 * 2 / (2 * 2 + 3) = 4/7
    assert f1_at_threshold(y, s, 2.0, positive="normal") == pytest.approx(4 / 7)


@pytest.mark.parametrize("share", [0.1, 0.2, 0.3, 0.4, 0.5])
def test_f1_normal_positive_of_calling_everything_normal(share):
    # the lineage's F1 of a detector that flags nothing: 2 (1 - r) / (2 - r), 0.947 .. 0.667
    n_anom = int(round(100 * share))
    y = np.r_[np.zeros(100 - n_anom), np.ones(n_anom)]
    got = f1_at_threshold(y, np.zeros(100), 1.0, positive="normal")
    assert got == pytest.approx(2 * (1 - share) / (2 - share))
    assert f1_at_threshold(y, np.zeros(100), 1.0) == 0.0  # our F1: no anomaly found


def test_f1_unknown_positive_class_is_refused():
    with pytest.raises(ValueError, match="positive="):
        f1_at_threshold([0, 1], [0.1, 0.9], 0.5, positive="inlier")
    with pytest.raises(ValueError, match="positive="):
        best_f1([0, 1], [0.1, 0.9], positive="outlier")


def test_best_f1_hand_checked_and_against_every_threshold():
    y, s = [0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.7, 0.9]
    # anomaly positive: cut at 0.4 flags {0.4, 0.6, 0.7, 0.9}: tp 3, fp 1 -> 6/7
    assert best_f1(y, s) == pytest.approx(6 / 7)
    # normal positive: cut at 0.4 calls {0.1} normal: 2/3; at 0.7 {0.1, 0.4, 0.6}: 2*2/(3+2) = 4/5
    assert best_f1(y, s, positive="normal") == pytest.approx(4 / 5)
    rng = np.random.default_rng(0)
    for _ in range(50):  # ties included: scores on a coarse grid
        yy = np.r_[0, 1, rng.integers(0, 2, 20)]
        ss = rng.integers(0, 5, len(yy)).astype(float)
        for positive in ("anomaly", "normal"):
            brute = max(f1_at_threshold(yy, ss, c, positive)
                        for c in [*np.unique(ss), np.inf])
            assert best_f1(yy, ss, positive) == pytest.approx(brute)


def test_equal_error_rate_perfect_separation():
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.0)


def test_equal_error_rate_hand_case_half():
    # ROC points: (0,0) (0,.5) (.5,.5) (.5,1) (1,1); FPR = FNR = 0.5 at (.5, .5)
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5)


def test_equal_error_rate_hand_case_third():
    # normals 0.1 0.2 0.7, anomalies 0.6 0.8 0.9: at threshold 0.7 one normal passes
    # (FPR 1/3) and one anomaly (0.6) is missed (FNR 1/3)
    y = [0, 0, 0, 1, 1, 1]
    s = [0.1, 0.2, 0.7, 0.6, 0.8, 0.9]
    assert equal_error_rate(y, s) == pytest.approx(1 / 3)


def test_equal_error_rate_interpolates():
    # two points only, (0,0) and (1,1) (all scores tied): the crossing is at FPR = 0.5
    assert equal_error_rate([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)
    # inverted scores: every point has FPR = 1 before TPR > 0: EER = 1
    assert equal_error_rate([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == pytest.approx(1.0)


def test_roc_curve_and_evaluate():
    fpr, tpr, thr = roc_curve([0, 1], [0.2, 0.7])
    assert fpr[0] == 0 and tpr[-1] == 1 and len(thr) == len(fpr)
    out = evaluate([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert set(out) == {"auroc", "ap", "eer"}
    assert out["auroc"] == pytest.approx(0.75) and out["eer"] == pytest.approx(0.5)


@pytest.mark.parametrize("fn", [auroc, average_precision, equal_error_rate])
def test_single_class_labels_raise(fn):
    with pytest.raises(ValueError, match="both"):
        fn([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="both"):
        fn([1, 1], [0.1, 0.2])


@pytest.mark.parametrize("fn", [auroc, average_precision, equal_error_rate])
def test_length_mismatch_raises(fn):
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        fn([0, 1, 0], [0.1, 0.2])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("fn", [auroc, average_precision, equal_error_rate])
def test_non_finite_scores_raise(fn, bad):
    with pytest.raises(ValueError, match="NaN or inf"):
        fn([0, 1, 0, 1], [0.1, bad, 0.2, 0.3])


def test_labels_other_than_0_1_raise():
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1"):
        auroc([0, 1, 2], [0.1, 0.2, 0.3])


def test_pixel_auroc_hand_case():
    masks = np.array([[[255, 0], [0, 0]], [[0, 0], [0, 255]]], np.uint8)  # 2 of 8 pixels
    maps = np.array([[[0.9, 0.1], [0.2, 0.3]], [[0.4, 0.0], [0.5, 0.35]]])
    # anomalous pixels 0.9 and 0.35 against 0.1 0.2 0.3 0.4 0.0 0.5: (6 + 4) / 12 pairs
    assert pixel_auroc(masks, maps) == pytest.approx(10 / 12)
    assert pixel_auroc(masks[:, None] > 0, maps[:, None]) == pytest.approx(10 / 12)
    with pytest.raises(ValueError, match="resize the masks"):
        pixel_auroc(masks, maps[:, :1])
    with pytest.raises(ValueError, match="both normal"):
        pixel_auroc(np.zeros_like(masks), maps)
