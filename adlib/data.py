"""Finding, checking, decoding and caching the image datasets of the book.

One place finds a dataset (:func:`find_dataset`): an explicit ``root`` argument, else the
``ADLIB_DATA`` environment variable, else a user cache folder where torchvision downloads the
official release (only when ``download=True``; tests and CI never download).

Offline copies (``../shared/data``) are checked once against their *tree digest*: the SHA-256 of
the text ``"<sha256 of file>  <folder>/<relative path>\\n"`` over every file, sorted bytewise by
path. A match is remembered in the cache folder (keyed by the folder's path and a stat signature),
so later loads only stat the files. Decoded images are cached as uint8 tensors in the cache folder
(never in the data folder), keyed by the same digest.

Every loader returns an :class:`ImageSet`: ``images`` as uint8 ``N x C x H x W`` and ``labels``
as int64, plus the class names and a one-line description of the source.

Supported on-disk forms:

* MNIST, Fashion-MNIST: the IDX ``.gz`` files under ``<Folder>/raw/`` (torchvision's layout),
  decoded directly (torchvision would extract next to them, a write into the data folder).
* CIFAR-10: torchvision's pickled batches (``cifar-10-batches-py/``) or the JPEG ImageFolder copy
  ``CIFAR10-JPEG/{train,test}/<class>/NNNN.jpg`` (lossy; results on it must say so).
* USPS: torchvision's ``usps.bz2`` / ``usps.t.bz2`` (libsvm text) or the HDF5 ``USPS/usps.h5``.
* GTSRB, Caltech-256: torchvision's layouts (not in the offline data; tested on generated files).
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DataError", "ImageSet", "DATASETS", "data_root", "cache_dir", "find_dataset",
    "tree_digest", "verify_tree", "load_dataset", "load_mnist", "load_fashion_mnist",
    "load_cifar10", "load_usps", "load_gtsrb", "GTSRB_STOP", "load_caltech256",
    "caltech256_categories", "CALTECH_CLUTTER",
]

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]

#: Tree digests of the offline copies (``../shared/data/README.md``, section "Checksums").
TREE_DIGESTS = {
    "MNIST": "1c6dcf2b31883f2d39aeeb87dd803f2aa86ba91f28fdca933a90a7c90be1aa43",
    "FashionMNIST": "1947d3b0303c740d6f416672f853eccc0d2f3bec15e4f05f0ab3a676957b0782",
    "USPS": "d74fd447194f995064ece0bc3cbce7462333ab991bfe471f241481a56b9aee6d",
    "CIFAR10-JPEG": "b9b6a7588ca05eb65233d837955081f902948cb0629c9f3a257ef83f48d1a00c",
    "UCSDped2": "c0301f5a7d7a6920eabf6325a3f721d98cb467715e0838ef4ca86a927b3df554",
}


class DataError(RuntimeError):
    """A dataset is missing, corrupt, or asked for in a way it cannot be served."""


@dataclass
class ImageSet:
    """Images of one split of a dataset.

    Attributes:
        images: uint8 tensor ``N x C x H x W``.
        labels: int64 tensor ``N``.
        classes: class names, indexed by label.
        source: one line saying which files these images were decoded from.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str = ""
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


# --------------------------------------------------------------------------- locations

def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """The folder that holds datasets: ``root`` if given, else ``$ADLIB_DATA``, else ``None``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("ADLIB_DATA")
    return Path(env).expanduser() if env else None


def cache_dir() -> Path:
    """The project's cache folder: ``$ADLIB_CACHE``, else ``.cache/`` of the checkout, else
    ``~/.cache/adlib``. Created on first use; never inside the data folder."""
    env = os.environ.get("ADLIB_CACHE")
    if env:
        path = Path(env).expanduser()
    else:
        checkout = Path(__file__).resolve().parents[1]
        if (checkout / "pyproject.toml").exists():
            path = checkout / ".cache"
        else:
            path = Path.home() / ".cache" / "adlib"
    path.mkdir(parents=True, exist_ok=True)
    return path


def download_dir() -> Path:
    """Where torchvision downloads official releases when the user has internet."""
    return cache_dir() / "downloads"


def find_dataset(folder: str, root=None, download: bool = False) -> Path:
    """Locate dataset ``folder`` (e.g. ``"MNIST"``) under the data root.

    Raises:
        DataError: no data root is configured, or the folder is missing and downloading is off.
    """
    base = data_root(root)
    if base is not None:
        if not base.is_dir():
            raise DataError(f"data folder {base} does not exist: point ADLIB_DATA (or root=) at a "
                            "folder holding the datasets, e.g. ADLIB_DATA=../shared/data")
        path = base / folder
        if not path.exists():
            raise DataError(f"dataset folder {path} not found: {folder} is not in {base}. Put a "
                            "copy there, or unset ADLIB_DATA (and root=) and pass download=True "
                            "with internet access to fetch the official release.")
        return path
    if download:
        return download_dir() / folder
    raise DataError(f"no data folder for {folder}: set ADLIB_DATA (for example "
                    "ADLIB_DATA=../shared/data) or pass root=..., or download=True with internet.")


# --------------------------------------------------------------------------- digests

def _files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob("*") if p.is_file()),
                  key=lambda p: p.relative_to(folder.parent).as_posix().encode())


def _stat_signature(files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _listing(folder: Path, files: list[Path]) -> str:
    return "".join(f"{_sha256(p)}  {p.relative_to(folder.parent).as_posix()}\n" for p in files)


def tree_digest(folder: str | os.PathLike) -> str:
    """SHA-256 of a folder's file listing (see the module docstring), remembered in the cache.

    The hash of every file is computed once; later calls only stat the files and reuse the
    remembered digest while sizes and modification times are unchanged.
    """
    folder = Path(folder).resolve()
    if not folder.exists():
        raise DataError(f"{folder} does not exist")
    files = [folder] if folder.is_file() else _files(folder)
    if not files:
        raise DataError(f"dataset folder {folder} is empty")
    signature = _stat_signature(files)
    memo = cache_dir() / "digests" / f"{signature}.json"
    if memo.exists():
        return json.loads(memo.read_text())["digest"]
    base = folder if folder.is_dir() else folder.parent
    digest = hashlib.sha256(_listing(base, files).encode()).hexdigest()
    _atomic_write_text(memo, json.dumps({"folder": str(folder), "digest": digest}))
    return digest


def verify_tree(folder: str | os.PathLike, name: str) -> str:
    """Check an offline copy against its published tree digest; return the digest.

    On a mismatch the error names the folder and, when the data root holds
    ``SHA256SUMS/<name>.sha256``, the first file that differs.
    """
    folder = Path(folder)
    digest = tree_digest(folder)
    expected = TREE_DIGESTS.get(name)
    if expected is None or digest == expected:
        return digest
    detail = ""
    sums = folder.parent / "SHA256SUMS" / f"{name}.sha256"
    if sums.exists():
        want = dict(line.split("  ", 1)[::-1] for line in sums.read_text().splitlines() if line)
        have = {p.relative_to(folder.parent).as_posix(): p for p in _files(folder)}
        for rel in sorted(set(want) | set(have), key=str.encode):
            if rel not in have:
                detail = f"; first difference: {rel} is missing"
                break
            if rel not in want:
                detail = f"; first difference: {rel} is not in the published list"
                break
            if _sha256(have[rel]) != want[rel]:
                detail = f"; first difference: {rel} has another checksum"
                break
    raise DataError(f"{folder} does not match the published tree digest of {name} "
                    f"(got {digest[:12]}..., expected {expected[:12]}...){detail}. The copy is "
                    "corrupt or altered: restore it from the source named in the data README.")


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _cached(key: str, decode):
    """Return the decoded ``(images, labels)`` for ``key`` from the cache, decoding on a miss."""
    path = cache_dir() / "decoded" / f"{key}.pt"
    if path.exists():
        try:
            obj = torch.load(path, weights_only=True)
            return obj["images"], obj["labels"]
        except Exception:  # a truncated cache file: decode again
            path.unlink(missing_ok=True)
    images, labels = decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"images": images, "labels": labels}, tmp)
    os.replace(tmp, path)
    return images, labels


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}: use 'train' or 'test'")


# --------------------------------------------------------------------------- MNIST-like (IDX)

def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX file (optionally gzipped): magic 2049 for labels, 2051 for images."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path} is not a readable IDX file ({err}); restore it") from err
    if len(raw) < 8:
        raise DataError(f"{path} is truncated: {len(raw)} bytes")
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path} has magic number {magic}, not an unsigned-byte IDX file")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    count = int(np.prod(shape))
    if len(raw) - offset != count:
        raise DataError(f"{path} holds {len(raw) - offset} bytes of data, expected {count} "
                        f"for shape {shape}: the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def _load_idx_dataset(folder_name: str, classes, split, root, download, verify) -> ImageSet:
    _check_split(split)
    folder = find_dataset(folder_name, root, download)
    raw = folder / "raw"
    prefix = "train" if split == "train" else "t10k"
    img_path = raw / f"{prefix}-images-idx3-ubyte.gz"
    lbl_path = raw / f"{prefix}-labels-idx1-ubyte.gz"
    if not img_path.exists() and download:
        _torchvision_download(folder_name, folder.parent)
    for p in (img_path, lbl_path):
        if not p.exists():
            raise DataError(f"{p} not found: {folder_name} expects the IDX .gz files of the "
                            "official release under raw/")
    # torchvision's download also extracts next to the .gz files: only offline copies are checked
    published_copy = verify and folder.parent != download_dir()
    digest = verify_tree(folder, folder_name) if published_copy else tree_digest(folder)

    def decode():
        images = torch.from_numpy(read_idx(img_path).copy()).unsqueeze(1)
        labels = torch.from_numpy(read_idx(lbl_path).astype(np.int64))
        if len(images) != len(labels):
            raise DataError(f"{img_path} has {len(images)} images but {lbl_path} has "
                            f"{len(labels)} labels")
        return images, labels

    images, labels = _cached(f"{folder_name}-{split}-{digest[:16]}", decode)
    return ImageSet(images, labels, list(classes), f"{folder_name} IDX files in {raw}",
                    {"digest": digest})


def _torchvision_download(folder_name: str, target: Path) -> None:  # pragma: no cover - network
    import torchvision.datasets as tvd
    cls = {"MNIST": tvd.MNIST, "FashionMNIST": tvd.FashionMNIST}[folder_name]
    cls(str(target), train=True, download=True)
    cls(str(target), train=False, download=True)


def load_mnist(split: str = "train", root=None, download: bool = False,
               verify: bool = True) -> ImageSet:
    """MNIST digits, 28 x 28 grey (60000 train, 10000 test). See :func:`find_dataset`."""
    return _load_idx_dataset("MNIST", MNIST_CLASSES, split, root, download, verify)


def load_fashion_mnist(split: str = "train", root=None, download: bool = False,
                       verify: bool = True) -> ImageSet:
    """Fashion-MNIST, 28 x 28 grey (60000 train, 10000 test). See :func:`find_dataset`."""
    return _load_idx_dataset("FashionMNIST", FASHION_CLASSES, split, root, download, verify)


# --------------------------------------------------------------------------- CIFAR-10

def _decode_cifar_pickles(batch_dir: Path, split: str):
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = batch_dir / name
        if not path.exists():
            raise DataError(f"{path} not found: torchvision's CIFAR-10 layout has "
                            f"data_batch_1..5 and test_batch in {batch_dir}")
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
        except Exception as err:
            raise DataError(f"{path} is not a readable CIFAR-10 pickle batch ({err})") from err
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{path} holds data of shape {data.shape}, expected N x 3072")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.extend(entry.get("labels", entry.get("fine_labels", [])))
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def _decode_image_folder(split_dir: Path, classes: list[str], channels: int):
    from PIL import Image
    from tqdm.auto import tqdm

    paths, labels = [], []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            raise DataError(f"{class_dir} not found: the ImageFolder layout needs one folder per "
                            f"class ({', '.join(classes)})")
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg",
                                                                              ".png"))
        paths += files
        labels += [label] * len(files)
    mode = "RGB" if channels == 3 else "L"
    images = np.empty((len(paths), 32, 32, channels), dtype=np.uint8)
    for i, p in enumerate(tqdm(paths, desc=f"decoding {split_dir.name} JPEGs (cached after)",
                               leave=False, mininterval=2)):
        try:
            with Image.open(p) as im:
                arr = np.asarray(im.convert(mode))
        except Exception as err:
            raise DataError(f"{p} is not a readable image ({err}); restore it") from err
        if arr.shape[:2] != (32, 32):
            raise DataError(f"{p} is {arr.shape[1]}x{arr.shape[0]}, expected 32x32")
        images[i] = arr.reshape(32, 32, channels)
    return (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
            torch.tensor(labels, dtype=torch.int64))


def load_cifar10(split: str = "train", root=None, download: bool = False,
                 verify: bool = True) -> ImageSet:
    """CIFAR-10, 32 x 32 RGB (50000 train, 10000 test).

    Looks, under the data root, for torchvision's pickled batches (``cifar-10-batches-py``)
    first, then for the JPEG ImageFolder copy ``CIFAR10-JPEG``. ``info["lossy"]`` says which.
    """
    _check_split(split)
    base = data_root(root)
    if base is None and download:  # pragma: no cover - network
        import torchvision.datasets as tvd
        tvd.CIFAR10(str(download_dir()), train=True, download=True)
        base = download_dir()
    if base is None:
        find_dataset("CIFAR-10", root, download)  # raises the standard message
    pickled = base / "cifar-10-batches-py"
    if pickled.is_dir():
        digest = tree_digest(pickled)
        images, labels = _cached(f"cifar10-pickle-{split}-{digest[:16]}",
                                 lambda: _decode_cifar_pickles(pickled, split))
        return ImageSet(images, labels, list(CIFAR10_CLASSES),
                        f"CIFAR-10 pickled batches in {pickled}", {"digest": digest,
                                                                    "lossy": False})
    folder = find_dataset("CIFAR10-JPEG", root, download)
    digest = verify_tree(folder, "CIFAR10-JPEG") if verify else tree_digest(folder)
    images, labels = _cached(
        f"cifar10-jpeg-{split}-{digest[:16]}",
        lambda: _decode_image_folder(folder / split, CIFAR10_CLASSES, 3))
    return ImageSet(images, labels, list(CIFAR10_CLASSES),
                    f"CIFAR-10 JPEG copy (quality 75, lossy) in {folder}",
                    {"digest": digest, "lossy": True})


# --------------------------------------------------------------------------- USPS

def _decode_usps_bz2(path: Path):
    images, labels = [], []
    try:
        with bz2.open(path, "rt") as f:
            for line_no, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                pixels = np.zeros(256, dtype=np.float32)
                for item in parts[1:]:
                    idx, value = item.split(":")
                    pixels[int(idx) - 1] = float(value)
                labels.append(int(float(parts[0])) - 1)
                images.append(pixels)
    except (OSError, EOFError, ValueError) as err:
        raise DataError(f"{path} is not a readable USPS libsvm .bz2 file ({err})") from err
    if not images:
        raise DataError(f"{path} holds no images")
    data = np.stack(images)
    data = np.clip(np.round((data + 1.0) / 2.0 * 255.0), 0, 255).astype(np.uint8)
    return (torch.from_numpy(data.reshape(-1, 1, 16, 16)),
            torch.tensor(labels, dtype=torch.int64))


def _decode_usps_h5(path: Path, split: str):
    import h5py
    try:
        with h5py.File(path, "r") as f:
            data = np.asarray(f[f"{split}/data"], dtype=np.float32)
            target = np.asarray(f[f"{split}/target"], dtype=np.int64)
    except (OSError, KeyError) as err:
        raise DataError(f"{path} is not a USPS HDF5 file with {split}/data and {split}/target "
                        f"({err})") from err
    if data.ndim != 2 or data.shape[1] != 256 or len(data) != len(target):
        raise DataError(f"{path}: {split}/data has shape {data.shape}, expected N x 256 "
                        f"matching {len(target)} targets")
    data = np.clip(np.round(data * 255.0), 0, 255).astype(np.uint8)
    return torch.from_numpy(data.reshape(-1, 1, 16, 16)), torch.from_numpy(target)


def load_usps(split: str = "train", root=None, download: bool = False,
              verify: bool = True) -> ImageSet:
    """USPS digits, 16 x 16 grey (7291 train, 2007 test).

    Reads torchvision's ``usps.bz2`` / ``usps.t.bz2`` (values in [-1, 1], labels 1-10) or the
    HDF5 repackaging ``usps.h5`` (values in [0, 1], labels 0-9), both under ``<root>/USPS``.
    """
    _check_split(split)
    folder = find_dataset("USPS", root, download)
    bz2_path = folder / ("usps.bz2" if split == "train" else "usps.t.bz2")
    h5_path = folder / "usps.h5"
    if not bz2_path.exists() and not h5_path.exists() and download:  # pragma: no cover
        import torchvision.datasets as tvd
        tvd.USPS(str(folder), train=split == "train", download=True)
    if bz2_path.exists():
        digest = tree_digest(bz2_path)
        images, labels = _cached(f"usps-bz2-{split}-{digest[:16]}",
                                 lambda: _decode_usps_bz2(bz2_path))
        source = f"USPS libsvm file {bz2_path}"
    elif h5_path.exists():
        digest = verify_tree(folder, "USPS") if verify else tree_digest(folder)
        images, labels = _cached(f"usps-h5-{split}-{digest[:16]}",
                                 lambda: _decode_usps_h5(h5_path, split))
        source = f"USPS HDF5 file {h5_path}"
    else:
        raise DataError(f"no USPS files in {folder}: expected usps.bz2/usps.t.bz2 "
                        "(torchvision) or usps.h5")
    return ImageSet(images, labels, [str(d) for d in range(10)], source, {"digest": digest})


# --------------------------------------------------------------------------- GTSRB

#: GTSRB's class index of the stop sign (the normal class of OCLR's Table 2, after Deep SVDD).
GTSRB_STOP = 14


def _decode_gtsrb(root: Path, split: str, side: int):
    import torchvision.datasets as tvd
    from PIL import UnidentifiedImageError
    try:
        ds = tvd.GTSRB(str(root), split=split)
    except RuntimeError as err:
        raise DataError(f"GTSRB {split} split not found under {root / 'gtsrb'}: expected "
                        "torchvision's layout (gtsrb/GTSRB/Training/00000/*.ppm, "
                        "gtsrb/GTSRB/Final_Test/Images/*.ppm, gtsrb/GT-final_test.csv)") from err
    images = torch.empty(len(ds), 3, side, side, dtype=torch.uint8)
    labels = torch.empty(len(ds), dtype=torch.int64)
    for i in range(len(ds)):
        try:
            img, label = ds[i]
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"{ds._samples[i][0]} is not a readable image ({err}): the file is "
                            "corrupt; restore it from the dataset's source") from err
        img = img.resize((side, side), resample=3)  # bicubic, as torchvision's Resize default
        images[i] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        labels[i] = label
    return images, labels


def load_gtsrb(split: str = "train", root=None, download: bool = False,
               verify: bool = True, side: int = 32) -> ImageSet:
    """GTSRB (43 traffic-sign classes) through torchvision's loader, resized to ``side``.

    The photos vary in size (15 to 250 pixels); they are resized to ``side x side`` RGB once and
    cached. The stop sign is class :data:`GTSRB_STOP` (14). Not in the offline data: tested on
    generated files in torchvision's layout. ``verify`` is accepted for symmetry; there is no
    published digest of a GTSRB copy.
    """
    _check_split(split)
    folder = find_dataset("gtsrb", root, download)
    if download and not folder.exists():  # pragma: no cover - network
        import torchvision.datasets as tvd
        tvd.GTSRB(str(folder.parent), split=split, download=True)
    digest = tree_digest(folder)
    images, labels = _cached(f"gtsrb-{split}-{side}-{digest[:16]}",
                             lambda: _decode_gtsrb(folder.parent, split, side))
    return ImageSet(images, labels, [str(c) for c in range(43)],
                    f"GTSRB {split} (torchvision layout) in {folder}, resized to {side}",
                    {"digest": digest})


# --------------------------------------------------------------------------- Caltech-256

#: Caltech-256's background category, the outliers of G2D's Table 2.
CALTECH_CLUTTER = "257.clutter"


def _open_caltech256(root: Path):
    import torchvision.datasets as tvd
    try:
        return tvd.Caltech256(str(root))
    except (RuntimeError, FileNotFoundError) as err:
        raise DataError(f"Caltech-256 not found under {root / 'caltech256'}: expected "
                        "torchvision's layout caltech256/256_ObjectCategories/001.ak47/"
                        "001_0001.jpg ... 257.clutter/257_0827.jpg") from err


def _decode_caltech256(ds, categories: list[int], per_category: int | None, side: int):
    from PIL import UnidentifiedImageError
    picks = [i for i, (y, n) in enumerate(zip(ds.y, ds.index))
             if y in categories and (per_category is None or n <= per_category)]
    images = torch.empty(len(picks), 3, side, side, dtype=torch.uint8)
    labels = torch.empty(len(picks), dtype=torch.int64)
    for j, i in enumerate(picks):
        try:
            img, label = ds[i]
            img = img.convert("RGB").resize((side, side), resample=3)  # bicubic
        except (UnidentifiedImageError, OSError) as err:
            name = f"{ds.categories[ds.y[i]]}/{ds.y[i] + 1:03d}_{ds.index[i]:04d}.jpg"
            raise DataError(f"Caltech-256 image {name} is missing or unreadable ({err}): "
                            "restore it from the dataset's source") from err
        images[j] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        labels[j] = label
    return images, labels


def caltech256_categories(root=None) -> list[str]:
    """Caltech-256's category folder names in torchvision's order (sorted; 257 in the release)."""
    return list(_open_caltech256(find_dataset("caltech256", root).parent).categories)


def load_caltech256(categories, per_category: int | None = 150, root=None,
                    download: bool = False, side: int = 64) -> ImageSet:
    """The first ``per_category`` images of each of ``categories`` of Caltech-256.

    ``categories`` are 0-based indices into torchvision's sorted category folders (in the
    release, 0 is ``001.ak47`` and 256 is ``257.clutter``); ``per_category=None`` keeps every
    image. "First" follows the files' numbering, as in G2D's section 4.2. Images (some are
    grey) are converted to RGB, resized bicubically to ``side x side`` once and cached. Labels
    are the category indices. Caltech-256 is not in the offline data: this is tested on generated
    files in torchvision's layout.

    Raises:
        DataError: no Caltech-256 folder, an unknown or empty category, or an unreadable image.
    """
    folder = find_dataset("caltech256", root, download)
    if download and not folder.exists():  # pragma: no cover - network
        import torchvision.datasets as tvd
        tvd.Caltech256(str(folder.parent), download=True)
    ds = _open_caltech256(folder.parent)
    categories = sorted({int(c) for c in categories})
    unknown = [c for c in categories if not 0 <= c < len(ds.categories)]
    if unknown:
        raise DataError(f"unknown Caltech-256 categories {unknown}: there are "
                        f"{len(ds.categories)} (0..{len(ds.categories) - 1})")
    present = set(ds.y)
    empty = [ds.categories[c] for c in categories if c not in present]
    if empty:
        raise DataError(f"Caltech-256 categories {empty} hold no .jpg image: empty category")
    digest = tree_digest(folder)
    chosen = hashlib.sha1(json.dumps(categories).encode()).hexdigest()[:10]
    images, labels = _cached(f"caltech256-{chosen}-{per_category}-{side}-{digest[:16]}",
                             lambda: _decode_caltech256(ds, categories, per_category, side))
    return ImageSet(images, labels, list(ds.categories),
                    f"Caltech-256 (torchvision layout) in {folder}: categories {categories}, "
                    f"first {per_category} images each, resized to {side}", {"digest": digest})


#: Loaders by dataset name, as used by protocols and the bench command.
DATASETS = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "usps": load_usps,
    "gtsrb": load_gtsrb,
}


def load_dataset(name: str, split: str = "train", root=None, download: bool = False,
                 verify: bool = True) -> ImageSet:
    """Load dataset ``name`` (one of :data:`DATASETS`) by name."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](split, root=root, download=download, verify=verify)
