"""Benchmark results: one self-describing JSON row per (method, dataset, class, seed, variant).

Rows live in JSON Lines files under ``results/``. :func:`append_row` rewrites the file through a
temporary file and an atomic rename under an exclusive lock, so a killed run never leaves a
half-written file, and never overwrites an existing row unless asked to (``replace=True``).

A run has an *identity* and a *configuration*. :func:`run_key` hashes the identity (method,
dataset, class, seed, variant, quick); the configuration (:func:`run_config`) is everything else
that changes the result: the detector's effective parameters after defaults (epochs included),
the caps on training and test images and the extra evaluations asked for. :func:`plan_runs` lets
an interrupted grid resume by skipping a run whose row holds the same configuration, and stops
with :class:`ConfigMismatchError` when a row of the same identity holds another one: a result is
never silently reused for a command it does not match. Rows written before the configuration was
recorded have theirs computed from what they record (:func:`row_config`).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

__all__ = ["run_key", "run_config", "row_config", "config_diff", "plan_runs",
           "ConfigMismatchError", "read_rows", "append_row", "load_results", "per_class_table"]

#: Detector parameters that never change a result: left out of a run's configuration (the seed
#: is part of the run's identity).
NOT_CONFIG = ("seed", "verbose", "checkpoint")


class ConfigMismatchError(ValueError):
    """A results file holds a run of the same identity with another configuration."""


def run_key(method: str, dataset: str, normal_class: int, seed: int, variant: str,
            quick: bool) -> str:
    """A stable identifier of one run of the grid."""
    text = json.dumps([method, dataset, int(normal_class), int(seed), variant, bool(quick)])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def run_config(params: dict, max_train: int | None = None, max_test: int | None = None,
               outlier_ratios=(), revision: int = 1) -> dict:
    """The configuration of a run: what changes its result beyond :func:`run_key`'s identity.

    ``params`` are the detector's effective constructor parameters (after defaults, as
    ``get_params()`` returns them, JSON-ready); :data:`NOT_CONFIG` names those left out.
    ``max_train`` / ``max_test`` cap the training normals (in a transfer, source and target
    alike) and the test images; ``outlier_ratios`` are the extra evaluations of G2D's section 4.2.
    ``revision`` is the detector class's ``revision``, raised when a change of its code changes
    its results (rows that do not record one are revision 1). Protocol options and ``--dev`` are
    folded into the variant, hence into the identity.
    """
    return {"params": {k: v for k, v in sorted(params.items()) if k not in NOT_CONFIG},
            "max_train": max_train, "max_test": max_test,
            "outlier_ratios": sorted(float(r) for r in outlier_ratios), "revision": revision}


def _command_option(command: str, flag: str):
    """The integer value of ``flag`` in a recorded command line, or ``None``."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        return None
    for i, word in enumerate(words):
        if word == flag and i + 1 < len(words):
            return int(words[i + 1])
        if word.startswith(flag + "="):
            return int(word.split("=", 1)[1])
    return None


def row_config(row: dict) -> dict:
    """A row's configuration: its ``config`` when it records one, else computed from what it
    records (rows written before ``config`` existed): ``params``, the caps of its ``protocol``
    (``max_train`` or a transfer's ``max_source``, ``max_test``), else of its recorded
    ``command`` (``--max-train``, ``--max-test``), and the keys of ``by_outlier_ratio``."""
    if "config" in row:
        return {"revision": 1, **row["config"]}
    info = row.get("protocol") or {}
    caps = {}
    for name, keys in (("max_train", ("max_train", "max_source")), ("max_test", ("max_test",))):
        found = [info[k] for k in keys if k in info]
        caps[name] = found[0] if found else _command_option(row.get("command", ""),
                                                            "--" + name.replace("_", "-"))
    return run_config(row.get("params") or {}, caps["max_train"], caps["max_test"],
                      [float(r) for r in row.get("by_outlier_ratio") or {}])


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``"name: old -> new"`` for every entry that differs between two configurations (nested
    dictionaries flattened with dots; a missing entry shows as ``(not recorded)``)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "(not recorded)"), new.get(key, "(not recorded)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _with_defaults(old: dict, defaults: dict | None, new: dict) -> dict:
    """A stored configuration ``old`` with the parameters it does not record, and ``new``
    does, taken from ``defaults``."""
    if not defaults or "params" not in old:
        return old
    missing = {k: v for k, v in defaults.items()
               if k in new.get("params", {}) and k not in old["params"]}
    return {**old, "params": {**missing, **old["params"]}}


def plan_runs(path: str | os.PathLike, keys: list[str], config: dict,
              replace: bool = False, defaults: dict | None = None) -> list[str]:
    """The keys of ``keys`` still to run against the results file ``path``.

    A key whose row holds ``config`` is done (skipped); a key without a row is to run. A key
    whose row holds another configuration raises :class:`ConfigMismatchError` naming what
    differs and the way out. A parameter the row does not record (the detector gained it
    later) counts as its value in ``defaults`` (the class's constructor defaults): a new
    parameter keeps the old behaviour at its default, and a change of behaviour raises the
    detector's ``revision`` instead, which does clash. ``replace=True`` runs every key again (a
    stored row of either configuration is then replaced by :func:`append_row` with
    ``replace=True``): the way to redo a grid after a change of the code rather than of the
    configuration.
    """
    if replace:
        return list(keys)
    rows = {r.get("key"): r for r in read_rows(path)}
    todo, clashes = [], []
    for key in keys:
        if key not in rows:
            todo.append(key)
        elif diff := config_diff(_with_defaults(row_config(rows[key]), defaults, config), config):
            clashes.append((rows[key], diff))
    if clashes:
        first, diff = clashes[0]
        what = (f"{first.get('method')} on {first.get('dataset')}, class "
                f"{first.get('normal_class')}, seed {first.get('seed')}, variant "
                f"{first.get('variant')!r}")
        raise ConfigMismatchError(
            f"{path} already holds {len(clashes)} of these runs with another configuration "
            f"(first: {what}; {'; '.join(diff)}). Name this configuration with --variant NAME, "
            "write to another file with --out FILE, or redo those runs with --replace")
    return todo


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


def append_row(path: str | os.PathLike, row: dict, replace: bool = False) -> bool:
    """Append ``row`` atomically; return False (and write nothing) if its ``key`` is present,
    unless ``replace``: then the rows of that key are dropped and ``row`` appended, in the same
    atomic rewrite."""
    path = Path(path)
    with _locked(path):
        old = path.read_text() if path.exists() else ""
        present = row.get("key") and any(r.get("key") == row["key"] for r in read_rows(path))
        if present and not replace:
            return False
        if present:
            old = "".join(line + "\n" for line in old.splitlines()
                          if line.strip() and json.loads(line).get("key") != row["key"])
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
