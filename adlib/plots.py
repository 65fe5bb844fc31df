"""Figures the chapters share: score histograms, ROC curves, image grids, training curves,
the leaderboard's rank plot; and :func:`table`, how the chapters show a table with gaps.

Every drawing function draws on a given matplotlib ``Axes`` (or makes one), titles it and
labels its axes, and returns the ``Axes``.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .metrics import auroc, roc_curve

__all__ = ["score_histogram", "roc_curves", "image_grid", "training_curves", "scores_over_time",
           "mask_overlay", "rank_plot", "table"]


def _axes(ax):
    return ax if ax is not None else plt.subplots(figsize=(5, 3.5))[1]


def score_histogram(scores, y_true, title: str, ax=None, xlabel: str = "anomaly score",
                    labels=("normal", "anomalous"), bins: int = 50, log: bool = False):
    """Overlaid density histograms of the scores of normal (0) and anomalous (1) images."""
    ax = _axes(ax)
    scores, y_true = np.asarray(scores), np.asarray(y_true)
    edges = np.histogram_bin_edges(scores, bins=bins)
    for value, name, color in zip((0, 1), labels, ("tab:blue", "tab:red")):
        if (y_true == value).any():
            sns.histplot(scores[y_true == value], bins=edges, stat="density", alpha=0.5,
                         color=color, label=f"{name} (n={int((y_true == value).sum())})", ax=ax)
    ax.set(title=title, xlabel=xlabel, ylabel="density")
    if log:
        ax.set_yscale("log")
    ax.legend()
    return ax


def roc_curves(curves: dict, title: str, ax=None):
    """ROC curves of several detectors: ``curves = {name: (y_true, scores)}``; AUROC in legend."""
    ax = _axes(ax)
    for name, (y_true, scores) in curves.items():
        fpr, tpr, _ = roc_curve(y_true, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {100 * auroc(y_true, scores):.1f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="chance")
    ax.set(title=title, xlabel="false positive rate", ylabel="true positive rate",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize="small")
    return ax


def image_grid(images, title: str, ax=None, nrow: int = 8, captions=None):
    """Show ``N x C x H x W`` images (values in [0, 1] or [-1, 1]) as one grid."""
    import torch
    from torchvision.utils import make_grid

    ax = ax if ax is not None else plt.subplots(figsize=(nrow, 1.2 * np.ceil(len(images) / nrow)))[1]
    x = torch.as_tensor(images).float()
    if x.min() < 0:
        x = (x + 1) / 2
    grid = make_grid(x.clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray" if x.shape[1] == 1 else None)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if captions is not None:
        side = x.shape[-1] + 2
        for i, text in enumerate(captions):
            ax.text((i % nrow) * side + side / 2, (i // nrow + 1) * side, text, ha="center",
                    va="top", fontsize=7)
    return ax


def training_curves(history: list[dict], title: str, keys=None, ax=None):
    """Per-epoch values of a detector's ``history_`` (loss and validation metric)."""
    ax = _axes(ax)
    keys = keys or [k for k in history[0] if k != "epoch"]
    epochs = [h["epoch"] + 1 for h in history]
    for key in keys:
        ax.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key)
    ax.set(title=title, xlabel="epoch", ylabel="value")
    ax.legend()
    return ax


def _runs(flags: np.ndarray) -> list:
    """``(start, stop)`` index pairs of the runs of True in a bool array."""
    edges = np.flatnonzero(np.diff(np.r_[0, flags.astype(int), 0]))
    return list(zip(edges[::2], edges[1::2]))


def scores_over_time(series: dict, labels, title: str, ax=None, ylabel: str = "frame score"):
    """Frame scores of one clip over time (``series = {name: scores}``), abnormal frames shaded
    (as in IWAD Fig 5); frames are numbered from 1 as in the official labels."""
    ax = _axes(ax)
    for start, stop in _runs(np.asarray(labels, bool)):
        ax.axvspan(start + 0.5, stop + 0.5, color="tab:red", alpha=0.15, lw=0)
    for name, values in series.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name, lw=1.2)
    ax.set(title=title, xlabel="frame", ylabel=ylabel, xlim=(1, len(labels)))
    if len(series) > 1:
        ax.legend(fontsize="small")
    return ax


def mask_overlay(frame, mask, title: str, ax=None, heat=None, alpha: float = 0.45):
    """A grey frame with a binary mask outlined in red and, optionally, a heat map on top."""
    ax = _axes(ax)
    ax.imshow(frame, cmap="gray", vmin=0, vmax=255)
    if heat is not None:
        ax.imshow(heat, cmap="inferno", alpha=alpha)
    if mask is not None and np.asarray(mask).any():
        ax.contour(np.asarray(mask, float), levels=[0.5], colors="red", linewidths=1.2)
    ax.set(title=title, xlabel="x (pixels)", ylabel="y (pixels)")
    return ax


def rank_plot(average_ranks, critical_difference: float, title: str, ax=None, kinds=None):
    """Average ranks across classes (1 = best, at the left), one row per entry, with the Nemenyi
    critical difference drawn from the best rank: entries inside the bar are not significantly
    worse than the best (Demsar 2006). ``kinds`` maps entries to a colour group."""
    ranks = average_ranks.sort_values()
    ax = ax if ax is not None else plt.subplots(figsize=(6.5, 0.45 * len(ranks) + 1.2))[1]
    palette = dict(zip(sorted(set((kinds or {}).values())), sns.color_palette("deep")))
    y = np.arange(len(ranks))[::-1]
    for yi, (name, rank) in zip(y, ranks.items()):
        kind = (kinds or {}).get(name)
        ax.plot(rank, yi, "o", color=palette.get(kind, "tab:blue"),
                label=kind if kind and kind not in ax.get_legend_handles_labels()[1] else None)
    best = ranks.iloc[0]
    ax.axvspan(best, best + critical_difference, color="0.85", zorder=0,
               label=f"critical difference {critical_difference:.2f}")
    ax.set_yticks(y, list(ranks.index))
    ax.set(title=title, xlabel="average rank across classes (1 = best)",
           xlim=(0.5, max(len(ranks), best + critical_difference) + 0.5))
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


class _Table:
    """A DataFrame that displays with its missing cells written as ``na_rep`` (see
    :func:`table`)."""

    def __init__(self, df: pd.DataFrame, na_rep: str):
        self.df, self.na_rep = df, na_rep

    def _repr_html_(self) -> str:
        return self.df.to_html(na_rep=self.na_rep, notebook=True,
                               max_rows=pd.get_option("display.max_rows"),
                               max_cols=pd.get_option("display.max_columns"),
                               show_dimensions=pd.get_option("display.show_dimensions"))

    def __repr__(self) -> str:
        return self.df.to_string(na_rep=self.na_rep)


def table(df: pd.DataFrame, na_rep: str = "-"):
    """``df`` ready for ``display``: the table pandas draws in a notebook, its numbers formatted
    as usual, but every missing cell written as ``na_rep`` instead of ``NaN`` (a number that a
    run did not produce, such as the spread of a single seed or a paper's unreported entry).
    The DataFrame itself is left as it is (still numeric)."""
    return _Table(df, na_rep)
