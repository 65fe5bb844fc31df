"""Benchmark results: one self-describing JSON row per (method, dataset, class, seed, variant).

Rows live in JSON Lines files under ``results/``. :func:`append_row` rewrites the file through a
temporary file and an atomic rename under an exclusive lock, so a killed run never leaves a
half-written file, and never overwrites an existing row. :func:`run_key` identifies a run so that
an interrupted grid resumes by skipping what is already there.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

__all__ = ["run_key", "read_rows", "append_row", "load_results", "per_class_table"]


def run_key(method: str, dataset: str, normal_class: int, seed: int, variant: str,
            quick: bool) -> str:
    """A stable identifier of one run of the grid."""
    text = json.dumps([method, dataset, int(normal_class), int(seed), variant, bool(quick)])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def read_rows(path: str | os.PathLike) -> list[dict]:
    """All rows of a results file (an empty list when it does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n} is not valid JSON ({err}); the file is corrupt: "
                                 "restore it from git") from err
    return rows


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_row(path: str | os.PathLike, row: dict) -> bool:
    """Append ``row`` atomically; return False (and write nothing) if its ``key`` is present."""
    path = Path(path)
    with _locked(path):
        old = path.read_text() if path.exists() else ""
        if row.get("key") and any(r.get("key") == row["key"] for r in read_rows(path)):
            return False
        if old and not old.endswith("\n"):
            old += "\n"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(old + json.dumps(row, sort_keys=True) + "\n")
        os.replace(tmp, path)
    return True


def load_results(*paths) -> pd.DataFrame:
    """Rows of one or more results files (globs allowed) as a flat DataFrame."""
    rows = []
    for p in paths:
        p = Path(p)
        files = sorted(p.parent.glob(p.name)) if any(ch in p.name for ch in "*?[") else [p]
        for f in files:
            rows += read_rows(f)
    return pd.DataFrame(rows)


def per_class_table(df: pd.DataFrame, metric: str = "auroc", by: str = "method",
                    scale: float = 100.0) -> pd.DataFrame:
    """Mean over seeds per (``by``, class), as a wide table with a ``Mean`` column and the
    number of seeds; values multiplied by ``scale`` (percent by default)."""
    if df.empty:
        return pd.DataFrame()
    g = df.groupby([by, "normal_class"])[metric]
    wide = (g.mean() * scale).unstack("normal_class")
    wide["Mean"] = wide.mean(axis=1)
    wide["seeds"] = df.groupby(by)["seed"].nunique()
    wide["std over seeds"] = (df.groupby([by, "seed"])[metric].mean() * scale).groupby(
        level=0).std()
    return wide.round(2)
