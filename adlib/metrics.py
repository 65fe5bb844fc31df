"""Threshold-free and thresholded metrics for anomaly scores (sklearn underneath).

Convention everywhere: ``y_true`` is 1 for an anomaly, and a higher score means more anomalous.
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

__all__ = ["auroc", "pixel_auroc", "average_precision", "f1_at_threshold", "equal_error_rate",
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


def f1_at_threshold(y_true, scores, threshold: float) -> float:
    """F1 of the anomaly class when ``score >= threshold`` is called anomalous."""
    y_true, scores = np.asarray(y_true).astype(int).ravel(), np.asarray(scores).ravel()
    return float(skm.f1_score(y_true, (scores >= threshold).astype(int), zero_division=0))


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
