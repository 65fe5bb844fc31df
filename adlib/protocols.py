"""Evaluation protocols shared by every method of the book.

* :func:`one_class` -- normal class ``k``; train = the train-split images of ``k``; test = the
  whole test split with label 1 for every other class (thesis Table 4.1, Deep SVDD). A validation
  split is held out from the training normals only: it never holds a real anomaly.
* :func:`contaminated` -- the same, but the training set mixes in a given ratio of anomalies drawn
  from the other classes' training images (G2D, IWAD); the validation split stays clean.
* :func:`development_split` -- for choosing a method's hyperparameters without test labels:
  the split's test set is replaced by its held-out normals and other classes' *training* images.
* :func:`anomaly_class` -- ADNL's protocol (section 4.4): one class is the anomaly, the rest
  are normal; train and test pooled and re-split 8:2; a few labelled anomalies for training.
* :func:`outlier_ratio_test` -- a test set whose anomalies make a chosen share of it (G2D's MNIST
  protocol, section 4.2).
* :func:`transfer` -- IWAD's protocol (section 4.1): normals of a source dataset, an unlabelled
  mixture of a target dataset at a given anomaly rate, a target test set at the same rate.
* :func:`caltech_outliers` -- G2D's Caltech-256 protocol (section 4.2, Table 2): ``n`` random
  categories are the inliers, ``257.clutter`` the outliers.

Preprocessing (size, channels, value range) is a :class:`Preprocess` option of the protocol,
never a copy inside a model. Everything is seeded: the same seed gives the same split.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from .data import (CALTECH_CLUTTER, DataError, ImageSet, caltech256_categories, load_caltech256,
                   load_dataset)

__all__ = ["Preprocess", "OneClassSplit", "one_class", "contaminated", "outlier_ratio_test",
           "outlier_ratio_indices", "development_split", "SELECTIONS", "paper_selection",
           "anomaly_class", "caltech_outliers",
           "TransferSplit", "transfer", "resolve_classes"]


@dataclass(frozen=True)
class Preprocess:
    """How images become model input.

    Attributes:
        size: output side in pixels (``None`` keeps the native size); resized bilinearly.
        channels: 1 or 3 (``None`` keeps the native count); grey is repeated, RGB averaged.
        scale: ``"01"`` for [0, 1] or ``"pm1"`` for [-1, 1] (tanh decoders).
    """

    size: int | None = None
    channels: int | None = None
    scale: str = "01"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Turn uint8 ``N x C x H x W`` images into float32 model input."""
        if self.scale not in ("01", "pm1"):
            raise ValueError(f"unknown scale {self.scale!r}: use '01' or 'pm1'")
        x = images.float().div_(255.0)
        if self.channels is not None and x.shape[1] != self.channels:
            if self.channels == 3 and x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            elif self.channels == 1 and x.shape[1] == 3:
                x = x.mean(dim=1, keepdim=True)
            else:
                raise ValueError(f"cannot turn {x.shape[1]} channels into {self.channels}")
        if self.size is not None and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False).clamp_(0, 1)
        if self.scale == "pm1":
            x = x.mul_(2).sub_(1)
        return x


@dataclass
class OneClassSplit:
    """The arrays of one protocol instance; ``y_test`` is 1 for an anomaly.

    ``info`` records how the split was made (dataset, normal class, seed, sizes, source), so a
    results row can say exactly which images formed train, validation and test.
    """

    X_train: torch.Tensor
    X_val: torch.Tensor
    X_test: torch.Tensor
    y_test: np.ndarray
    normal_class: int
    classes: list[str]
    test_classes: np.ndarray
    y_train: np.ndarray = None
    info: dict = field(default_factory=dict)
    #: labelled anomalies a few-shot method may train on (:func:`anomaly_class`); else None
    X_anomalies: torch.Tensor | None = None
    #: real anomalies for choosing the epoch (:func:`paper_selection`; training images of the
    #: other classes, never a test image) and their indices in the training set; else None
    X_val_anomalies: torch.Tensor | None = None
    val_anomaly_index: np.ndarray | None = None


def resolve_classes(classes, num_classes: int = 10) -> list[int]:
    """Turn ``"all"``, an int or a list of ints into a list of valid class indices."""
    if classes in (None, "all", ["all"]):
        return list(range(num_classes))
    if isinstance(classes, (int, np.integer)):
        classes = [classes]
    out = []
    for c in classes:
        c = int(c)
        if not 0 <= c < num_classes:
            raise DataError(f"unknown class {c}: this dataset has classes 0..{num_classes - 1}")
        out.append(c)
    return out


def _subsample(idx: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    if n is None or n >= len(idx):
        return idx
    return np.sort(rng.choice(idx, size=n, replace=False))


def _load(dataset, split, root, verify=True):
    return dataset if isinstance(dataset, ImageSet) else load_dataset(dataset, split, root=root,
                                                                      verify=verify)


def one_class(dataset: str, normal_class: int, seed: int = 0, *, val_size: int | float = 0.1,
              preprocess: Preprocess = Preprocess(), max_train: int | None = None,
              max_test: int | None = None, root=None, verify: bool = True,
              train_set: ImageSet | None = None,
              test_set: ImageSet | None = None) -> OneClassSplit:
    """The one-class protocol: normal class ``normal_class`` against all other classes.

    Args:
        dataset: a name of :data:`adlib.data.DATASETS`.
        normal_class: index of the normal class.
        seed: seeds the validation hold-out and any subsampling.
        val_size: share (float < 1) or number (int) of training normals held out for validation.
        preprocess: how images become model input.
        max_train: keep at most this many training normals (quick mode); ``None`` keeps all.
        max_test: keep at most this many test images, stratified by normal/anomaly.
        root, verify: passed to :func:`adlib.data.load_dataset`.
        train_set, test_set: already-loaded :class:`ImageSet` objects (skip loading).

    Raises:
        DataError: unknown class, or no training image of the normal class.
    """
    train = train_set if train_set is not None else _load(dataset, "train", root, verify)
    test = test_set if test_set is not None else _load(dataset, "test", root, verify)
    (normal_class,) = resolve_classes([normal_class], len(train.classes))
    rng = np.random.default_rng(seed)
    labels = train.labels.numpy()
    normal_idx = np.flatnonzero(labels == normal_class)
    if len(normal_idx) == 0:
        raise DataError(f"the training split has no image of class {normal_class}: empty "
                        "training set")
    n_val = int(round(val_size * len(normal_idx))) if isinstance(val_size, float) else val_size
    if not 0 <= n_val < len(normal_idx):
        raise DataError(f"val_size={val_size} leaves no training image ({len(normal_idx)} normals)")
    perm = rng.permutation(normal_idx)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    train_idx = _subsample(train_idx, max_train, rng)
    test_labels = test.labels.numpy()
    y_all = (test_labels != normal_class).astype(np.int64)
    test_idx = np.arange(len(y_all))
    if max_test is not None and max_test < len(test_idx):
        if max_test < 2:
            raise DataError(f"max_test={max_test} must keep at least one normal and one anomaly")
        n_anom = int(round(max_test * y_all.mean()))
        n_anom = min(max(n_anom, 1), max_test - 1)
        test_idx = np.sort(np.concatenate([
            _subsample(np.flatnonzero(y_all == 0), max_test - n_anom, rng),
            _subsample(np.flatnonzero(y_all == 1), n_anom, rng)]))
    info = {"dataset": dataset if isinstance(dataset, str) else "custom", "protocol": "one_class",
            "normal_class": normal_class, "seed": seed, "n_train": len(train_idx),
            "n_val": len(val_idx), "n_test": len(test_idx),
            "n_test_anomalies": int(y_all[test_idx].sum()), "preprocess": asdict(preprocess),
            "source": train.source, "max_train": max_train, "max_test": max_test}
    return OneClassSplit(
        X_train=preprocess(train.images[train_idx]), X_val=preprocess(train.images[val_idx]),
        X_test=preprocess(test.images[test_idx]), y_test=y_all[test_idx],
        normal_class=normal_class, classes=list(train.classes),
        test_classes=test_labels[test_idx], y_train=np.zeros(len(train_idx), dtype=np.int64),
        info=info)


def development_split(split: OneClassSplit, train_set: ImageSet, n_anomalies: int = 2000,
                      seed: int = 0, preprocess: Preprocess = Preprocess()) -> OneClassSplit:
    """The same split evaluated on a development set drawn from the *training* split only.

    The test set becomes the held-out validation normals (label 0) and ``n_anomalies`` training
    images of the other classes (label 1, seeded). Training data are unchanged, so the detector
    is trained exactly as in the real run. Used to choose a hyperparameter once for a whole
    benchmark (for example ALPS' latent size) without ever reading a test label; the test split
    is not touched. Not a one-class protocol: it uses labels of other classes' training images.
    """
    if split.info.get("protocol") == "anomaly_class":
        raise ValueError("an anomaly_class split's normal_class is its anomaly: build its "
                         "development split with anomaly_class(..., development=True)")
    labels = train_set.labels.numpy()
    others = np.flatnonzero(labels != split.normal_class)
    if split.val_anomaly_index is not None:  # the selection's anomalies never evaluate
        others = np.setdiff1d(others, split.val_anomaly_index)
    if len(others) == 0 or len(split.X_val) == 0:
        raise DataError("a development split needs held-out normals and other classes' images")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(others, size=min(n_anomalies, len(others)), replace=False))
    X_test = torch.cat([split.X_val, preprocess(train_set.images[pick])])
    y_test = np.r_[np.zeros(len(split.X_val), np.int64), np.ones(len(pick), np.int64)]
    info = {**split.info, "evaluated_on": "development split: validation normals and other "
            "classes' training images (no test image)", "n_test": len(y_test),
            "n_test_anomalies": int(len(pick))}
    return replace(split, X_test=X_test, y_test=y_test, info=info,
                   test_classes=np.r_[np.full(len(split.X_val), split.normal_class),
                                      labels[pick]])


#: The selection protocols: ``clean`` (no real anomaly before the test: the epoch is chosen on
#: held-out normals, or on made anomalies of them) and ``paper`` (:func:`paper_selection`).
SELECTIONS = ("clean", "paper")


def paper_selection(split: OneClassSplit, train_set: ImageSet, n: int = 150, seed: int = 0,
                    preprocess: Preprocess = Preprocess()) -> OneClassSplit:
    """The split with a validation set that holds real anomalies, as the thesis selects ALPS'
    epoch: "150 samples from inliers and 150 samples from the training set" (section 3.4.2).

    ``X_val_anomalies`` gets ``n`` images drawn (seeded) from the *training* split of the other
    classes, never a test image; the detector pairs them with ``n`` of its held-out normals.
    This is the ``paper`` protocol: a real anomaly is seen before the test, so its numbers are
    not one-class numbers; :func:`development_split` leaves these images out of its
    evaluation.

    Raises:
        DataError: fewer than ``n`` images of other classes, or ``n < 1``.
    """
    others = np.flatnonzero(train_set.labels.numpy() != split.normal_class)
    if n < 1 or len(others) < n:
        raise DataError(f"paper selection needs {n} training images of other classes; "
                        f"{len(others)} exist")
    rng = np.random.default_rng([seed, 150])
    pick = np.sort(rng.choice(others, size=n, replace=False))
    info = {**split.info, "selection": "paper", "n_val_anomalies": n}
    return replace(split, X_val_anomalies=preprocess(train_set.images[pick]),
                   val_anomaly_index=pick, info=info)


def contaminated(dataset: str, normal_class: int, outlier_ratio: float, seed: int = 0,
                 **kwargs) -> OneClassSplit:
    """One-class split whose training set holds a share ``outlier_ratio`` of anomalies.

    The anomalies are drawn (seeded) from the other classes' training images and added to the
    training normals so that they make ``outlier_ratio`` of the training set; ``y_train`` marks
    them (for analysis only: an unsupervised method must not read it). Validation stays clean.
    """
    if not 0 <= outlier_ratio < 1:
        raise ValueError(f"outlier_ratio={outlier_ratio} must lie in [0, 1)")
    preprocess = kwargs.get("preprocess", Preprocess())
    train = kwargs.pop("train_set", None)
    if train is None:
        train = _load(dataset, "train", kwargs.get("root"), kwargs.get("verify", True))
    split = one_class(dataset, normal_class, seed, train_set=train, **kwargs)
    rng = np.random.default_rng(seed + 7919)
    n_out = int(round(outlier_ratio * len(split.X_train) / (1 - outlier_ratio)))
    other = np.flatnonzero(train.labels.numpy() != split.normal_class)
    out_idx = np.sort(rng.choice(other, size=n_out, replace=False))
    split.X_train = torch.cat([split.X_train, preprocess(train.images[out_idx])])
    split.y_train = np.concatenate([split.y_train, np.ones(n_out, dtype=np.int64)])
    split.info.update(protocol="contaminated", outlier_ratio=outlier_ratio,
                      n_train=len(split.X_train), n_train_anomalies=n_out)
    return split


def outlier_ratio_indices(y_test: np.ndarray, ratio: float, seed: int = 0) -> np.ndarray:
    """Indices of a test subset where anomalies (``y_test == 1``) make ``ratio`` of it.

    All normals are kept; anomalies are drawn without replacement, seeded.
    """
    if not 0 < ratio < 1:
        raise ValueError(f"ratio={ratio} must lie in (0, 1)")
    rng = np.random.default_rng(seed)
    normals = np.flatnonzero(y_test == 0)
    anomalies = np.flatnonzero(y_test == 1)
    n_anom = int(round(ratio * len(normals) / (1 - ratio)))
    if n_anom > len(anomalies):
        raise DataError(f"only {len(anomalies)} test anomalies for ratio {ratio}")
    return np.sort(np.concatenate([normals, rng.choice(anomalies, n_anom, replace=False)]))


def outlier_ratio_test(split: OneClassSplit, ratio: float, seed: int = 0) -> OneClassSplit:
    """Subsample the test anomalies of ``split`` so that they make ``ratio`` of the test set.

    All test normals are kept; anomalies are drawn (seeded) from the other classes
    (G2D section 4.2 uses 10% to 50%).
    """
    keep = outlier_ratio_indices(split.y_test, ratio, seed)
    info = dict(split.info, test_outlier_ratio=ratio, n_test=len(keep),
                n_test_anomalies=int(split.y_test[keep].sum()))
    return OneClassSplit(split.X_train, split.X_val, split.X_test[keep], split.y_test[keep],
                         split.normal_class, split.classes, split.test_classes[keep],
                         split.y_train, info)


@dataclass
class TransferSplit:
    """One instance of the transfer protocol; ``y_target`` and ``y_test`` are 1 for an anomaly.

    ``y_target`` labels the unlabelled target mixture for figures and for the
    target-normals reference only: a transfer method must not read it.
    """

    X_source: torch.Tensor
    X_val: torch.Tensor
    X_target: torch.Tensor
    y_target: np.ndarray
    X_test: torch.Tensor
    y_test: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def X_target_normals(self) -> torch.Tensor:
        """The target mixture's normals (the semi-supervised reference of IWAD Table 1)."""
        return self.X_target[torch.from_numpy(self.y_target == 0)]


def transfer(source: str, target: str, anomaly_rate: float, seed: int = 0, *,
             normal_class: int = 0, val_size: int | float = 0.1,
             preprocess: Preprocess = Preprocess(), max_source: int | None = None,
             max_target: int | None = None, max_test: int | None = None, root=None,
             verify: bool = True, sets: dict | None = None) -> TransferSplit:
    """IWAD's transfer protocol (Fan et al., section 4.1).

    The source gives only normals (class ``normal_class``; ``val_size`` of them held out for
    validation). The target gives an unlabelled training mixture: all its training normals and
    other classes' training images making ``anomaly_rate`` of it. The test set is the target's
    test split with all its normals and anomalies at the same rate. Everything is seeded.

    Args:
        source, target: dataset names (for example ``"mnist"`` and ``"usps"``).
        anomaly_rate: the anomalies' share of the target mixture and test set, in (0, 1).
        preprocess: applied to both domains (IWAD: 28 x 28, three channels).
        max_source, max_target: cap the source normals and the target normals (quick mode).
        max_test: cap the test set (its anomaly rate is kept).
        sets: already-loaded sets, ``{(name, "train"): ImageSet, ...}`` (skip loading).

    Raises:
        ValueError: ``anomaly_rate`` outside (0, 1). DataError: a dataset without the class.
    """
    if not 0 < anomaly_rate < 1:
        raise ValueError(f"anomaly_rate={anomaly_rate} must lie in (0, 1); IWAD uses 0.05-0.45")
    sets = sets or {}

    def load(name, part):
        found = sets.get((name, part))
        return found if found is not None else _load(name, part, root, verify)

    src = one_class(source, normal_class, seed, val_size=val_size, preprocess=preprocess,
                    max_train=max_source, train_set=load(source, "train"),
                    test_set=load(source, "test"))
    tgt = contaminated(target, normal_class, anomaly_rate, seed, val_size=0,
                       preprocess=preprocess, max_train=max_target,
                       train_set=load(target, "train"), test_set=load(target, "test"))
    keep = outlier_ratio_indices(tgt.y_test, anomaly_rate, seed)
    if max_test is not None and max_test < len(keep):
        rng = np.random.default_rng(seed + 1)
        y = tgt.y_test[keep]
        n_anom = max(1, int(round(max_test * anomaly_rate)))
        keep = np.sort(np.concatenate([_subsample(keep[y == 0], max_test - n_anom, rng),
                                       _subsample(keep[y == 1], n_anom, rng)]))
    info = {"protocol": "transfer", "source": source, "target": target,
            "anomaly_rate": anomaly_rate, "normal_class": normal_class, "seed": seed,
            "n_source": len(src.X_train), "n_val": len(src.X_val),
            "n_target": len(tgt.X_train), "n_target_anomalies": int(tgt.y_train.sum()),
            "n_test": len(keep), "n_test_anomalies": int(tgt.y_test[keep].sum()),
            "preprocess": asdict(preprocess), "source_data": src.info["source"],
            "target_data": tgt.info["source"], "max_source": max_source,
            "max_target": max_target, "max_test": max_test}
    return TransferSplit(X_source=src.X_train, X_val=src.X_val, X_target=tgt.X_train,
                         y_target=tgt.y_train, X_test=tgt.X_test[keep], y_test=tgt.y_test[keep],
                         info=info)


def anomaly_class(dataset: str, anomaly: int, seed: int = 0, *,
                  n_labelled: int | str | None = "all", test_anomaly: int | None = None,
                  train_share: float = 0.8, val_size: float = 0.1, size: int | None = None,
                  development: bool = False, dev_share: float = 0.2,
                  preprocess: Preprocess = Preprocess(), max_train: int | None = None,
                  max_test: int | None = None, root=None, verify: bool = True,
                  train_set: ImageSet | None = None,
                  test_set: ImageSet | None = None) -> OneClassSplit:
    """ADNL's protocol (section 4.4): class ``anomaly`` is abnormal, every other class normal.

    The dataset's train and test splits are pooled and re-split ``train_share`` : rest (8:2),
    stratified by class and seeded. Training normals are the normal classes' training part (a
    share ``val_size`` held out for validation); ``X_anomalies`` holds ``n_labelled`` training
    images of the anomaly class: ``"all"`` (or ``None``, the default) labels every one of them,
    the paper's protocol (its 10 : 1 ratio of normal to abnormal data); an integer labels that
    many (the book's few-shot extension); 0 none (the unsupervised baseline). The test set is
    the held-out part of the normal classes and of the test anomaly class. ``size`` resizes the
    input (the paper's 64 x 64; ``None`` keeps ``preprocess``'s).

    ``test_anomaly`` tests on *another* class than the one learned from (the unseen-anomaly
    question the paper raises): that class then leaves the normal data too, and
    ``info["test_anomaly"]`` says so. ``normal_class`` of the split holds the anomaly class.

    ``development=True`` evaluates on training images only, for choosing a budget without a
    test label: a share ``dev_share`` of the anomaly class's training images is held out of the
    labelled pool, and the test set becomes the validation normals (label 0) and those held-out
    images (label 1; the unseen class's training images when ``test_anomaly`` differs).

    Raises:
        DataError: ``n_labelled`` above the anomaly class's training images, or no normal
            class left.
        ValueError: ``n_labelled`` neither a count nor ``"all"``; a share outside (0, 1).
    """
    if n_labelled is None or n_labelled == "all":
        n_labelled = None
    elif not isinstance(n_labelled, int) or isinstance(n_labelled, bool) or n_labelled < 0:
        raise ValueError(f"n_labelled={n_labelled!r}: give a count >= 0 or 'all'")
    if size is not None:
        preprocess = replace(preprocess, size=int(size))
    train = train_set if train_set is not None else _load(dataset, "train", root, verify)
    test = test_set if test_set is not None else _load(dataset, "test", root, verify)
    n_classes = len(train.classes)
    (anomaly,) = resolve_classes([anomaly], n_classes)
    unseen = anomaly if test_anomaly is None else resolve_classes([test_anomaly], n_classes)[0]
    for name, share in (("train_share", train_share), ("dev_share", dev_share)):
        if not 0 < share < 1:
            raise ValueError(f"{name}={share} must lie in (0, 1)")
    images = torch.cat([train.images, test.images])
    labels = np.concatenate([train.labels.numpy(), test.labels.numpy()])
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = int(round(train_share * len(idx)))
        train_idx.append(idx[:cut])
        test_idx.append(idx[cut:])
    abnormal = {anomaly, unseen}
    normal_train = np.concatenate([t for c, t in enumerate(train_idx) if c not in abnormal])
    if len(normal_train) == 0:
        raise DataError("no normal training image: the dataset needs a class besides "
                        f"{sorted(abnormal)}")
    normal_train = rng.permutation(normal_train)
    n_val = int(round(val_size * len(normal_train)))
    val, fit = np.sort(normal_train[:n_val]), np.sort(normal_train[n_val:])
    fit = _subsample(fit, max_train, rng)
    pool = train_idx[anomaly]
    if development:  # the held-out share of the anomaly class never trains
        n_dev = int(round(dev_share * len(pool)))
        dev_anomalies, pool = np.sort(pool[:n_dev]), pool[n_dev:]
        if unseen != anomaly:
            dev_anomalies = np.sort(train_idx[unseen])
    if n_labelled is not None and n_labelled > len(pool):
        raise DataError(f"n_labelled={n_labelled} but class {anomaly} has only {len(pool)} "
                        "training images" + (" outside the development share"
                                             if development else ""))
    labelled = np.sort(pool if n_labelled is None else rng.permutation(pool)[:n_labelled])
    if development:  # validation normals against held-out training images of the class
        test_all = np.r_[val, dev_anomalies]
    else:
        test_all = np.sort(np.concatenate([t for c, t in enumerate(test_idx)
                                           if c not in abnormal or c == unseen]))
    y_all = (labels[test_all] == unseen).astype(np.int64)
    if max_test is not None and max_test < len(test_all):
        n_anom = min(max(int(round(max_test * y_all.mean())), 1), max_test - 1)
        keep = np.sort(np.concatenate([
            _subsample(np.flatnonzero(y_all == 0), max_test - n_anom, rng),
            _subsample(np.flatnonzero(y_all == 1), n_anom, rng)]))
        test_all, y_all = test_all[keep], y_all[keep]
    info = {"dataset": dataset if isinstance(dataset, str) else "custom",
            "protocol": "anomaly_class", "anomaly_class": anomaly, "test_anomaly": unseen,
            "seed": seed, "train_share": train_share, "n_train": len(fit), "n_val": len(val),
            "n_labelled": len(labelled), "n_test": len(test_all),
            "n_test_anomalies": int(y_all.sum()), "preprocess": asdict(preprocess),
            "source": train.source}
    if development:
        info["evaluated_on"] = ("development split: validation normals and held-out training "
                                "images of the anomaly class (no test image)")
    return OneClassSplit(
        X_train=preprocess(images[fit]), X_val=preprocess(images[val]),
        X_test=preprocess(images[test_all]), y_test=y_all, normal_class=anomaly,
        classes=list(train.classes), test_classes=labels[test_all],
        y_train=np.zeros(len(fit), dtype=np.int64), info=info,
        X_anomalies=preprocess(images[labelled]) if len(labelled) else None)


def caltech_outliers(n_inliers: int, seed: int = 0, *, per_category: int = 150,
                     outlier_share: float = 0.5, test_share: float = 0.5, val_size: float = 0.1,
                     side: int = 64, preprocess: Preprocess = Preprocess(),
                     root=None) -> OneClassSplit:
    """G2D's Caltech-256 protocol (section 4.2, Table 2, after ALOCC).

    ``n_inliers`` categories (seeded, among the 256 object categories) are the inliers, the
    first ``per_category`` images of each; outliers are drawn at random from ``257.clutter`` so
    that they make ``outlier_share`` (50%) of the test set. The paper says neither how inliers
    are split between training and test nor where a one-class detector learns; our choice: a
    seeded ``test_share`` of the inlier images is tested, the rest trains (``val_size`` of it
    held out for validation). The paper repeats each ``n`` three times: seeds 0, 1, 2.

    Raises:
        DataError: no Caltech-256 folder or no ``257.clutter``, too few inlier images, or fewer
            clutter images than the outlier share needs.
    """
    if n_inliers < 1:
        raise ValueError(f"n_inliers={n_inliers} must be at least 1")
    if not (0 < outlier_share < 1 and 0 < test_share < 1):
        raise ValueError("outlier_share and test_share must lie in (0, 1)")
    names = caltech256_categories(root)
    if CALTECH_CLUTTER not in names:
        raise DataError(f"Caltech-256 has no {CALTECH_CLUTTER} folder: the outliers come from it")
    clutter_idx = names.index(CALTECH_CLUTTER)
    objects = [i for i in range(len(names)) if i != clutter_idx]
    if n_inliers > len(objects):
        raise ValueError(f"n_inliers={n_inliers}, but there are {len(objects)} object categories")
    rng = np.random.default_rng(seed)
    categories = sorted(rng.choice(objects, size=n_inliers, replace=False).tolist())
    inliers = load_caltech256(categories, per_category, root=root, side=side)
    clutter = load_caltech256([clutter_idx], None, root=root, side=side)
    if len(inliers.labels) < 3:
        raise DataError(f"categories {categories} hold {len(inliers.labels)} images: too few "
                        "to split")
    perm = rng.permutation(len(inliers.labels))
    n_test = max(1, int(round(test_share * len(perm))))
    test_in, rest = np.sort(perm[:n_test]), perm[n_test:]
    n_val = int(round(val_size * len(rest)))
    val_idx, train_idx = np.sort(rest[:n_val]), np.sort(rest[n_val:])
    n_out = int(round(n_test * outlier_share / (1 - outlier_share)))
    if n_out > len(clutter.labels):
        raise DataError(f"{n_out} outliers asked for, but 257.clutter holds {len(clutter.labels)}")
    out_idx = np.sort(rng.choice(len(clutter.labels), size=n_out, replace=False))
    X_test = torch.cat([preprocess(inliers.images[test_in]), preprocess(clutter.images[out_idx])])
    y_test = np.r_[np.zeros(len(test_in), np.int64), np.ones(n_out, np.int64)]
    info = {"dataset": "caltech256", "protocol": "caltech_outliers",
            "inliers": [names[c] for c in categories],
            "seed": seed, "n_train": len(train_idx), "n_val": len(val_idx),
            "n_test": len(y_test), "n_test_anomalies": n_out, "per_category": per_category,
            "preprocess": asdict(preprocess), "source": inliers.source}
    return OneClassSplit(
        X_train=preprocess(inliers.images[train_idx]), X_val=preprocess(inliers.images[val_idx]),
        X_test=X_test, y_test=y_test, normal_class=categories[0] if n_inliers == 1 else -1,
        classes=list(inliers.classes),
        test_classes=np.r_[inliers.labels.numpy()[test_in], clutter.labels.numpy()[out_idx]],
        y_train=np.zeros(len(train_idx), dtype=np.int64), info=info)
