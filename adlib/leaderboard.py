"""The leaderboard: every method of the book, its baselines and its peers on the same protocols.

Notebook: ``notebooks/08_leaderboard.py``. It reads committed results files (``results/*.jsonl``)
and never trains anything itself, except in quick mode.

* :data:`ENTRIES` says which results rows stand for each method (its method name and the
  variant its chapter reports) and which published numbers to print beside it.
* :func:`leaderboard` makes the per-class table of one dataset: mean AUROC over seeds per class,
  the mean over classes, its standard deviation over seeds, and the paper's mean.
* :func:`class_ranks`, :func:`average_ranks` and :func:`nemenyi_cd` give the rank plot across
  classes (Demsar 2006: Friedman ranks and the Nemenyi critical difference).
* :func:`cost_table` reads the cost run (``python -m adlib cost``, one class per method on this
  machine's CPU): parameters, training seconds and scoring throughput.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from . import papers
from .results import row_config

__all__ = ["Entry", "ENTRIES", "entry_rows", "leaderboard", "class_ranks", "average_ranks",
           "nemenyi_cd", "cost_table", "installed"]


@dataclass(frozen=True)
class Entry:
    """One line of the leaderboard.

    Attributes:
        method: the registered detector whose rows are read.
        variant: the variant its chapter reports (the rows' ``variant``).
        label: the name printed.
        kind: ``"chapter"`` (a method of the book), ``"baseline"`` or ``"peer"`` (another
            library's implementation).
        paper: dataset -> the published per-class AUROC (%) list, or a single mean.
        source: where ``paper``'s numbers come from.
    """

    method: str
    variant: str
    label: str
    kind: str
    paper: dict = field(default_factory=dict)
    source: str = ""


_T41, _T31 = papers.THESIS_TABLE_4_1, papers.THESIS_TABLE_3_1

#: The leaderboard's lines. ADNL (its protocol makes one class *the anomaly*) and IWAD (a
#: transfer protocol) are not one-class methods; the notebook shows them in their own sections.
ENTRIES = [
    Entry("alps", "default", "ALPS", "chapter", {"mnist": _T31["mnist"]["ALPS (thesis)"],
          "fashion_mnist": _T31["fashion_mnist"]["ALPS (thesis)"]}, "thesis Table 3.1"),
    Entry("adacl", "default", "ADACL", "chapter",
          {d: _T41[d]["ADACL (thesis)"] for d in ("mnist", "fashion_mnist", "cifar10")},
          "thesis Table 4.1"),
    Entry("oclr", "full", "OCLR", "chapter", {}, "paper Fig 3 (bars, no numbers)"),
    Entry("g2d", "default", "G2D", "chapter", {}, "no one-class MNIST in the paper"),
    Entry("conv_ae", "default", "conv. autoencoder", "baseline",
          {"mnist": papers.THESIS_TABLE_3_3["Vanilla AE"]}, "thesis Table 3.3 (vanilla AE)"),
    Entry("ocsvm", "default", "OC-SVM", "baseline",
          {d: _T41[d]["OCSVM"] for d in ("mnist", "fashion_mnist", "cifar10")},
          "thesis Table 4.1"),
    Entry("isolation_forest", "default", "Isolation Forest", "baseline",
          {"mnist": 85.77, "cifar10": 59.69}, "PEERS.md (PyOD 3.6.7, measured)"),
    Entry("kde", "default", "KDE", "baseline", {}, ""),
    Entry("pyod_autoencoder", "default", "PyOD AutoEncoder", "peer",
          {"mnist": 91.58, "cifar10": 57.10}, "PEERS.md (PyOD 3.6.7, measured)"),
    Entry("pyod_deepsvdd", "default", "PyOD DeepSVDD", "peer",
          {d: _T41[d]["DSVDD"] for d in ("mnist", "fashion_mnist", "cifar10")},
          "thesis Table 4.1 (Ruff et al. 2018)"),
    Entry("anomalib_ganomaly", "default", "anomalib GANomaly", "peer", {}, ""),
]


def _paper_mean(entry: Entry, dataset: str) -> float:
    value = entry.paper.get(dataset)
    if value is None:
        return np.nan
    return float(np.mean(value)) if np.ndim(value) else float(value)


def entry_rows(df: pd.DataFrame, dataset: str, entries=ENTRIES) -> pd.DataFrame:
    """The rows of ``df`` (:func:`adlib.results.load_results`) that stand for each entry on
    ``dataset`` (full mode only), with the entry's ``label`` and ``kind`` added."""
    if df.empty:
        return df
    parts = []
    for e in entries:
        mask = ((df["method"] == e.method) & (df["variant"] == e.variant)
                & (df["dataset"] == dataset) & ~df["quick"].astype(bool))
        if mask.any():
            parts.append(df[mask].assign(label=e.label, kind=e.kind))
    if not parts:
        return df.iloc[:0]
    rows = pd.concat(parts, ignore_index=True)
    if "key" not in rows:
        return rows
    # a run repeated in two files counts once: the newest code revision, then the latest row
    configs = rows.get("config", pd.Series(None, index=rows.index))
    order = pd.DataFrame({
        "revision": [row_config({"config": c} if isinstance(c, dict) else {})["revision"]
                     for c in configs],
        "finished": rows.get("finished", pd.Series("", index=rows.index)).fillna("").astype(str),
    }, index=rows.index)
    newest = order.sort_values(["revision", "finished"], kind="stable").index
    return rows.loc[newest].drop_duplicates("key", keep="last").sort_index()


def leaderboard(df: pd.DataFrame, dataset: str, entries=ENTRIES) -> pd.DataFrame:
    """Per-class mean AUROC (%) over seeds for every entry with rows on ``dataset``.

    Columns: the classes, ``mean`` (over the classes present), ``std`` (standard deviation over
    seeds of the per-seed mean over the classes, from the seeds that cover every class the
    entry has; empty with fewer than 2 such seeds), ``seeds`` (the fewest and
    most seeds of any class, as ``"a-b"``), ``classes`` (how many), ``paper`` (the published
    mean) and ``kind``. Sorted by ``mean``, best first, the entries that cover every class
    before those that cover fewer (a mean over one easy class would otherwise top the board).
    """
    rows = entry_rows(df, dataset, entries)
    if rows.empty:
        return pd.DataFrame()
    by_entry = {e.label: e for e in entries}
    cells = rows.groupby(["label", "normal_class"])["auroc"].agg(["mean", "count"])
    table = (100 * cells["mean"]).unstack("normal_class")
    table.columns = [int(c) for c in table.columns]
    classes = list(table.columns)
    table["mean"] = table[classes].mean(axis=1)
    by_seed = rows.groupby(["label", "seed"])["auroc"]
    complete = by_seed.size() == rows.groupby("label")["normal_class"].nunique().reindex(
        by_seed.size().index, level=0)
    per_seed = 100 * by_seed.mean()[complete]
    table["std"] = per_seed.groupby(level=0).std()
    n = cells["count"].groupby(level=0)
    table["seeds"] = n.min().astype(str) + "-" + n.max().astype(str)
    table["classes"] = table[classes].notna().sum(axis=1)
    table["paper"] = [_paper_mean(by_entry[label], dataset) for label in table.index]
    table["kind"] = [by_entry[label].kind for label in table.index]
    return table.sort_values(["classes", "mean"], ascending=False).round(2)


def class_ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Rank of each entry (row) within each class (column) of a :func:`leaderboard` table, 1
    the best, ties averaged; only entries with every class are ranked."""
    classes = [c for c in table.columns if isinstance(c, (int, np.integer))]
    full = table.loc[table[classes].notna().all(axis=1), classes]
    return full.rank(axis=0, ascending=False, method="average")


def average_ranks(table: pd.DataFrame) -> pd.Series:
    """Mean rank over the classes (:func:`class_ranks`), best first."""
    return class_ranks(table).mean(axis=1).sort_values()


def nemenyi_cd(n_entries: int, n_classes: int, alpha: float = 0.05) -> float:
    """The Nemenyi critical difference of average ranks (Demsar 2006, eq. after Table 5):
    ``q_alpha sqrt(k (k + 1) / (6 N))``, ``q_alpha`` the studentized range quantile over
    ``sqrt 2``. Two entries whose average ranks differ by less are not significantly different.
    """
    if n_entries < 2 or n_classes < 1:
        raise ValueError(f"need at least 2 entries and 1 class, got {n_entries} and {n_classes}")
    q = stats.studentized_range.ppf(1 - alpha, n_entries, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(n_entries * (n_entries + 1) / (6.0 * n_classes)))


def cost_table(df: pd.DataFrame, entries=ENTRIES) -> pd.DataFrame:
    """Cost per entry from the cost run's rows (``variant == "cost"``): trainable parameters,
    CPU training seconds for one class, scoring throughput (test images per second), the
    dataset and class it was measured on, and the torch threads used. An entry the cost run
    left out (too slow to train twice) falls back on its own leaderboard row of that dataset
    and class, and says so in ``from``."""
    if df.empty or "variant" not in df:
        return pd.DataFrame()
    cost = df[df["variant"] == "cost"]
    measured = cost.iloc[-1] if len(cost) else None
    out = []
    for e in entries:
        mine, origin = cost[cost["method"] == e.method], "cost run"
        if mine.empty and measured is not None:
            mine = entry_rows(df, measured["dataset"], [e])
            mine = mine[mine["normal_class"] == measured["normal_class"]]
            origin = "its leaderboard row"
        if mine.empty:
            continue
        r = mine.iloc[-1]
        n_test = r["protocol"].get("n_test") if isinstance(r["protocol"], dict) else None
        n_params = r.get("n_params")
        out.append({"label": e.label, "kind": e.kind,
                    "parameters": None if pd.isna(n_params) else int(n_params),
                    "train s / class": round(float(r["fit_s"]), 1),
                    "images / s": round(n_test / r["score_s"]) if n_test and r["score_s"] else None,
                    "measured on": f"{r['dataset']} class {r['normal_class']}",
                    "torch threads": r.get("torch_threads"), "gpu": r.get("gpu"),
                    "from": origin})
    if not out:
        return pd.DataFrame()
    return pd.DataFrame(out).astype({"parameters": "Int64"}).set_index("label")


def installed(method: str, known=None) -> bool:
    """Whether ``method`` is registered and the library it wraps (a peer's ``requires``) can
    be imported here."""
    import importlib.util

    from .registry import available_detectors, detector_class

    if method not in (known if known is not None else available_detectors()):
        return False
    needed = getattr(detector_class(method), "requires", None)
    try:
        return not needed or importlib.util.find_spec(needed) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False
