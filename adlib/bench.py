"""The benchmark command: train and evaluate a registered method on a protocol.

``python -m adlib bench adacl --dataset mnist --classes all --seeds 0 1 2`` runs every
(class, seed) pair of the grid, shows progress, and appends one row per run to
``results/<method>_<dataset>.jsonl`` (see :mod:`adlib.results`) with its provenance: the
command, git commit, seeds, package versions, CPU/GPU, wall time and peak memory, and the run's
configuration (:func:`adlib.results.run_config`). A run already in the file with the same
configuration is skipped, so an interrupted grid resumes where it stopped; one with another
configuration stops the command with the keys that differ (``--variant``, ``--out`` or
``--replace`` is the way out). User mistakes (a bad class, a missing dataset, such a clash) end
in one line on stderr and exit status 2; ``--debug`` shows the traceback.

The command line's parsing lives in :mod:`adlib.cli`; this module holds the runners.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
import dataclasses
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .data import DATASETS, DataError, _is_folder_name, load_dataset
from .grid import BACKENDS, run_jobs
from .leaderboard import ENTRIES, entry_rows, installed
from .metrics import best_f1, evaluate, f1_at_threshold
from .papers import IWAD_RATES
from .protocols import (SELECTIONS, anomaly_class, development_split, one_class,
                        outlier_ratio_indices, paper_selection, Preprocess, resolve_classes,
                        transfer)
from .registry import available_detectors, detector_class, get_detector
from .results import (append_row, load_results, plan_runs, run_config,
                      run_key)
from .training import count_parameters, to_builtin
from .video import (PATCH_MIN_OVERLAP, VIDEO_DATASETS, frame_metrics, frame_scores, load_ucsd,
                    motion_in_test_clips, patch_labels, patch_metrics, score_clips,
                    score_cuboid_clips, ucsd_patches, ucsd_transfer)

__all__ = ["provenance", "n_params", "run_one", "run_grid", "grid_row", "run_video", "run_transfer",
           "run_cost"]

#: IWAD Table 1's anomaly rates of the target domain.
TRANSFER_RATES = IWAD_RATES
#: How a detector that is not a transfer method is trained in the transfer protocol (IWAD
#: Table 1's baselines): on the source normals and applied to the target ("source", MemAE
#: directly), then fine-tuned on the unlabelled target mixture ("finetune"), on the unlabelled
#: target mixture ("target", Isolation Forest), or on the target's normals ("target_normals",
#: the semi-supervised reference).
TRANSFER_MODES = ("source", "finetune", "target", "target_normals")
#: Every method of the transfer grid sees the same input: IWAD's 28 x 28, three channels, [-1, 1].
TRANSFER_PREPROCESS = Preprocess(size=28, channels=3, scale="pm1")

REPO = Path(__file__).resolve().parents[1]


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _hardware() -> dict:
    """The machine and torch settings of this process (a Ray worker's own, on a cluster)."""
    return {"cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "hostname": platform.node()}


def _peer_versions() -> dict:
    """Versions of the peer libraries that are installed (PyOD, anomalib)."""
    from importlib import metadata

    out = {}
    for name in ("pyod", "anomalib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def provenance() -> dict:
    """Who and what produced a row: command, commit, versions and hardware."""
    import sklearn
    import torchvision
    return {
        "command": " ".join(shlex.quote(a) for a in ["python", "-m", "adlib", *sys.argv[1:]]),
        # ADLIB_COMMIT names the commit where the checkout has no git (a copied working tree)
        "commit": os.environ.get("ADLIB_COMMIT") or _git("rev-parse", "HEAD"),
        # uncommitted edits of the code; results/ is output (a queue of grids appends to it)
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".",
                           ":(exclude)results")),
        "versions": {"adlib": __version__, "python": platform.python_version(),
                     "torch": torch.__version__, "torchvision": torchvision.__version__,
                     "numpy": np.__version__, "sklearn": sklearn.__version__,
                     **_peer_versions()},
        **_hardware(),
    }


def _jsonable(value):
    """``value`` as a results row stores it: numpy scalars as numbers, tuples as lists, any
    other object by its ``repr``."""
    value = to_builtin(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None), dict)) else repr(value)


def _stored_params(detector) -> dict:
    """A detector's parameters exactly as a results row stores them (after a JSON round
    trip), so that a grid's configuration compares equal to the rows it wrote."""
    return json.loads(json.dumps({k: _jsonable(v) for k, v in detector.get_params().items()}))


def run_one(method: str, split, seed: int, params: dict, quick: bool, verbose: bool,
            outlier_ratios=(), track: bool = False) -> dict:
    """Fit ``method`` on ``split`` with ``seed``; return the metrics and timings.

    ``outlier_ratios`` (G2D section 4.2) also evaluates the same scores on test subsets whose
    anomalies make each given share (:func:`adlib.protocols.outlier_ratio_indices`), with the F1
    of ``predict`` (the detector's own threshold), under ``by_outlier_ratio``. ``track``: see
    :func:`_fitted` (for development splits; the per-epoch AUROCs land in ``history``).
    """
    detector = _fitted(method, split, seed, params, quick, verbose, track)
    started = time.perf_counter()
    # a detector with several scores (ALPS) computes them all at once; score() is the selected one
    all_scores = detector.score_all(split.X_test) if hasattr(detector, "score_all") else None
    scores = (all_scores[detector.selected_score_] if all_scores is not None
              else detector.score(split.X_test))
    score_s = time.perf_counter() - started
    out = {**evaluate(split.y_test, scores), "fit_s": round(detector.fit_seconds_, 3),
           "score_s": round(score_s, 3), **_training_record(detector)}
    out.update(f1_scores(split.y_test, scores, detector.threshold_))
    if outlier_ratios:
        out["by_outlier_ratio"] = {}
        for ratio in outlier_ratios:
            idx = outlier_ratio_indices(split.y_test, ratio, seed)
            out["by_outlier_ratio"][str(ratio)] = {
                **evaluate(split.y_test[idx], scores[idx]),
                **f1_scores(split.y_test[idx], scores[idx], detector.threshold_),
                "n_test": int(len(idx))}
    if all_scores is not None:  # methods with several scores report each of them
        out["all_scores"] = {name: evaluate(split.y_test, values)
                             for name, values in all_scores.items()}
        out["selected_score"] = detector.selected_score_
        if getattr(detector, "selection_", None):  # the label-free evidence for that choice
            out["selection"] = {k: round(float(v), 6) for k, v in detector.selection_.items()}
    return out


def f1_scores(y_true, scores, threshold: float) -> dict:
    """The F1s of a results row, each naming its positive class: ``f1`` (anomaly positive, at
    the detector's own threshold), ``f1_normal`` (normal positive, the ALOCC / GPND / G2D
    lineage's F1, same threshold), and the best over all thresholds of each, ``best_f1`` and
    ``best_f1_normal`` (oracles that read the test labels: shown beside, never selecting)."""
    return {"f1": f1_at_threshold(y_true, scores, threshold),
            "f1_normal": f1_at_threshold(y_true, scores, threshold, positive="normal"),
            "best_f1": best_f1(y_true, scores),
            "best_f1_normal": best_f1(y_true, scores, positive="normal")}


def _built(method: str, seed: int, params: dict, quick: bool, verbose: bool):
    """``method`` built with ``seed`` and ``params``, its ``quick`` and ``verbose`` set where it
    has them."""
    detector = get_detector(method, seed=seed, **params)
    for name, value in (("quick", quick), ("verbose", verbose)):
        if name in detector.get_params():
            detector.set_params(**{name: value})
    return detector


def _run_stamp(started: float, base: dict) -> dict:
    """What closes every results row: wall time since ``started``, peak memory, the finishing
    time and the provenance ``base``."""
    return {"wall_s": round(time.perf_counter() - started, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **base}


def _fitted(method: str, split, seed: int, params: dict, quick: bool, verbose: bool,
            track: bool = False):
    """``method`` built with ``seed`` and ``params`` and fitted on ``split`` (its labelled
    anomalies too, for a few-shot method). ``track`` (development splits only) records the
    AUROC on the split's evaluation set after every epoch (``BaseDeepDetector.track``)."""
    detector = _built(method, seed, params, quick, verbose)
    if track and hasattr(detector, "track"):
        detector.track(split.X_test, split.y_test)
    if detector.learning_type == "few_shot":  # labelled anomalies of the protocol, if any
        return detector.fit(split.X_train, split.X_val, getattr(split, "X_anomalies", None))
    if getattr(split, "X_val_anomalies", None) is not None:  # the paper selection
        return detector.fit(split.X_train, split.X_val, X_val_anomalies=split.X_val_anomalies)
    return detector.fit(split.X_train, split.X_val)


def n_params(detector) -> int | None:
    """Trainable parameters of every torch module a fitted detector holds (``None`` for a
    detector without one, such as the scikit-learn baselines); a wrapper of another library
    reports its own count as ``n_params_``."""
    if getattr(detector, "n_params_", None) is not None:
        return int(detector.n_params_)
    modules = [v for v in vars(detector).values() if isinstance(v, torch.nn.Module)]
    return count_parameters(*modules) if modules else None


def _training_record(detector) -> dict:
    """What a results row keeps of a fitted detector: parameters, epochs, history."""
    out = {"params": _stored_params(detector),
           "n_params": n_params(detector)}
    for attr in ("epochs_run_", "best_epoch_"):
        if hasattr(detector, attr):
            out[attr.rstrip("_")] = int(getattr(detector, attr))
    if hasattr(detector, "threshold_source_"):  # which images set the threshold of ``f1``
        out["threshold_source"] = detector.threshold_source_
    if hasattr(detector, "history_"):
        out["history"] = detector.history_
    if hasattr(detector, "gan_history_"):  # G2D: the GAN's loss curve and the chosen snapshots
        out["gan_history"] = detector.gan_history_
        out["generator_selection"] = detector.selection_
    return out


def _variant_name(variant: str, protocol: dict | None, dev: bool = False,
                  selection: str = "clean") -> str:
    """The variant with non-default protocol options, a non-default selection and ``+dev``
    folded into its name."""
    if protocol:
        variant = variant + "+" + ",".join(f"{k}={v}" for k, v in sorted(protocol.items()))
    if selection != "clean":
        variant = f"{variant}+selection={selection}"
    return f"{variant}+dev" if dev else variant


def run_grid(method: str, dataset: str, classes="all", seeds=(0,), *, quick: bool = False,
             params: dict | None = None, variant: str = "default", out: str | None = None,
             max_train: int | None = None, max_test: int | None = None, root=None,
             verify: bool = True, verbose: bool = True, protocol: dict | None = None,
             dev: bool = False, outlier_ratios=(), backend: str = "local",
             ray_address: str | None = None, ray_num_cpus: float = 1,
             ray_num_gpus: float = 0, replace: bool = False, download: bool = False,
             selection: str = "clean", size: int | None = None) -> Path:
    """Run the (class x seed) grid, appending one row per finished run to ``out``.

    ``verify=False`` skips the checks of the data copy (:func:`adlib.data.check_copy`);
    ``download=True`` lets a loader fetch a missing
    dataset (internet). A run already in ``out`` with the same configuration
    (:func:`adlib.results.run_config`) is skipped; one with another configuration raises
    :class:`adlib.results.ConfigMismatchError`; ``replace=True`` runs every run again and
    replaces its stored row. ``selection`` is ``"clean"`` (no real anomaly before the test) or
    ``"paper"`` (:func:`adlib.protocols.paper_selection`: the epoch, and for ALPS the score, are
    chosen on real anomalies from the other classes' training images; for the methods whose
    ``selections`` include it); rows record it (``selection_protocol``), and a non-clean one
    is folded into the variant. ``dataset`` may be the path of a folder of your own images
    (:mod:`adlib.folders`): its class 0 (good / normal) is the normal class, rows go to
    ``results/<method>_<folder name>.jsonl``; ``size`` resizes every image to ``size x size``
    (folded into the variant as ``+size=N``). A video dataset
    (:data:`adlib.video.VIDEO_DATASETS`) runs the
    patch protocol instead, one row per seed (see :func:`run_video`); ``protocol`` then holds
    options of
    :func:`adlib.video.ucsd_patches` (for example ``{"stride": 25}``). A few-shot method
    (ADNL) runs :func:`adlib.protocols.anomaly_class` with each class as *the anomaly*;
    ``protocol`` then holds its options (``n_labelled``, ``test_anomaly``, ``size``; its
    ``dev=True`` holds out labelled anomalies instead). Non-default protocol
    options are folded into the variant's name. ``dev=True`` evaluates on
    :func:`adlib.protocols.development_split` (training images only) instead of the test split,
    for choosing hyperparameters without test labels; its rows carry the variant ``<name>+dev``.

    ``backend="ray"`` runs each (class, seed) pair as a Ray task (:mod:`adlib.grid`) with
    ``ray_num_cpus`` CPUs and ``ray_num_gpus`` GPUs reserved; ``ray_address`` is ``None`` (a
    single-machine Ray started here), ``"auto"`` or ``"ray://host:port"`` (a cluster). The rows,
    their keys and the resume behaviour are the same as with ``"local"``; rows carry ``backend``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    folder = _is_folder_name(dataset) and dataset not in VIDEO_DATASETS
    if dataset not in DATASETS and dataset not in VIDEO_DATASETS and not folder:
        raise DataError(f"unknown dataset {dataset!r}; image datasets: {', '.join(DATASETS)}; "
                        f"video datasets: {', '.join(VIDEO_DATASETS)}; or the path of a "
                        "folder of your own images (see adlib.folders)")
    if folder and classes == "all":  # a folder's training images are its normal class only
        classes = [0]
    if selection != "clean" and dataset in VIDEO_DATASETS:
        raise ValueError(f"--selection {selection} runs on the image datasets only")
    if dataset in VIDEO_DATASETS and backend != "local":
        raise ValueError(f"backend {backend!r} runs image grids only; run {dataset} locally")
    if dataset in VIDEO_DATASETS:
        return run_video(method, dataset, seeds, quick=quick, params=params, variant=variant,
                         out=out, max_train=max_train, root=root, verify=verify,
                         verbose=verbose, protocol=protocol, replace=replace,
                         download=download)
    cls, params, out = _prepare(method, dataset, params, quick, out)
    few_shot = cls.learning_type == "few_shot"
    if cls.learning_type == "transfer":
        raise ValueError(f"{cls.name} is a transfer method: run it with --transfer SOURCE TARGET "
                         "(run_transfer)")
    if protocol and not few_shot:
        raise ValueError(f"protocol options {sorted(protocol)} apply to video datasets and "
                         "few-shot methods only")
    if selection not in cls.selections:
        raise ValueError(f"{cls.name} has the selection protocols {', '.join(cls.selections)}, "
                         f"not {selection!r}")
    variant = _variant_name(variant, protocol, dev, selection)
    preprocess = cls.preprocess
    if size is not None:  # resize every image (a folder's of several sizes): its own variant
        preprocess = dataclasses.replace(preprocess, size=int(size))
        variant = f"{variant}+size={size}"
    config = _config(cls, params, quick, max_train, max_test, outlier_ratios)
    train = load_dataset(dataset, "train", root=root, verify=verify, download=download)
    test = load_dataset(dataset, "test", root=root, verify=verify, download=download)
    class_list = resolve_classes(classes, len(train.classes))
    keys = {run_key(cls.name, dataset, c, s, variant, quick): (c, s)
            for s in seeds for c in class_list}
    todo = [keys[k] for k in _pending(out, keys, config, replace, _defaults(cls),
                                      f"{cls.name} on {dataset}")]
    if not todo:
        return out
    shared = dict(method=cls.name, dataset=dataset, train=train, test=test, params=params,
                  quick=quick, verbose=verbose, variant=variant, few_shot=few_shot,
                  protocol=protocol, dev=dev, max_train=max_train, max_test=max_test,
                  outlier_ratios=tuple(outlier_ratios), preprocess=preprocess,
                  selection=selection, config=config, base={**provenance(), "backend": backend})

    def finished(job, row):  # in this process, as each run ends: the file is the checkpoint
        append_row(out, row, replace=replace)
        tqdm.write(f"  class {row['normal_class']} seed {row['seed']}: AUROC "
                   f"{100 * row['auroc']:.2f} ({row['wall_s']:.0f} s)")

    run_jobs(grid_row, shared, todo, finished, backend=backend, address=ray_address,
             num_cpus=ray_num_cpus, num_gpus=ray_num_gpus, desc=f"{cls.name}/{dataset}",
             verbose=verbose)
    return out


def grid_row(grid: dict, job) -> dict:
    """One run of :func:`run_grid`'s grid: the split of ``job = (class, seed)``, the fit and
    scores of :func:`run_one`, and the results row. ``grid`` holds what all runs share; a
    module-level function, so a Ray worker can run it (:mod:`adlib.grid`)."""
    c, s = job
    wall = time.perf_counter()
    method, dataset, train, test = grid["method"], grid["dataset"], grid["train"], grid["test"]
    preprocess, max_train, max_test = grid["preprocess"], grid["max_train"], grid["max_test"]
    if grid["few_shot"]:  # ADNL's protocol: class c is the anomaly, some of it labelled
        split = anomaly_class(dataset, c, seed=s, preprocess=preprocess, max_train=max_train,
                              max_test=max_test, train_set=train, test_set=test,
                              development=grid["dev"], **(grid["protocol"] or {}))
    else:
        split = one_class(dataset, c, seed=s, preprocess=preprocess, max_train=max_train,
                          max_test=max_test, train_set=train, test_set=test)
    if grid.get("selection", "clean") == "paper":
        split = paper_selection(split, train, seed=s, preprocess=preprocess)
    if grid["dev"] and not grid["few_shot"]:
        split = development_split(split, train, seed=s, preprocess=preprocess)
    result = run_one(method, split, s, grid["params"], grid["quick"], grid["verbose"],
                     grid["outlier_ratios"], track=grid["dev"])
    return {"key": run_key(method, dataset, c, s, grid["variant"], grid["quick"]),
            "method": method, "dataset": dataset, "normal_class": c,
            "class_name": train.classes[c], "seed": s, "variant": grid["variant"],
            "selection_protocol": grid.get("selection", "clean"),
            "quick": grid["quick"], **result, "config": grid["config"], "protocol": split.info,
            **_run_stamp(wall, {**grid["base"], **_hardware()})}


def _prepare(method: str, dataset: str, params, quick: bool, out):
    cls = detector_class(method)
    params = dict(params or {})
    if "seed" in params:
        raise ValueError("give seeds with seeds=[...] (--seeds), not as a detector parameter")
    if "num_epochs" in cls._param_names() and "num_epochs" not in params:
        params["num_epochs"] = cls.epochs_for(dataset, quick)
    name = Path(dataset).name if _is_folder_name(dataset) else dataset
    return cls, params, Path(out or REPO / "results" / f"{cls.name}_{name}.jsonl")


def _config(cls, params: dict, quick: bool, max_train=None, max_test=None,
            outlier_ratios=()) -> dict:
    """The configuration of the runs of a grid (:func:`adlib.results.run_config`), with the
    detector's effective parameters after its defaults, as JSON will store them."""
    effective = _stored_params(_built(cls.name, 0, params, quick, verbose=False))
    return json.loads(json.dumps(run_config(effective, max_train, max_test, outlier_ratios,
                                            cls.revision)))


def _defaults(cls) -> dict:
    """The constructor defaults of a detector class, as JSON stores them."""
    return _stored_params(cls())


def _pending(out: Path, keys, config: dict, replace: bool, defaults: dict, what: str) -> list:
    """The keys of a grid still to run in ``out`` (:func:`adlib.results.plan_runs`, with the
    class ``defaults`` for parameters added after a row was written), after a line saying how
    many are already in; when none is left, the stored rows are printed instead."""
    todo = plan_runs(out, list(keys), config, replace, defaults)
    print(f"{what}: {len(keys)} runs, {len(keys) - len(todo)} already in {out}")
    if not todo:
        _show_stored(out, keys)
    return todo


def _show_stored(out: Path, keys) -> None:
    """Print the stored rows of ``keys`` (a grid whose runs are all done)."""
    df = load_results(out)
    df = df[df["key"].isin(set(keys))] if not df.empty else df
    if df.empty:
        return
    cols = [c for c in ("normal_class", "class_name", "anomaly_rate", "seed", "variant", "auroc",
                        "ap", "eer") if c in df]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"mean AUROC {100 * df['auroc'].mean():.2f} over {len(df)} stored runs")


def run_video(method: str, dataset: str = "ucsd_ped2", seeds=(0,), *, quick: bool = False,
              params: dict | None = None, variant: str = "default", out: str | None = None,
              max_train: int | None = None, root=None, verify: bool = True,
              verbose: bool = True, protocol: dict | None = None, replace: bool = False,
              download: bool = False) -> Path:
    """Run ``method`` on the UCSD patch protocol (:mod:`adlib.video`), one row per seed.

    A row holds the frame-level AUROC and EER (raw, and with each clip's scores min-max scaled)
    of the frame scores over moving patches, the same over all patches (``all_patches``), the
    patch-level AUROC and EER (``patch_level``, :func:`adlib.video.patch_labels`; when every
    test clip has masks),
    every test frame's score (to plot scores over time), the time and peak memory of patch
    extraction, training and scoring. Non-default ``protocol`` options are folded into the
    variant's name, so runs on different grids never collide. Resuming, ``replace`` and
    ``download`` as in :func:`run_grid`.
    """
    cls, params, out = _prepare(method, dataset, params, quick, out)
    protocol = dict(protocol or {})
    variant = _variant_name(variant, protocol)
    config = _config(cls, params, quick, max_train)
    keys = {run_key(cls.name, dataset, 0, s, variant, quick): s for s in seeds}
    todo = [keys[k] for k in _pending(out, keys, config, replace, _defaults(cls),
                                      f"{cls.name} on {dataset}")]
    if not todo:
        return out
    base = provenance()
    started = time.perf_counter()
    train = load_ucsd(dataset, "train", root=root, verify=verify, download=download)
    test = load_ucsd(dataset, "test", root=root, verify=verify, download=download)
    load_s = time.perf_counter() - started
    for s in tqdm(todo, desc=f"{cls.name}/{dataset}", unit="run", disable=not verbose):
        wall = time.perf_counter()
        split = ucsd_patches(dataset, s, preprocess=cls.preprocess, max_train=max_train,
                             root=root, verify=verify, train_set=train, test_set=test, **protocol)
        extract_s = time.perf_counter() - wall
        extract_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        detector = _fitted(method, split, s, params, quick, verbose)
        t0 = time.perf_counter()
        patch_scores = score_clips(detector, split, verbose=verbose)
        score_s = time.perf_counter() - t0
        moving = motion_in_test_clips(split)
        scores = frame_scores(patch_scores, moving)  # the default rule
        metrics = frame_metrics(scores, split.test.labels)
        every = frame_metrics(frame_scores(patch_scores), split.test.labels)
        metrics["all_patches"] = {k: v for k, v in every.items() if not k.startswith("n_")}
        if split.test.masks and all(m is not None for m in split.test.masks):
            labels = patch_labels(split, moving=moving)
            metrics["patch_level"] = {**patch_metrics(patch_scores, labels),
                                      "min_overlap": PATCH_MIN_OVERLAP}
        row = {"key": run_key(cls.name, dataset, 0, s, variant, quick), "method": cls.name,
               "dataset": dataset, "normal_class": 0, "class_name": "pedestrians", "seed": s,
               "variant": variant, "quick": quick, **metrics,
               "fit_s": round(detector.fit_seconds_, 3), "score_s": round(score_s, 3),
               "load_s": round(load_s, 3), "extract_s": round(extract_s, 3),
               "extract_peak_rss_mb": round(extract_rss, 1), **_training_record(detector),
               "frame_scores": {name: [round(float(v), 6) for v in clip]
                                for name, clip in zip(split.test.names, scores)},
               "config": config, "protocol": split.info, **_run_stamp(wall, base)}
        if hasattr(detector, "selected_score_"):
            row["selected_score"] = detector.selected_score_
        append_row(out, row, replace=replace)
        tqdm.write(f"  seed {s}: frame AUROC {100 * metrics['auroc']:.2f}, EER "
                   f"{100 * metrics['eer']:.1f}% ({row['wall_s']:.0f} s)")
    return out


def _transfer_fit(cls, mode: str, split, seed: int, params: dict, quick: bool, verbose: bool,
                  cache: dict):
    """A detector fitted on ``split`` the way ``mode`` says (see :data:`TRANSFER_MODES`). The
    source-trained model of ``"source"`` and ``"finetune"`` is fitted once and kept in
    ``cache`` (one per class and seed); ``"finetune"`` fine-tunes a copy of it. A transfer
    method starts from ``cache["pretrained"]`` when it is there (``pretrain_task``)."""
    detector = _built(cls.name, seed, params, quick, verbose)
    if cls.learning_type == "transfer":
        return detector.fit(split.X_source, split.X_target, split.X_val,
                            init=cache.get("pretrained"))
    if mode in ("source", "finetune") and "source" not in cache:
        cache["source"] = detector.fit(split.X_source, split.X_val)
    if mode == "source":
        return cache["source"]
    if mode == "finetune":
        detector = copy.deepcopy(cache["source"])
        started = time.perf_counter()
        detector.fine_tune(split.X_target)
        detector.fit_seconds_ = cache["source"].fit_seconds_ + time.perf_counter() - started
        return detector
    X_train = split.X_target if mode == "target" else split.X_target_normals
    return detector.fit(X_train, None)


def run_transfer(method: str, source: str, target: str, rates=TRANSFER_RATES, seeds=(0,), *,
                 mode: str | None = None, normal_classes=(0,), quick: bool = False,
                 params: dict | None = None, variant: str = "default", out: str | None = None,
                 max_train: int | None = None, max_test: int | None = None, root=None,
                 verify: bool = True, verbose: bool = True, replace: bool = False,
                 download: bool = False, pretrain_task: tuple | None = None) -> Path:
    """IWAD's transfer grid (section 4.1, :func:`adlib.protocols.transfer`): one row per
    (normal class, seed, anomaly rate), in ``results/<method>_<source>2<target>.jsonl``.

    ``pretrain_task=(source, target, rate)`` runs a transfer method's stage 1 once per (class,
    seed) on that task and starts every rate's stage 2 from it: the IWAD authors' protocol,
    whose digit runs all load the MNIST -> USPS rate-0.25 pretraining (``"paper"`` in the
    chapter; folded into the variant as ``+pretrain=mnist2usps@0.25``).

    A transfer method (``learning_type == "transfer"``, IWAD) is fitted on the source normals and
    the unlabelled target mixture. Every method sees :data:`TRANSFER_PREPROCESS`'s input. Any
    other detector needs a ``mode`` of
    :data:`TRANSFER_MODES`; the source-trained model of ``"source"`` and ``"finetune"`` is
    fitted once per (class, seed) and reused across rates. The mode is folded into the variant's
    name; ``max_train`` caps the source and the target normals alike. Resuming, ``replace`` and
    ``download`` as in :func:`run_grid`.
    """
    cls, params, _ = _prepare(method, source, params, quick, out)
    task = f"{source}2{target}"
    out = Path(out or REPO / "results" / f"{cls.name}_{task}.jsonl")
    if cls.learning_type == "transfer":
        if mode not in (None, "transfer"):
            raise ValueError(f"{cls.name} is a transfer method: it takes no mode ({mode!r})")
        mode = "transfer"
    elif mode not in TRANSFER_MODES:
        raise ValueError(f"{cls.name} is not a transfer method: give a mode, one of "
                         f"{', '.join(TRANSFER_MODES)} (got {mode!r})")
    elif mode == "finetune" and not hasattr(cls, "fine_tune"):
        raise ValueError(f"{cls.name} cannot be fine-tuned (no fine_tune method); use MemAE")
    if not rates or any(not 0 < r < 1 for r in rates):
        raise ValueError(f"anomaly rates {list(rates)} must lie in (0, 1)")
    variant = variant if mode == "transfer" else (
        mode if variant == "default" else f"{variant}+{mode}")
    if pretrain_task is not None:
        if mode != "transfer" or not hasattr(cls, "pretrain"):
            raise ValueError(f"pretrain_task: {cls.name} has no separate pretraining stage "
                             "(IWAD has)")
        p_source, p_target, p_rate = pretrain_task
        try:
            p_rate = float(p_rate)
        except ValueError:
            raise ValueError(f"pretrain_task: rate {p_rate!r} is not a number") from None
        if not 0 < p_rate < 1:
            raise ValueError(f"pretrain_task: rate {p_rate} must lie in (0, 1)")
        variant = f"{variant}+pretrain={p_source}2{p_target}@{p_rate}"
    config = _config(cls, params, quick, max_train, max_test)
    if source in VIDEO_DATASETS or target in VIDEO_DATASETS:
        if pretrain_task is not None:
            raise ValueError("pretrain_task applies to the digit tasks, not to video")
        return _run_video_transfer(cls, mode, source, target, seeds, params, variant, out,
                                   quick, max_train, root, verify, verbose, config, replace,
                                   download)
    names = {source, target} | ({p_source, p_target} if pretrain_task is not None else set())
    sets = {(d, part): load_dataset(d, part, root=root, verify=verify, download=download)
            for d in sorted(names) for part in ("train", "test")}
    key = lambda c, s, r: run_key(cls.name, task, c, s, f"{variant}@rate={r}", quick)  # noqa: E731
    grid = [(c, s) for c in normal_classes for s in seeds]
    keys = [key(c, s, r) for c, s in grid for r in rates]
    pending = set(_pending(out, keys, config, replace, _defaults(cls),
                           f"{cls.name} ({variant}) on {source} -> {target}"))
    todo = [(c, s) for c, s in grid if any(key(c, s, r) in pending for r in rates)]
    if not todo:
        return out
    base = provenance()
    for c, s in tqdm(todo, desc=f"{cls.name}/{task}", unit="seed", disable=not verbose):
        cache = {}
        if pretrain_task is not None:
            other = transfer(p_source, p_target, p_rate, s, normal_class=c,
                             preprocess=TRANSFER_PREPROCESS, max_source=max_train,
                             max_target=max_train, max_test=max_test, sets=sets)
            started = time.perf_counter()
            cache["pretrained"] = _built(cls.name, s, params, quick, verbose).pretrain(
                other.X_source, other.X_target)
            cache["pretrain_s"] = round(time.perf_counter() - started, 3)
        for r in rates:
            if key(c, s, r) not in pending:
                continue
            wall = time.perf_counter()
            split = transfer(source, target, r, s, normal_class=c, preprocess=TRANSFER_PREPROCESS,
                             max_source=max_train, max_target=max_train, max_test=max_test,
                             sets=sets)
            detector = _transfer_fit(cls, mode, split, s, params, quick, verbose, cache)
            started = time.perf_counter()
            scores = detector.score(split.X_test)
            row = {"key": key(c, s, r), "method": cls.name, "dataset": task, "source": source,
                   "target": target, "normal_class": c, "class_name": str(c), "seed": s,
                   "anomaly_rate": r, "mode": mode, "variant": variant, "quick": quick,
                   **evaluate(split.y_test, scores),
                   "fit_s": round(detector.fit_seconds_, 3),
                   "score_s": round(time.perf_counter() - started, 3),
                   **_training_record(detector), "config": config, "protocol": split.info,
                   **_run_stamp(wall, base)}
            if pretrain_task is not None:  # stage 1 on another task, shared by every rate
                row["pretrain_task"] = [p_source, p_target, p_rate]
                row["pretrain_s"] = cache["pretrain_s"]
            for attr in ("eta_", "beta_", "cutoff_"):
                if getattr(detector, attr, None) is not None:
                    row[attr.rstrip("_")] = float(getattr(detector, attr))
            append_row(out, row, replace=replace)
            tqdm.write(f"  class {c} seed {s} rate {r}: AUROC {100 * row['auroc']:.2f} "
                       f"({row['wall_s']:.0f} s)")
    return out


def _run_video_transfer(cls, mode, source, target, seeds, params, variant, out, quick,
                        max_train, root, verify, verbose, config, replace, download) -> Path:
    """Table 2's grid: one row per seed with the frame-level AUROC / EER of the target's test
    clips (:func:`adlib.video.ucsd_transfer`; each frame scored by its cuboids). UCSD cannot be
    downloaded through torchvision: ``download`` is refused."""
    if download:
        raise DataError("UCSD Ped1/Ped2 have no download here: place the clips under ADLIB_DATA "
                        "(see the data README) and run without --download")
    if source not in VIDEO_DATASETS or target not in VIDEO_DATASETS:
        raise ValueError(f"a video transfer needs two video datasets ({', '.join(VIDEO_DATASETS)})"
                         f", got {source} -> {target}")
    task = f"{source}2{target}"
    keys = {run_key(cls.name, task, 0, s, variant, quick): s for s in seeds}
    todo = [keys[k] for k in _pending(out, keys, config, replace, _defaults(cls),
                                      f"{cls.name} ({variant}) on {source} -> {target}")]
    if not todo:
        return out
    base = provenance()
    for s in tqdm(todo, desc=f"{cls.name}/{task}", unit="seed", disable=not verbose):
        wall = time.perf_counter()
        split = ucsd_transfer(source, target, s, max_source=max_train, max_target=max_train,
                              root=root, verify=verify)
        detector = _transfer_fit(cls, mode, split, s, params, quick, verbose, {})
        started = time.perf_counter()
        scores = score_cuboid_clips(detector, split)
        row = {"key": run_key(cls.name, task, 0, s, variant, quick), "method": cls.name,
               "dataset": task, "source": source, "target": target, "normal_class": 0,
               "class_name": "pedestrians", "seed": s, "mode": mode, "variant": variant,
               "quick": quick, **frame_metrics(scores, split.test.labels),
               "fit_s": round(detector.fit_seconds_, 3),
               "score_s": round(time.perf_counter() - started, 3), **_training_record(detector),
               "config": config, "protocol": split.info, **_run_stamp(wall, base)}
        append_row(out, row, replace=replace)
        tqdm.write(f"  seed {s}: frame AUROC {100 * row['auroc']:.2f} ({row['wall_s']:.0f} s)")
    return out


def run_cost(dataset: str = "mnist", normal_class: int = 0, seed: int = 0, methods=None,
             results_dir=None, out=None, quick: bool = False, verbose: bool = True):
    """The cost run: each entry's method trained once on ``dataset``'s ``normal_class`` in this
    process, one after another, with the parameters of its committed leaderboard rows (so the
    cost is that of the configuration the table reports). Rows go to ``out`` (default
    ``results/cost_<dataset>.jsonl``) with the variant ``"cost"``; finished methods are skipped
    on a rerun. Run it alone on the machine: its times are the cost columns."""
    results_dir = results_dir or REPO / "results"
    out = out or results_dir / f"cost_{dataset}.jsonl"
    known = set(available_detectors())
    chosen = [e for e in ENTRIES if (methods is None or e.method in methods)]
    unknown = set(methods or ()) - {e.method for e in ENTRIES}
    if unknown:
        raise ValueError(f"no leaderboard entry for {sorted(unknown)}; entries: "
                         f"{', '.join(e.method for e in ENTRIES)}")
    reported = entry_rows(load_results(str(results_dir / "*.jsonl")), dataset, chosen)
    for e in chosen:
        if not installed(e.method, known):
            print(f"{e.method}: its library is not installed here, skipped")
            continue
        mine = reported[reported["method"] == e.method] if len(reported) else reported
        params = dict(mine.iloc[0]["params"]) if len(mine) else {}
        for name in ("seed", "verbose", "quick"):
            params.pop(name, None)
        run_grid(e.method, dataset, [normal_class], [seed], params=params, variant="cost",
                 out=out, quick=quick, verbose=verbose)
    return out
