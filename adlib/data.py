"""Finding, checking, decoding and caching the image datasets of the book.

One place finds a dataset (:func:`find_dataset`): an explicit ``root`` argument, else the
``ADLIB_DATA`` environment variable, else a user cache folder where torchvision downloads the
official release (only when ``download=True``; tests and CI never download). A download that
fails (no internet) raises :class:`DataError`.

Which check a copy gets (``verify=True``, the default; ``verify=False`` skips the digest and the
count checks, to use a partial or altered copy on purpose):

* **The published offline copies** (``../shared/data``: ``MNIST``, ``FashionMNIST``, ``USPS``,
  ``CIFAR10-JPEG``, ``UCSDped2``) are checked against their *tree digest*: the SHA-256 of the
  text ``"<sha256 of file>  <folder>/<relative path>\\n"`` over every file, sorted bytewise by
  path. A folder *is* the published copy when its set of files (relative paths) is exactly the
  published file list, which :func:`published_files` derives from the data README's "Layouts"
  (the 4 IDX ``.gz`` files under ``raw/``; ``usps.h5``; ``{train,test}/<class>/NNNN.jpg`` with
  5000 and 1000 per class; UCSD Ped2's ``.jpg`` frames, ``.png`` masks, ``UCSDped2.m`` and
  ``UCSD_README.txt`` with the published frame counts). A digest mismatch raises the "corrupt or
  altered" error. A match is remembered in the cache folder (keyed by the folder's path and a
  stat signature), so later loads only stat the files.
* **Any other copy** (torchvision's layout with its extracted IDX files or ``processed/``, the
  official UCSD release with ``.tif`` frames and ``.bmp`` masks, a partial or extended copy, the
  pickled CIFAR-10 batches, USPS ``.bz2``, GTSRB, Caltech-256) has no published digest: it is
  checked for structure and readability. A missing file or folder raises a :class:`DataError`
  naming it and the expected layout; a file that cannot be decoded raises one naming the file.
  Where the official release fixes the size, the structure check also verifies the counts
  (:data:`OFFICIAL_COUNTS`): MNIST and Fashion-MNIST 60000 / 10000 images (the IDX headers),
  USPS 7291 / 2007 (``usps.h5`` or the ``.bz2`` files), CIFAR-10 50000 / 10000 (the pickled
  batches together) and 5000 / 1000 images per class in an image folder
  (:data:`CIFAR_JPEG_PER_CLASS`); UCSD's clips, frames per clip and masks are counted by
  :func:`adlib.video.load_ucsd`. A partial copy (say, CIFAR10-JPEG with one image deleted) is
  thus refused with a :class:`DataError` naming the folder (or file), the expected and the
  found count and the fix; with ``verify=False`` it loads what it holds. GTSRB and Caltech-256
  are not counted.

``ImageSet.info["check"]`` says which check a load got: ``"tree digest"`` (the published copy),
``"structure"`` (another copy, with its counts where they are fixed) or ``"none"``
(``verify=False``: the copy is only decoded, so it may be partial). Either way, decoded images
are cached as uint8 tensors in the cache folder (never in the data folder), keyed by the tree
digest of the whole folder, so a changed file is never served stale; the counts are checked on
every load, cached or not.

Every loader returns an :class:`ImageSet`: ``images`` as uint8 ``N x C x H x W`` and ``labels``
as int64, plus the class names and a one-line description of the source.

Supported on-disk forms:

* MNIST, Fashion-MNIST: the IDX files under ``<Folder>/raw/`` (torchvision's layout), each read
  from its ``.gz`` when present, else from torchvision's extracted copy beside it (nothing is
  ever extracted into the data folder).
* CIFAR-10: torchvision's pickled batches (``cifar-10-batches-py/``) or the JPEG ImageFolder copy
  ``CIFAR10-JPEG/{train,test}/<class>/NNNN.jpg`` (lossy; results on it must say so).
* USPS: torchvision's ``usps.bz2`` / ``usps.t.bz2`` (libsvm text) or the HDF5 ``USPS/usps.h5``.
* GTSRB, Caltech-256: torchvision's layouts (not in the offline data; tested on generated files).
* Your own images: :func:`load_dataset` given a folder path reads MVTec AD's layout or a plain
  ``normal/``, ``abnormal/`` folder with :func:`adlib.folders.load_folder`.
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
    "tree_digest", "verify_tree", "published_files", "check_copy", "load_dataset", "load_mnist",
    "load_fashion_mnist", "load_cifar10", "load_usps", "load_gtsrb", "GTSRB_STOP",
    "load_caltech256", "caltech256_categories", "CALTECH_CLUTTER",
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
#: Images per class of CIFAR-10 by split: the official release's, hence the published
#: CIFAR10-JPEG copy's file list and the count the structure check asks of any other image folder.
CIFAR_JPEG_PER_CLASS = {"train": 5000, "test": 1000}
#: Images per split of the official releases whose size is fixed: the structure check of a copy
#: other than the published one (``verify=True``) requires exactly these (module docstring).
OFFICIAL_COUNTS = {
    "MNIST": {"train": 60000, "test": 10000},
    "FashionMNIST": {"train": 60000, "test": 10000},
    "USPS": {"train": 7291, "test": 2007},
    "CIFAR-10": {"train": 50000, "test": 10000},
}
#: Frames per clip of the published UCSDped2 copy (and of the official release), by split; the
#: structure check of any other Ped2 copy counts them (:func:`adlib.video.load_ucsd`).
UCSD_PED2_FRAMES = {
    "Train": [120, 150, 150, 180, 180, 150, 150, 120, 180, 180, 180, 180, 180, 150, 150, 150],
    "Test": [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180],
}


class DataError(RuntimeError):
    """A dataset is missing, corrupt, or asked for in a way it cannot be served."""


def _count_error(where, found: int, expected: int, what: str, note: str = "",
                 missing: bool | None = None, extra: bool | None = None) -> DataError:
    """The error of a copy whose ``found`` count of ``what`` in ``where`` is not the official
    ``expected`` one (a partial or extended copy); ``note`` adds detail (the first missing file).
    ``missing`` / ``extra`` say which fix applies (default: from the counts)."""
    missing = found < expected if missing is None else missing
    extra = found > expected if extra is None else extra
    fixes = (["restore the missing files from the official release"] if missing else []) + \
        (["remove the files the official release does not have"] if extra else [])
    use = "a partial copy" if missing else "this copy"
    return DataError(f"{where} holds {found} {what}; the official release has {expected}{note}. "
                     "A result on another count is not the dataset's: "
                     f"{' and '.join(fixes) or 'restore the official files'}, or run with "
                     f"verify=False / --no-verify to use {use} on purpose.")


def _check_count(where, found: int, expected: int | None, what: str = "images") -> None:
    """Raise :func:`_count_error` unless ``found == expected`` (``None``: nothing to check)."""
    if expected is not None and found != expected:
        raise _count_error(where, found, expected, what)


@dataclass
class ImageSet:
    """Images of one split of a dataset.

    Attributes:
        images: uint8 tensor ``N x C x H x W``.
        labels: int64 tensor ``N``.
        classes: class names, indexed by label.
        source: one line saying which files these images were decoded from.
        info: how the images were found and checked (digest, check, ...), by loader.
        masks: uint8 ``N x 1 x H x W`` pixel masks, 255 on the anomaly and 0 elsewhere (all 0
            for an image without a mask, such as a normal one); ``None`` when the dataset has no
            masks at all (every registered dataset; an image folder without mask files).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str = ""
    info: dict = field(default_factory=dict)
    masks: torch.Tensor | None = None

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


def _existing_files(folder: Path) -> list[Path]:
    if not folder.exists():
        raise DataError(f"{folder} does not exist")
    files = [folder] if folder.is_file() else _files(folder)
    if not files:
        raise DataError(f"dataset folder {folder} is empty")
    return files


def tree_digest(folder: str | os.PathLike) -> str:
    """SHA-256 of a folder's file listing (see the module docstring), remembered in the cache.

    The hash of every file is computed once; later calls only stat the files and reuse the
    remembered digest while sizes and modification times are unchanged.

    Raises:
        DataError: ``folder`` does not exist or holds no file.
    """
    folder = Path(folder).resolve()
    return _tree_digest(folder, _existing_files(folder))


def _tree_digest(folder: Path, files: list[Path]) -> str:
    signature = _stat_signature(files)
    memo = cache_dir() / "digests" / f"{signature}.json"
    if memo.exists():
        return json.loads(memo.read_text())["digest"]
    base = folder if folder.is_dir() else folder.parent
    digest = hashlib.sha256(_listing(base, files).encode()).hexdigest()
    _atomic_write_text(memo, json.dumps({"folder": str(folder), "digest": digest}))
    return digest


def published_files(name: str) -> set[str] | None:
    """The relative paths of every file of the published offline copy ``name`` (a key of
    :data:`TREE_DIGESTS`), derived from the data README's "Layouts"; ``None`` for other names.

    The data root's ``SHA256SUMS/<name>.sha256`` lists the same paths (a test checks this), but a
    loader must not need that folder, so the list is built here.
    """
    if name in ("MNIST", "FashionMNIST"):
        return {f"raw/{part}-ubyte.gz" for part in _IDX_PARTS}
    if name == "USPS":
        return {"usps.h5"}
    if name == "CIFAR10-JPEG":
        return {f"{split}/{c}/{i:04d}.jpg" for split, n in CIFAR_JPEG_PER_CLASS.items()
                for c in CIFAR10_CLASSES for i in range(n)}
    if name == "UCSDped2":
        files = {"Test/UCSDped2.m", "UCSD_README.txt"}
        for split, counts in UCSD_PED2_FRAMES.items():
            for k, n in enumerate(counts, 1):
                clip = f"{split}/{split}{k:03d}"
                files |= {f"{clip}/{i:03d}.jpg" for i in range(1, n + 1)}
                if split == "Test":
                    files |= {f"{clip}_gt/{i:03d}.png" for i in range(1, n + 1)}
        return files
    return None


def _is_published_layout(folder: Path, files: list[Path], name: str) -> bool:
    """Whether ``files`` (all under ``folder``) are exactly the published file list of ``name``."""
    want = published_files(name)
    start = len(folder.as_posix()) + 1  # relative paths, faster than relative_to on 60000 files
    return (want is not None and folder.is_dir() and len(files) == len(want)
            and {p.as_posix()[start:] for p in files} == want)


def check_copy(folder: str | os.PathLike, name: str, verify: bool = True) -> tuple[str, str]:
    """Check a copy of dataset ``name`` (module docstring); return its tree digest and the check.

    A folder whose files are exactly :func:`published_files` of ``name`` is the published offline
    copy: with ``verify`` its tree digest must equal :data:`TREE_DIGESTS` (check ``"tree
    digest"``). Any other copy gets ``"structure"``: its loader checks the files it reads as it
    decodes them and, where the official release fixes them, the counts (a partial copy fails).
    Without ``verify`` the check is ``"none"`` for every copy: a loader then decodes what there
    is, partial or not. The digest is the cache key in every case.

    Raises:
        DataError: ``folder`` is missing or empty, or it is the published copy and its digest
            differs (the message names the first differing file when the data root holds
            ``SHA256SUMS/<name>.sha256``).
    """
    folder = Path(folder)
    resolved = folder.resolve()
    files = _existing_files(resolved)
    digest = _tree_digest(resolved, files)
    if not verify:
        return digest, "none"
    if not _is_published_layout(resolved, files, name):
        return digest, "structure"
    _compare(folder, name, digest)
    return digest, "tree digest"


def verify_tree(folder: str | os.PathLike, name: str) -> str:
    """:func:`check_copy` with ``verify=True``; return the folder's tree digest.

    Only the published copy (exactly its file list) is compared with its tree digest; any other
    layout returns its digest unchecked (its loader checks structure, readability and the
    official counts).

    Raises:
        DataError: the published copy does not match its digest ("corrupt or altered").
    """
    return check_copy(folder, name)[0]


def _compare(folder: Path, name: str, digest: str) -> None:
    """Raise the "corrupt or altered" error when ``digest`` is not the published one."""
    expected = TREE_DIGESTS.get(name)
    if expected is None or digest == expected:
        return
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


def _cached_object(path: Path, decode) -> dict:
    """The dict of tensors stored at ``path``, or ``decode()``'s, written there atomically on a
    miss (a truncated file is decoded again)."""
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a truncated cache file: decode again
            path.unlink(missing_ok=True)
    obj = decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return obj


def _cached(key: str, decode):
    """Return the decoded ``(images, labels)`` for ``key`` from the cache, decoding on a miss."""
    obj = _cached_object(cache_dir() / "decoded" / f"{key}.pt",
                         lambda: dict(zip(("images", "labels"), decode())))
    return obj["images"], obj["labels"]


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


#: The four IDX files of MNIST-like datasets, without ``-ubyte.gz``.
_IDX_PARTS = ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")


def _idx_file(raw: Path, part: str, folder_name: str) -> Path:
    """``raw/<part>-ubyte.gz``, else torchvision's extracted ``raw/<part>-ubyte`` beside it."""
    for path in (raw / f"{part}-ubyte.gz", raw / f"{part}-ubyte"):
        if path.is_file():
            return path
    raise DataError(f"{raw / part}-ubyte.gz not found (nor its extracted copy {part}-ubyte): "
                    f"{folder_name} expects the official IDX files under raw/ "
                    f"({', '.join(p + '-ubyte.gz' for p in _IDX_PARTS)})")


def _load_idx_dataset(folder_name: str, classes, split, root, download, verify) -> ImageSet:
    _check_split(split)
    folder = find_dataset(folder_name, root, download)
    raw = folder / "raw"
    prefix = "train" if split == "train" else "t10k"
    if download and not any(raw.glob(f"{prefix}-images-idx3-ubyte*")):
        _download(folder_name, folder.parent)
    img_path = _idx_file(raw, f"{prefix}-images-idx3", folder_name)
    lbl_path = _idx_file(raw, f"{prefix}-labels-idx1", folder_name)
    digest, check = check_copy(folder, folder_name, verify)

    def decode():
        images = torch.from_numpy(read_idx(img_path).copy()).unsqueeze(1)
        labels = torch.from_numpy(read_idx(lbl_path).astype(np.int64))
        if len(images) != len(labels):
            raise DataError(f"{img_path} has {len(images)} images but {lbl_path} has "
                            f"{len(labels)} labels")
        return images, labels

    images, labels = _cached(f"{folder_name}-{split}-{digest[:16]}", decode)
    if check == "structure":  # the counts the IDX headers gave, against the official release's
        _check_count(img_path, len(images), OFFICIAL_COUNTS.get(folder_name, {}).get(split))
    return ImageSet(images, labels, list(classes), f"{folder_name} IDX files in {raw}",
                    {"digest": digest, "check": check})


def _download(name: str, target: Path, split: str = "train", fetch=None) -> None:
    """Fetch the official release of ``name`` into ``target`` (internet): with torchvision, or
    by calling ``fetch()`` when given.

    Raises:
        DataError: the download failed, e.g. without internet access.
    """
    import torchvision.datasets as tvd
    fetch = fetch or {
        "MNIST": lambda: [tvd.MNIST(str(target), train=t, download=True) for t in (True, False)],
        "FashionMNIST": lambda: [tvd.FashionMNIST(str(target), train=t, download=True)
                                 for t in (True, False)],
        "CIFAR-10": lambda: tvd.CIFAR10(str(target), train=True, download=True),
        "USPS": lambda: tvd.USPS(str(target), train=split == "train", download=True),
        "gtsrb": lambda: tvd.GTSRB(str(target), split=split, download=True),
        "caltech256": lambda: tvd.Caltech256(str(target), download=True),
    }[name]
    try:
        fetch()
    except (OSError, RuntimeError) as err:
        raise DataError(f"downloading {name} into {target} failed ({type(err).__name__}: {err}). "
                        "download=True needs internet access; without it, put a copy in a data "
                        "folder and set ADLIB_DATA (or root=).") from err


def load_mnist(split: str = "train", root=None, download: bool = False,
               verify: bool = True) -> ImageSet:
    """MNIST digits, 28 x 28 grey (60000 train, 10000 test). See :func:`find_dataset`.

    With ``verify``, the published copy must match its tree digest and any other copy must hold
    the official 60000 / 10000 images (module docstring); ``verify=False`` loads a partial copy.
    """
    return _load_idx_dataset("MNIST", MNIST_CLASSES, split, root, download, verify)


def load_fashion_mnist(split: str = "train", root=None, download: bool = False,
                       verify: bool = True) -> ImageSet:
    """Fashion-MNIST, 28 x 28 grey (60000 train, 10000 test). See :func:`find_dataset`.

    ``verify`` as for :func:`load_mnist`.
    """
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
        batch_labels = list(entry.get("labels", entry.get("fine_labels", [])))
        if len(batch_labels) != len(data):
            raise DataError(f"{path} holds {len(data)} images but {len(batch_labels)} labels: "
                            "the batch is corrupt; restore it")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.extend(batch_labels)
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def _class_files(split_dir: Path, classes: list[str]) -> list[list[Path]]:
    """The image files of each class folder of an ImageFolder split, in class order.

    Raises:
        DataError: a class folder is missing or holds no image.
    """
    found = []
    for name in classes:
        class_dir = split_dir / name
        if not class_dir.is_dir():
            raise DataError(f"{class_dir} not found: the ImageFolder layout needs one folder per "
                            f"class ({', '.join(classes)})")
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg",
                                                                              ".png"))
        if not files:
            raise DataError(f"{class_dir} holds no image (.jpg, .jpeg, .png): an empty class")
        found.append(files)
    return found


def _decode_image_folder(split_dir: Path, classes: list[str], channels: int):
    from PIL import Image
    from tqdm.auto import tqdm

    paths, labels = [], []
    for label, files in enumerate(_class_files(split_dir, classes)):
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

    With ``verify``, the published JPEG copy must match its tree digest; any other copy must hold
    the official counts: 50000 train / 10000 test images in the pickled batches, or 5000 train /
    1000 test images in every class folder, counted before decoding (a partial copy raises a
    :class:`DataError` naming the folder). ``verify=False`` loads a partial copy.
    """
    _check_split(split)
    base = data_root(root)
    if base is None and download:
        base = download_dir()
        if not (base / "cifar-10-batches-py").is_dir():
            _download("CIFAR-10", base)
    if base is None:
        find_dataset("CIFAR-10", root, download)  # raises the standard message
    pickled = base / "cifar-10-batches-py"
    if pickled.is_dir():
        digest = tree_digest(pickled)
        images, labels = _cached(f"cifar10-pickle-{split}-{digest[:16]}",
                                 lambda: _decode_cifar_pickles(pickled, split))
        if verify:
            batches = "data_batch_1..5" if split == "train" else "test_batch"
            _check_count(pickled, len(images), OFFICIAL_COUNTS["CIFAR-10"][split],
                         f"{split} images in {batches} (10000 a batch)")
        return ImageSet(images, labels, list(CIFAR10_CLASSES),
                        f"CIFAR-10 pickled batches in {pickled}",
                        {"digest": digest, "check": "structure" if verify else "none",
                         "lossy": False})
    folder = find_dataset("CIFAR10-JPEG", root, download)
    digest, check = check_copy(folder, "CIFAR10-JPEG", verify)
    if check == "structure":  # counted from the file names: no decoding spent on a partial copy
        for name, files in zip(CIFAR10_CLASSES, _class_files(folder / split, CIFAR10_CLASSES)):
            _check_count(folder / split / name, len(files), CIFAR_JPEG_PER_CLASS[split])
    images, labels = _cached(
        f"cifar10-jpeg-{split}-{digest[:16]}",
        lambda: _decode_image_folder(folder / split, CIFAR10_CLASSES, 3))
    return ImageSet(images, labels, list(CIFAR10_CLASSES),
                    f"CIFAR-10 JPEG copy (quality 75, lossy) in {folder}",
                    {"digest": digest, "check": check, "lossy": True})


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

    With ``verify``, the published ``usps.h5`` must match its tree digest and any other copy must
    hold the official 7291 / 2007 images; ``verify=False`` loads a partial copy.
    """
    _check_split(split)
    folder = find_dataset("USPS", root, download)
    bz2_path = folder / ("usps.bz2" if split == "train" else "usps.t.bz2")
    h5_path = folder / "usps.h5"
    if not bz2_path.exists() and not h5_path.exists() and download:
        _download("USPS", folder, split)
    check = "structure" if verify else "none"
    if bz2_path.exists():
        digest = tree_digest(bz2_path)
        images, labels = _cached(f"usps-bz2-{split}-{digest[:16]}",
                                 lambda: _decode_usps_bz2(bz2_path))
        source, counted = f"USPS libsvm file {bz2_path}", bz2_path
    elif h5_path.exists():
        digest, check = check_copy(folder, "USPS", verify)
        images, labels = _cached(f"usps-h5-{split}-{digest[:16]}",
                                 lambda: _decode_usps_h5(h5_path, split))
        source, counted = f"USPS HDF5 file {h5_path}", f"{h5_path} ({split}/data)"
    else:
        raise DataError(f"no USPS files in {folder}: expected usps.bz2/usps.t.bz2 "
                        "(torchvision) or usps.h5")
    if check == "structure":
        _check_count(counted, len(images), OFFICIAL_COUNTS["USPS"][split])
    return ImageSet(images, labels, [str(d) for d in range(10)], source,
                    {"digest": digest, "check": check})


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
    generated files in torchvision's layout. ``verify`` is accepted for symmetry (it only sets
    ``info["check"]``); there is no published digest of a GTSRB copy, and its counts are not
    checked.
    """
    _check_split(split)
    folder = find_dataset("gtsrb", root, download)
    if download and folder.parent == download_dir():  # torchvision fetches only what is missing
        _download("gtsrb", folder.parent, split)
    digest = tree_digest(folder)
    images, labels = _cached(f"gtsrb-{split}-{side}-{digest[:16]}",
                             lambda: _decode_gtsrb(folder.parent, split, side))
    return ImageSet(images, labels, [str(c) for c in range(43)],
                    f"GTSRB {split} (torchvision layout) in {folder}, resized to {side}",
                    {"digest": digest, "check": "structure" if verify else "none"})


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
    if download and not folder.exists():
        _download("caltech256", folder.parent)
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


def _is_folder_name(name) -> bool:
    """Whether :func:`load_dataset` reads ``name`` as a folder path: a path object, or a string
    that is not a registered name and is an existing folder, holds a path separator or starts
    with ``~`` or ``.``."""
    if isinstance(name, os.PathLike):
        return True
    if not isinstance(name, str) or name in DATASETS:
        return False
    seps = [s for s in (os.sep, os.altsep, "/") if s]
    return (Path(name).expanduser().is_dir() or any(s in name for s in seps)
            or name.startswith(("~", ".")))


def load_dataset(name: str | os.PathLike, split: str = "train", root=None,
                 download: bool = False, verify: bool = True, *,
                 size: int | None = None) -> ImageSet:
    """Load dataset ``name``: one of :data:`DATASETS`, or the path of an image folder.

    ``verify`` (the default) checks the published copy's tree digest, or another copy's
    structure and official counts; ``verify=False`` loads a partial copy on purpose.

    A ``name`` that is not a registered name and is an existing folder, a path object, or a
    string holding a path separator or starting with ``~`` or ``.`` is read by
    :func:`adlib.folders.load_folder` (MVTec AD's ``train/good``, ``test/<defect>`` layout or
    ``normal/``, ``abnormal/``), resized to ``size x size`` when ``size`` is given. A folder
    path is used as given (relative to the working directory): ``root`` does not apply to it,
    nor do ``download`` and ``verify`` (a folder is always structure-checked). A folder named like
    a registered dataset is reached as ``./mnist``.

    Raises:
        DataError: an unknown name that is no folder path; ``size`` given for a registered
            dataset (resize those with :class:`adlib.protocols.Preprocess`); and the errors of
            the loaders.
    """
    if _is_folder_name(name):
        from .folders import load_folder
        return load_folder(name, split, size=size)
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}, "
                        "or the path of a folder of images (train/good/, test/good/, "
                        "test/<defect>/; or normal/, abnormal/), e.g. ./mydata")
    if size is not None:
        raise DataError(f"size={size} applies to image folders only; {name} keeps its native "
                        "size: resize it with adlib.protocols.Preprocess(size=...)")
    return DATASETS[name](split, root=root, download=download, verify=verify)
