"""Shared fixtures: an isolated cache folder, and small datasets generated in their real on-disk
formats (IDX .gz, optionally with torchvision's extracted copies, CIFAR-10 pickles, CIFAR10-JPEG
ImageFolder, USPS libsvm .bz2 and HDF5).

Generated files never match the published digests: a generated folder whose file list is exactly
a published copy's (the IDX ``.gz`` files alone, ``usps.h5`` alone) fails the digest check. Any
other layout is structure-checked, which with ``verify=True`` includes the official counts
(60000 MNIST training images, ...): a tiny generated copy is a partial copy and is refused. So
tests of decoding call the loaders with ``verify=False``; a test of the structure check itself
sets the official counts to the generated sizes (``monkeypatch.setitem(data.OFFICIAL_COUNTS,
...)``, ``data.CIFAR_JPEG_PER_CLASS``, ``data.UCSD_PED2_FRAMES``) and loads with ``verify=True``.
Each generator returns the root folder and the exact arrays it wrote, so tests can compare the
decoded values pixel by pixel.
"""
from __future__ import annotations

import bz2
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from adlib.data import CIFAR10_CLASSES, ImageSet

# The machine running the suite is shared: one thread keeps the tiny models fast and steady.
torch.set_num_threads(1)


def real_data_root() -> Path:
    """The offline data folder: ``$ADLIB_DATA``, else ``../shared/data`` beside the checkout."""
    env = os.environ.get("ADLIB_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own ADLIB_CACHE, so nothing is written into the checkout's cache."""
    cache = tmp_path_factory.mktemp("adlib-cache")
    monkeypatch.setenv("ADLIB_CACHE", str(cache))
    return cache


@dataclass
class Generated:
    """A generated dataset: its data root and the arrays written, by split."""

    root: Path
    images: dict  # split -> uint8 array N x C x H x W (as written)
    labels: dict  # split -> int64 array N (0-based)


# --------------------------------------------------------------------------- IDX (MNIST-like)

def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array of 1 or 3 dimensions as an IDX file (big-endian header)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = {1: 2049, 3: 2051}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx_dataset(root: Path, folder: str, n_train: int = 30, n_test: int = 20,
                      side: int = 28, seed: int = 0, extracted: bool = False,
                      gz: bool = True) -> Generated:
    """Write ``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``; with
    ``extracted``, also torchvision's uncompressed copies beside them (``...-ubyte``); without
    ``gz``, only those."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    images, labels = {}, {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        img = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        lbl = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(lbl)
        for part, array in (("images-idx3", img), ("labels-idx1", lbl)):
            name = raw / f"{prefix}-{part}-ubyte"
            if gz:
                with gzip.open(f"{name}.gz", "wb") as f:
                    f.write(idx_bytes(array))
            if extracted:
                name.write_bytes(idx_bytes(array))
        images[split] = img[:, None]
        labels[split] = lbl.astype(np.int64)
    return Generated(root, images, labels)


@pytest.fixture
def mnist_root(tmp_path) -> Generated:
    return write_idx_dataset(tmp_path / "data", "MNIST", seed=1)


@pytest.fixture
def fashion_root(tmp_path) -> Generated:
    return write_idx_dataset(tmp_path / "data", "FashionMNIST", seed=2)


# --------------------------------------------------------------------------- CIFAR-10 pickles

@pytest.fixture
def cifar_pickle_root(tmp_path) -> Generated:
    """``<root>/cifar-10-batches-py/data_batch_1..5`` (3 images each) and ``test_batch`` (4)."""
    rng = np.random.default_rng(3)
    root = tmp_path / "data"
    batch_dir = root / "cifar-10-batches-py"
    batch_dir.mkdir(parents=True)
    train_data, train_labels = [], []
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    test = None
    for name in names:
        n = 4 if name == "test_batch" else 3
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(batch_dir / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels,
                         "filenames": [f"{name}_{i}.png" for i in range(n)]}, f)
        if name == "test_batch":
            test = (data, labels)
        else:
            train_data.append(data)
            train_labels += labels
    return Generated(root,
                     {"train": np.concatenate(train_data).reshape(-1, 3, 32, 32),
                      "test": test[0].reshape(-1, 3, 32, 32)},
                     {"train": np.array(train_labels, dtype=np.int64),
                      "test": np.array(test[1], dtype=np.int64)})


# --------------------------------------------------------------------------- CIFAR10-JPEG

#: solid colours per class (JPEG keeps flat colours within a few grey levels)
JPEG_COLOURS = [(10 + 20 * c, 200 - 15 * c, (40 * c) % 256) for c in range(10)]


@pytest.fixture
def cifar_jpeg_root(tmp_path) -> Generated:
    """``<root>/CIFAR10-JPEG/{train,test}/<class>/NNNN.jpg``: 2 train and 1 test image per
    class, each a flat colour (train image 0001 is a little brighter than 0000)."""
    from PIL import Image

    root = tmp_path / "data"
    images, labels = {"train": [], "test": []}, {"train": [], "test": []}
    for split, per_class in (("train", 2), ("test", 1)):
        for label, name in enumerate(CIFAR10_CLASSES):
            folder = root / "CIFAR10-JPEG" / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                colour = tuple(min(255, v + 30 * i) for v in JPEG_COLOURS[label])
                arr = np.empty((32, 32, 3), dtype=np.uint8)
                arr[:] = colour
                Image.fromarray(arr, "RGB").save(folder / f"{i:04d}.jpg", quality=95)
                images[split].append(arr.transpose(2, 0, 1))
                labels[split].append(label)
    return Generated(root, {k: np.stack(v) for k, v in images.items()},
                     {k: np.array(v, dtype=np.int64) for k, v in labels.items()})


# --------------------------------------------------------------------------- USPS

#: libsvm values and the uint8 grey level each must decode to ((v + 1) / 2 * 255)
USPS_VALUES = {-1.0: 0, 1.0: 255, 0.6: 204, -0.6: 51}


def usps_line(label_1_based: int, values: np.ndarray) -> str:
    items = " ".join(f"{i}:{v:g}" for i, v in enumerate(values, 1))
    return f"{label_1_based} {items}\n"


@pytest.fixture
def usps_bz2_root(tmp_path) -> Generated:
    """torchvision's ``usps.bz2`` and ``usps.t.bz2``: labels 1..10, 256 values in [-1, 1]."""
    rng = np.random.default_rng(4)
    folder = tmp_path / "data" / "USPS"
    folder.mkdir(parents=True)
    keys = np.array(list(USPS_VALUES))
    grey = np.array([USPS_VALUES[k] for k in keys], dtype=np.uint8)
    images, labels = {}, {}
    for split, name, n in (("train", "usps.bz2", 12), ("test", "usps.t.bz2", 5)):
        choice = rng.integers(0, len(keys), size=(n, 256))
        choice[0] = 0  # first image all -1 (black)
        choice[1] = 1  # second image all +1 (white)
        lbl = np.arange(n) % 10 + 1  # 1, 2, ..., 10, 1, ...: label 10 is digit 9
        with bz2.open(folder / name, "wt") as f:
            for row, y in zip(choice, lbl):
                f.write(usps_line(int(y), keys[row]))
        images[split] = grey[choice].reshape(n, 1, 16, 16)
        labels[split] = (lbl - 1).astype(np.int64)
    return Generated(tmp_path / "data", images, labels)


@pytest.fixture
def usps_h5_root(tmp_path) -> Generated:
    """The HDF5 repackaging ``usps.h5``: train/data N x 256 float32 in [0, 1], train/target."""
    import h5py

    rng = np.random.default_rng(5)
    folder = tmp_path / "data" / "USPS"
    folder.mkdir(parents=True)
    images, labels = {}, {}
    with h5py.File(folder / "usps.h5", "w") as f:
        for split, n in (("train", 15), ("test", 7)):
            grey = rng.integers(0, 256, size=(n, 256), dtype=np.uint8)
            target = (np.arange(n) % 10).astype(np.int32)
            f.create_dataset(f"{split}/data", data=grey.astype(np.float32) / 255.0)
            f.create_dataset(f"{split}/target", data=target)
            images[split] = grey.reshape(n, 1, 16, 16)
            labels[split] = target.astype(np.int64)
    return Generated(tmp_path / "data", images, labels)


# --------------------------------------------------------------------------- in-memory sets

def encoded_image_set(n: int, side: int = 8, channels: int = 1, labels=None,
                      offset: int = 0) -> ImageSet:
    """``n`` unique uint8 images: pixel (0, 0) and (0, 1) hold the index ``offset + i`` in base
    256, the rest is constant per image; labels default to ``i % 10``."""
    idx = np.arange(offset, offset + n)
    images = np.zeros((n, channels, side, side), dtype=np.uint8)
    images[:, :, 2:, :] = (idx % 7 * 30 + 20)[:, None, None, None]
    images[:, :, 0, 0] = (idx // 256)[:, None]
    images[:, :, 0, 1] = (idx % 256)[:, None]
    labels = np.arange(n) % 10 if labels is None else np.asarray(labels)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)),
                    [str(d) for d in range(10)], "generated in memory")


def decode_index(x: torch.Tensor) -> np.ndarray:
    """Recover the indices written by :func:`encoded_image_set` from images scaled to [0, 1]."""
    v = torch.round(x[:, 0, 0, :2] * 255).long().numpy()
    return v[:, 0] * 256 + v[:, 1]
