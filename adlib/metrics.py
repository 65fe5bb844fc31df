"""Threshold-free and thresholded metrics for anomaly scores (sklearn underneath).

Convention everywhere: ``y_true`` is 1 for an anomaly, and a higher score means more anomalous.

F1 depends on which class is "positive". Ours (``positive="anomaly"``) counts a flagged anomaly
as a true positive. The one-class lineage of ALOCC (Sabokrou et al. 2018, "following DRAE"),
GPND (Pidhorskyi et al. 2018, its ``evaluation.py``: predicted inlier and truly inlier is a true
positive) and G2D counts the **normal** class as positive (``positive="normal"``); there a
detector that calls every image normal scores ``2 (1 - r) / (2 - r)`` at an outlier share
``r``: 0.947 at 10 % down to 0.667 at 50 %. Every F1 the book shows names its positive class.
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

__all__ = ["auroc", "pixel_auroc", "average_precision", "f1_at_threshold", "best_f1",
           "POSITIVE_CLASSES", "equal_error_rate",
           "roc_curve", "evaluate"]


def _check(y_true, scores):
    y_true = np.asarray(y_true).astype(int).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if y_true.shape != scores.shape:
        raise ValueError(f"{len(y_true)} labels but {len(scores)} scores")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    if set(np.unique(y_true)) - {0, 1}:
        raise ValueError("labels must be 0 (normal) or 1 (anomaly)")
    if len(np.unique(y_true)) < 2:
        raise ValueError("AUROC/EER need both normal (0) and anomalous (1) examples")
    return y_true, scores


def auroc(y_true, scores) -> float:
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score``), in [0, 1]."""
    return float(skm.roc_auc_score(*_check(y_true, scores)))


def pixel_auroc(masks, maps) -> float:
    """Pixel-level AUROC: every pixel of every image is a sample, an anomaly where its mask is
    non-zero, scored by the anomaly map (MVTec AD's pixel AUROC).

    Args:
        masks: ``N x H x W`` (or ``N x 1 x H x W``) masks, bool, 0/1 or 0/255.
        maps: ``N x H x W`` (or ``N x 1 x H x W``) anomaly maps, higher is more anomalous.

    Raises:
        ValueError: the shapes differ, or no pixel (or every pixel) is anomalous.
    """
    masks, maps = np.asarray(masks), np.asarray(maps)
    if masks.shape != maps.shape:
        raise ValueError(f"masks of shape {masks.shape} but maps of shape {maps.shape}: resize "
                         "the masks to the maps' size (nearest) first")
    return auroc(masks.ravel() > 0, maps.ravel())


def average_precision(y_true, scores) -> float:
    """Average precision with anomalies as the positive class (area under precision-recall)."""
    return float(skm.average_precision_score(*_check(y_true, scores)))


#: the classes F1 can count as positive (see the module docstring)
POSITIVE_CLASSES = ("anomaly", "normal")


def _check_positive(positive: str) -> None:
    if positive not in POSITIVE_CLASSES:
        raise ValueError(f"positive={positive!r}: use 'anomaly' (our F1) or 'normal' (the "
                         "ALOCC / GPND / G2D lineage's F1)")


def _positive_labels(y_true, positive: str) -> np.ndarray:
    """1 for the samples of the ``positive`` class."""
    _check_positive(positive)
    y = np.asarray(y_true).astype(int).ravel()
    return y if positive == "anomaly" else 1 - y


def f1_at_threshold(y_true, scores, threshold: float, positive: str = "anomaly") -> float:
    """F1 when ``score >= threshold`` is called anomalous (and ``score < threshold`` normal).

    Args:
        y_true: ``N`` labels, 1 = anomaly.
        scores: ``N`` anomaly scores.
        threshold: the cut on the scores.
        positive: the class F1 counts as positive: ``"anomaly"`` (default) or ``"normal"``
            (the one-class lineage's F1; see the module docstring).

    Returns 0 when no sample is predicted (or is) positive.
    """
    y = _positive_labels(y_true, positive)
    flagged = (np.asarray(scores).ravel() >= threshold).astype(int)
    predicted = flagged if positive == "anomaly" else 1 - flagged
    if y.shape != predicted.shape:
        raise ValueError(f"{len(y)} labels but {len(predicted)} scores")
    return float(skm.f1_score(y, predicted, zero_division=0))


def best_f1(y_true, scores, positive: str = "anomaly") -> float:
    """The highest F1 over every threshold (an oracle: it reads the test labels to pick the
    cut, so it bounds what a calibrated threshold can reach; never a model-selection rule).

    Thresholds run over every distinct score, plus "call everything normal" and "call
    everything anomalous"; ``positive`` as in :func:`f1_at_threshold`.
    """
    _check_positive(positive)
    y_true, scores = _check(y_true, scores)
    cuts = np.r_[np.unique(scores), np.inf]
    order = np.argsort(scores)
    s, y = scores[order], y_true[order]
    # flagged at cut t: the samples with score >= t, a suffix of the sorted scores
    start = np.searchsorted(s, cuts, side="left")
    n, n_anom = len(y), int(y.sum())
    anom_flagged = n_anom - np.r_[0, np.cumsum(y)][start]
    flagged = n - start
    if positive == "anomaly":
        tp, pred, pos = anom_flagged, flagged, n_anom
    else:
        tp, pred, pos = start - (n_anom - anom_flagged), start, n - n_anom
    f1 = np.where(pred + pos > 0, 2 * tp / np.maximum(pred + pos, 1), 0.0)
    return float(f1.max())


def roc_curve(y_true, scores):
    """False and true positive rates and thresholds (``sklearn.metrics.roc_curve``)."""
    return skm.roc_curve(*_check(y_true, scores))


def equal_error_rate(y_true, scores) -> float:
    """The rate where false positives equal false negatives (FPR = 1 - TPR) on the ROC curve.

    Interpolated linearly between the two ROC points that bracket the crossing.
    """
    fpr, tpr, _ = roc_curve(y_true, scores)
    fnr = 1 - tpr
    diff = fpr - fnr  # increasing from -1 to 1 along the curve
    i = int(np.searchsorted(diff, 0.0))
    if i == 0:
        return float(fpr[0])
    d0, d1 = diff[i - 1], diff[i]
    t = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def evaluate(y_true, scores) -> dict:
    """The book's standard threshold-free metrics: AUROC, average precision and EER."""
    return {"auroc": auroc(y_true, scores), "ap": average_precision(y_true, scores),
            "eer": equal_error_rate(y_true, scores)}
