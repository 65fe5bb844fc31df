"""Fit once on your own images, then score new ones: what ``python -m adlib fit`` and
``python -m adlib score`` run.

:func:`fit_and_save` trains a registered deep detector on the normal class of a dataset (a
folder of your own images, in MVTec AD's layout or as ``normal/`` + ``abnormal/``, see
:mod:`adlib.folders`; or a registered name) and saves it with its preprocessing.
:func:`score_files` reloads it (``weights_only=True``) and scores image files or folders: per
image the score, the label at the saved threshold and, for a method that reconstructs its input,
an anomaly map written as a PNG beside the CSV.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from .data import _atomic_write_text
from .detectors import BaseDeepDetector
from .folders import image_files, read_image
from .protocols import Preprocess, one_class
from .registry import detector_class, get_detector
from .training import load_checkpoint

__all__ = ["MODEL_FORMAT", "fit_and_save", "load_model", "score_files"]

#: The version of the saved model's layout (the keys :func:`fit_and_save` adds).
MODEL_FORMAT = 1


def fit_and_save(method: str, dataset, path, *, normal_class: int = 0, seed: int = 0,
                 params: dict | None = None, size: int | None = None, quick: bool = False,
                 root=None, verbose: bool = True) -> BaseDeepDetector:
    """Fit ``method`` on the normal class of ``dataset`` and save it to ``path``.

    ``dataset`` is a folder path or a registered name; its class ``normal_class`` (0: ``good``
    or ``normal`` in a folder) trains the detector, a held-out share of it sets the threshold
    (:func:`adlib.protocols.one_class`). ``size`` resizes every image to ``size x size`` (needed
    when a folder's images differ in size); otherwise the method's own preprocessing applies.
    The file holds the weights, the parameters, the threshold, the method's name and the
    preprocessing, so :func:`load_model` rebuilds the detector from it alone.

    Raises:
        ValueError: an unknown method or parameter, or a method without weights to save (the
            scikit-learn and PyOD detectors: use the deep ones).
        DataError: the dataset cannot be read (see :func:`adlib.data.load_dataset`).
    """
    cls = detector_class(method)
    if not issubclass(cls, BaseDeepDetector):
        raise ValueError(f"{method} has no network to save; fit/score take the deep detectors "
                         "(python -m adlib list shows each one's kind)")
    preprocess = cls.preprocess if size is None else replace(cls.preprocess, size=int(size))
    split = one_class(dataset, normal_class, seed=seed, preprocess=preprocess, root=root)
    detector = get_detector(method, seed=seed, quick=quick, verbose=verbose, **(params or {}))
    detector.fit(split.X_train, split.X_val)
    preprocess = replace(preprocess, channels=int(detector.input_shape_[0]))
    detector.save(path, extra={"format": MODEL_FORMAT, "method": method,
                               "preprocess": asdict(preprocess), "dataset": str(dataset),
                               "normal_class": int(normal_class),
                               "class_name": split.classes[normal_class]})
    return detector


def load_model(path) -> tuple[BaseDeepDetector, Preprocess]:
    """The detector saved by :func:`fit_and_save` at ``path`` and its preprocessing.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file was not written by :func:`fit_and_save` (or by a newer format).
        RuntimeError: the file is corrupt or holds more than weights and plain values.
    """
    state = load_checkpoint(path)
    if state.get("format") != MODEL_FORMAT or "method" not in state:
        raise ValueError(f"{path} is not a model saved by `python -m adlib fit` (format "
                         f"{MODEL_FORMAT}); fit one with python -m adlib fit METHOD "
                         "--dataset PATH --save MODEL")
    detector = get_detector(state["method"]).load(path)
    return detector, Preprocess(**state["preprocess"])


def _prepared(files: list[Path], preprocess: Preprocess, shape: tuple) -> torch.Tensor:
    """``files`` decoded and preprocessed into one batch; an image of another shape than the
    model's is refused with the file named."""
    out = []
    for f in files:
        x = preprocess(read_image(f).unsqueeze(0))
        if tuple(x.shape[1:]) != tuple(shape):
            fix = ("refit with --size N to resize every image" if preprocess.size is None
                   else "this should not happen: report it")
            raise ValueError(f"{f}: an image of {' x '.join(map(str, x.shape[1:]))} after "
                             f"preprocessing, but the model was fitted on "
                             f"{' x '.join(map(str, shape))}; {fix}")
        out.append(x)
    return torch.cat(out)


def _save_map(error: np.ndarray, scale: float, path: Path) -> None:
    """An anomaly map as an 8-bit grey PNG: 0 a perfect reconstruction, 255 an error of the
    whole input range ``scale``."""
    pixels = np.clip(error / scale * 255.0, 0, 255).round().astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(path)


def score_files(model, inputs, csv=None, batch_size: int = 64,
                verbose: bool = True) -> pd.DataFrame:
    """Score image files and folders (searched recursively) with the model saved at ``model``.

    Returns one row per image: ``path``, ``score`` (higher is more anomalous), ``label`` (1
    where the score reaches the saved ``threshold``), ``threshold`` and, when ``csv`` is given
    and the method reconstructs its input, ``map``: the path of its anomaly map (absolute
    reconstruction error averaged over channels, :meth:`BaseDeepDetector.anomaly_map`), a PNG
    in the folder ``<csv stem>_maps`` beside the CSV. With ``csv`` the table is also written
    there (atomically).

    Raises:
        FileNotFoundError: an input that does not exist.
        DataError: an input folder without images, or an unreadable image.
        ValueError: an image whose shape after preprocessing differs from the model's.
    """
    detector, preprocess = load_model(model)
    files = image_files(inputs)
    maps_dir = None
    if csv is not None and detector.reconstructs:
        maps_dir = Path(csv).with_name(Path(csv).stem + "_maps")
        maps_dir.mkdir(parents=True, exist_ok=True)
    scale = 2.0 if preprocess.scale == "pm1" else 1.0
    rows = []
    starts = range(0, len(files), batch_size)
    for start in tqdm(starts, desc="scoring", unit="batch", disable=not verbose):
        chunk = files[start:start + batch_size]
        X = _prepared(chunk, preprocess, detector.input_shape_)
        scores = detector.score(X)
        maps = detector.anomaly_map(X) if maps_dir is not None else [None] * len(chunk)
        for i, (f, s, m) in enumerate(zip(chunk, scores, maps)):
            row = {"path": str(f), "score": float(s), "label": int(s >= detector.threshold_),
                   "threshold": detector.threshold_}
            if m is not None:
                row["map"] = str(maps_dir / f"{start + i:06d}_{f.stem}.png")
                _save_map(m, scale, Path(row["map"]))
            rows.append(row)
    table = pd.DataFrame(rows)
    if csv is not None:
        _atomic_write_text(Path(csv), table.to_csv(index=False))
    return table
