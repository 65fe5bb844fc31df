"""Your own images as a dataset: a folder in MVTec AD's layout or a plain normal / abnormal one.

:func:`load_folder` (and :func:`adlib.data.load_dataset` given a folder path) reads one of two
layouts, detected from the folder's sub-folders (:func:`folder_layout`):

* **MVTec AD's** (``"mvtec"``)::

      mydata/train/good/*.png                  training images, all normal (label 0)
      mydata/test/good/*.png                   normal test images (label 0)
      mydata/test/<defect>/*.png               anomalous test images, one folder per defect
      mydata/ground_truth/<defect>/<name>_mask.png   optional: the mask of test/<defect>/<name>.*

  ``classes`` is ``["good", *sorted defect folder names]`` for both splits; a defect's label is
  its index in ``classes``, so every label other than 0 is an anomaly. ``train/`` holds ``good``
  only; ``test/`` needs ``good`` and at least one defect folder.
* **Plain** (``"plain"``)::

      mydata/normal/*.png      normal images
      mydata/abnormal/*.png    anomalous images
      mydata/masks/<name>_mask.png  or  <name>.png   optional: the mask of abnormal/<name>.*

  ``classes`` is ``["normal", "abnormal"]``. The folder has no train / test split, so one is made,
  deterministically: the normal images are ranked by the SHA-256 of ``"<seed>:<file name>"``
  (:data:`PLAIN_SPLIT_SEED`, ties broken by the name) and the first
  ``round(PLAIN_TRAIN_SHARE * n)`` (80 %, at least one, and one left for the test when there are
  two or more) form ``"train"``; ``"test"`` holds the other normals and every abnormal image.
  Ranking by a hash of the name, not by a permutation of the whole list, keeps the split stable
  when images are added: a new image moves at most one other image across the split.

A mask may be named ``<name>_mask.<ext>`` or ``<name>.<ext>`` in both layouts. Images are listed
per class folder (not recursively) and sorted by file name: train, then test in class order.
``info["files"]`` gives each image's path relative to the folder, in the order of ``images``.

Decoding (:func:`decode_image`, with Pillow): the extensions ``.png .jpg .jpeg .bmp .tif .tiff
.webp`` in any case; other files (``README.txt``, ``.DS_Store``), hidden files and sub-folders of
a class folder are skipped silently. Grey modes are ``1`` (to 0 / 255), ``L``, ``LA`` (alpha
dropped) and the 16-bit ones ``I;16``, ``I;16B``, ``I;16L`` and ``I`` (32-bit integers read as
16-bit: clipped to 0..65535, then scaled to 8 bits by ``round(v * 255 / 65535)``, so 65535
becomes 255 and 257 becomes 1). Every other mode is colour and becomes RGB: ``RGBA`` and ``P`` with
transparency have their alpha *dropped* (the colour stored under a transparent pixel is kept,
as torchvision's and anomalib's loaders do), ``CMYK`` and ``YCbCr`` are converted by Pillow,
``P`` through its palette. Pillow decodes WebP as RGB, so WebP images count as colour. A
dataset has 3 channels if any of its images (either split) is colour, else 1; grey images of a
colour dataset are repeated to 3 channels. Float images (mode ``F``) are refused. Only the first
frame of a multi-frame file is read; EXIF orientation is not applied (pixels as stored).

Size: every image of the dataset (both splits) must have the same size as the first one, unless
``size`` is given: then each image is resized to ``size x size`` (bilinear) and each mask too
(nearest). A mask must have the size of its image. MVTec AD's photos are 700 to 1024 pixels:
``size=256`` keeps a category in memory.

Masks (``ImageSet.masks``): uint8 ``N x 1 x H x W``, 255 where a mask file is non-zero (0 / 1
and 0 / 255 masks alike), 0 elsewhere and for every image without a mask (the normal ones);
``None`` when the folder holds no mask file at all (then for both splits).

Decoded tensors are cached in :func:`adlib.data.cache_dir` (``decoded/folder-*.pt``, written
atomically; never in the data folder), keyed on the folder's resolved path, its layout and
classes, the path, size and modification time of every image and mask of both splits, the split
and ``size``: a file added, removed or edited is decoded again. ``info["digest"]`` holds that
key (a stat signature, not a hash of the contents).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import DataError, ImageSet, _cached_object, _stat_signature, cache_dir

__all__ = ["load_folder", "folder_layout", "decode_image", "read_image", "image_files",
           "IMAGE_EXTENSIONS",
           "PLAIN_TRAIN_SHARE", "PLAIN_SPLIT_SEED", "LAYOUTS"]

#: File extensions read as images (compared in lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Share of the plain layout's normal images that forms the training split.
PLAIN_TRAIN_SHARE = 0.8
#: Seed of the plain layout's split (the prefix of the hashed file names).
PLAIN_SPLIT_SEED = 0
#: The two layouts, as error messages describe them.
LAYOUTS = ("MVTec AD's layout: train/good/, test/good/ and test/<defect>/ (optional "
           "ground_truth/<defect>/<name>_mask.png), or the plain layout: normal/ and abnormal/ "
           "(optional masks/<name>_mask.png)")

_GREY_8 = ("1", "L", "LA", "La")
_CACHE_VERSION = 1  # bump when decoding changes, so old cache files are not served


@dataclass
class _Entry:
    """One image of a folder dataset: its file, label and mask file (``None``: no mask)."""

    path: Path
    label: int
    mask: Path | None = None


@dataclass
class _Scan:
    """What a folder holds: its layout, class names and the images of each split."""

    folder: Path
    layout: str
    classes: list[str]
    splits: dict[str, list[_Entry]]
    has_masks: bool


# --------------------------------------------------------------------------- listing

def _sixteen_bit(mode: str) -> bool:
    return mode == "I" or mode.startswith("I;16")


def _grey(mode: str) -> bool:
    return mode in _GREY_8 or _sixteen_bit(mode)


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not _hidden(p))


def _image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name; other files are skipped."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not _hidden(p)
                  and p.suffix.lower() in IMAGE_EXTENSIONS)


def _class_images(folder: Path) -> list[Path]:
    """The images of a class folder. Raises DataError when it is missing or holds none."""
    if not folder.is_dir():
        raise DataError(f"{folder} not found: expected {LAYOUTS}")
    files = _image_files(folder)
    if not files:
        others = sorted(p.name for p in folder.iterdir() if not _hidden(p))
        held = f"; it holds only {', '.join(others[:3])}" + (" ..." if len(others) > 3 else "") \
            if others else ""
        raise DataError(f"{folder} holds no image ({' '.join(IMAGE_EXTENSIONS)}): an empty class "
                        f"folder{held}. Put its images there or remove the folder.")
    return files


def _match_masks(mask_dir: Path, images: list[Path], image_dir: Path) -> dict[Path, Path]:
    """Map each image of ``images`` (all in ``image_dir``) to its mask file in ``mask_dir``.

    A mask ``<name>_mask.<ext>`` or ``<name>.<ext>`` belongs to the image ``<name>.*``.

    Raises:
        DataError: a mask without its image, a mask matching two images, or two masks of one
            image.
    """
    by_stem: dict[str, list[Path]] = {}
    for p in images:
        by_stem.setdefault(p.stem, []).append(p)
    found: dict[Path, Path] = {}
    for mask in _image_files(mask_dir) if mask_dir.is_dir() else []:
        stem = mask.stem
        names = ([stem[:-len("_mask")]] if stem.endswith("_mask") else []) + [stem]
        name = next((n for n in names if n in by_stem), None)
        if name is None:
            raise DataError(f"mask {mask} has no image: expected {image_dir / names[0]}.<ext> "
                            f"(the mask <name>_mask.png belongs to {image_dir.name}/<name>.*). "
                            "Remove the mask or restore its image.")
        if len(by_stem[name]) > 1:
            raise DataError(f"mask {mask} matches {len(by_stem[name])} images "
                            f"({', '.join(p.name for p in by_stem[name])}): rename them so that "
                            "each has its own name")
        image = by_stem[name][0]
        if image in found:
            raise DataError(f"{image} has two masks, {found[image]} and {mask}: keep one")
        found[image] = mask
    return found


def _resolve(path) -> Path:
    folder = Path(os.path.expanduser(os.fspath(path)))
    if not folder.exists():
        raise DataError(f"dataset folder {folder} does not exist: give the path of a folder in "
                        f"{LAYOUTS}")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, not a folder of images: expected {LAYOUTS}")
    return folder.resolve()


def folder_layout(path: str | os.PathLike) -> str:
    """The layout of an image folder: ``"mvtec"`` (``train/``, ``test/``) or ``"plain"``
    (``normal/``, ``abnormal/``); see the module docstring.

    Raises:
        DataError: the path does not exist or is a file, or the folder is in neither layout (or
            in both).
    """
    folder = _resolve(path)
    mvtec = [n for n in ("train", "test") if (folder / n).is_dir()]
    plain = [n for n in ("normal", "abnormal") if (folder / n).is_dir()]
    if mvtec and plain:
        raise DataError(f"{folder} holds both {'/, '.join(mvtec)}/ and {'/, '.join(plain)}/: "
                        f"keep one layout ({LAYOUTS})")
    if mvtec:
        return "mvtec"
    if plain:
        return "plain"
    held = _subfolders(folder)
    held = f"it holds {', '.join(n + '/' for n in held[:6])}" if held else "it holds no folder"
    raise DataError(f"{folder} is not a dataset folder ({held}): expected {LAYOUTS}")


def _scan_mvtec(folder: Path) -> _Scan:
    train_dir, test_dir = folder / "train", folder / "test"
    for part in (train_dir, test_dir):
        if not part.is_dir():
            raise DataError(f"{part} not found: MVTec AD's layout needs train/good/, test/good/ "
                            "and test/<defect>/")
    extra = [n for n in _subfolders(train_dir) if n != "good"]
    if extra:
        raise DataError(f"{train_dir} holds {', '.join(n + '/' for n in extra)} besides good/: "
                        "in MVTec AD's layout the training split is good images only; move "
                        "defect images to test/<defect>/")
    defects = [n for n in _subfolders(test_dir) if n != "good"]
    if not defects:
        raise DataError(f"{test_dir} holds no defect folder besides good/: MVTec AD's layout "
                        "needs at least one test/<defect>/ of anomalous images")
    classes = ["good", *defects]
    train = [_Entry(p, 0) for p in _class_images(train_dir / "good")]
    test, by_class = [], {}
    for label, name in enumerate(classes):
        by_class[name] = _class_images(test_dir / name)
        test += [_Entry(p, label) for p in by_class[name]]
    masks: dict[Path, Path] = {}
    truth = folder / "ground_truth"
    if truth.is_dir():
        for name in _subfolders(truth):
            masks.update(_match_masks(truth / name, by_class.get(name, []), test_dir / name))
    for entry in test:
        entry.mask = masks.get(entry.path)
    return _Scan(folder, "mvtec", classes, {"train": train, "test": test}, bool(masks))


def _plain_split(normals: list[Path]) -> tuple[list[Path], list[Path]]:
    """Split the plain layout's normal images into train and test (module docstring)."""
    n = len(normals)
    n_train = min(max(int(round(PLAIN_TRAIN_SHARE * n)), 1), max(n - 1, 1))
    ranked = sorted(normals, key=lambda p: (
        hashlib.sha256(f"{PLAIN_SPLIT_SEED}:{p.name}".encode()).hexdigest(), p.name))
    chosen = set(ranked[:n_train])
    return [p for p in normals if p in chosen], [p for p in normals if p not in chosen]


def _scan_plain(folder: Path) -> _Scan:
    normals = _class_images(folder / "normal")
    abnormals = _class_images(folder / "abnormal")
    masks = _match_masks(folder / "masks", abnormals, folder / "abnormal")
    train, test_normals = _plain_split(normals)
    test = [_Entry(p, 0) for p in test_normals] + [_Entry(p, 1, masks.get(p)) for p in abnormals]
    return _Scan(folder, "plain", ["normal", "abnormal"],
                 {"train": [_Entry(p, 0) for p in train], "test": test}, bool(masks))


# --------------------------------------------------------------------------- decoding

def _unreadable(path: Path, err: Exception) -> DataError:
    return DataError(f"{path} is not a readable image ({type(err).__name__}: {err}): the file "
                     "is corrupt or not an image; replace or remove it")


def _check_mode(path: Path, mode: str) -> None:
    if mode == "F":
        raise DataError(f"{path} is a 32-bit float image (mode F): save it with 8 or 16 bits "
                        "per channel")


def _peek(path: Path) -> tuple[str, tuple[int, int]]:
    """The Pillow mode and ``(width, height)`` of an image file, from its header only."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            mode, size = im.mode, im.size
    except Exception as err:  # UnidentifiedImageError, OSError, DecompressionBombError, ...
        raise _unreadable(path, err) from err
    _check_mode(path, mode)
    return mode, size


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file into uint8 pixels (module docstring for the modes).

    Returns:
        ``H x W`` for a grey image (modes ``1``, ``L``, ``LA``, 16-bit ``I;16*`` and ``I``,
        scaled to 8 bits), ``H x W x 3`` RGB for every other mode (alpha dropped).

    Raises:
        DataError: the file is not a readable image (corrupt, truncated) or a float image.
    """
    from PIL import Image
    path = Path(path)
    try:
        with Image.open(path) as im:
            _check_mode(path, im.mode)
            if _sixteen_bit(im.mode):
                values = np.asarray(im.convert("I") if im.mode != "I" else im, dtype=np.int64)
                values = np.clip(values, 0, 65535)
                return ((values * 255 + 32767) // 65535).astype(np.uint8)
            if im.mode in _GREY_8:
                return np.asarray(im.convert("L"), dtype=np.uint8).copy()
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA")  # through the palette, transparency included
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except DataError:
        raise
    except Exception as err:
        raise _unreadable(path, err) from err


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """One image file as a uint8 tensor ``C x H x W`` (``C`` = 1 for grey, 3 for colour), decoded
    by :func:`decode_image`. Raises ``DataError`` as it does."""
    pixels = decode_image(path)
    return torch.from_numpy(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))


def image_files(inputs) -> list[Path]:
    """The image files among ``inputs`` (paths of files and folders, or one path): a file as
    given, a folder's images found recursively (sorted; hidden and non-image files skipped).

    Raises:
        FileNotFoundError: an input that does not exist.
        DataError: an input folder that holds no image, or no image at all.
    """
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    files = []
    for item in inputs:
        path = Path(item).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        if path.is_file():
            files.append(path)
            continue
        found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower()
                       in IMAGE_EXTENSIONS and not any(part.startswith(".") for part
                                                       in f.relative_to(path).parts))
        if not found:
            raise DataError(f"{path}: no image file in this folder or below (extensions: "
                            f"{', '.join(IMAGE_EXTENSIONS)})")
        files += found
    if not files:
        raise DataError("no image to score: give image files or folders")
    return files


def _header_pass(scan: _Scan, size: int | None) -> int:
    """Check sizes over every image and mask of the dataset (both splits) from their headers;
    return the dataset's channel count (3 if any image is colour, else 1).

    Raises:
        DataError: an unreadable file, an image of another size than the first (when ``size`` is
            ``None``), or a mask of another size than its image.
    """
    colour, first = False, None
    for entry in scan.splits["train"] + scan.splits["test"]:
        mode, wh = _peek(entry.path)
        colour = colour or not _grey(mode)
        if size is None:
            if first is None:
                first = (entry.path, wh)
            elif wh != first[1]:
                raise DataError(
                    f"{entry.path} is {wh[0]}x{wh[1]} pixels, expected {first[1][0]}x{first[1][1]} "
                    f"(the size of the first image, {first[0]}): the images of a dataset must "
                    "share one size. Load with size=N to resize every image and mask to N x N "
                    "(on the command line: --size N), or resize the files.")
        if entry.mask is not None:
            mask_wh = _peek(entry.mask)[1]
            if mask_wh != wh:
                raise DataError(f"mask {entry.mask} is {mask_wh[0]}x{mask_wh[1]} pixels but its "
                                f"image {entry.path} is {wh[0]}x{wh[1]}: a mask must have the "
                                "size of its image")
    return 3 if colour else 1


def _resize(pixels: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    from PIL import Image
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(pixels).resize((size, size), resample=resample))


def _decode_mask(path: Path, size: int | None) -> np.ndarray:
    """A mask file as uint8 ``H x W``: 255 where any channel is non-zero, else 0."""
    pixels = decode_image(path)
    if pixels.ndim == 3:
        pixels = pixels.max(axis=2)
    binary = np.where(pixels > 0, 255, 0).astype(np.uint8)
    return binary if size is None else _resize(binary, size, nearest=True)


def _decode_split(scan: _Scan, split: str, size: int | None) -> dict:
    """Decode one split: ``images`` (uint8 N x C x H x W), ``labels``, ``masks`` or ``None``."""
    from tqdm.auto import tqdm

    channels = _header_pass(scan, size)
    entries = scan.splits[split]
    images = labels = masks = None
    for i, entry in enumerate(tqdm(entries, desc=f"decoding {scan.folder.name} {split} images "
                                   "(cached after)", leave=False, mininterval=2)):
        pixels = decode_image(entry.path)
        if size is not None:
            pixels = _resize(pixels, size)
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[:, :, None], channels, axis=2)
        if images is None:
            h, w = pixels.shape[:2]
            images = np.empty((len(entries), h, w, channels), dtype=np.uint8)
            masks = np.zeros((len(entries), 1, h, w), dtype=np.uint8) if scan.has_masks else None
        if pixels.shape != images.shape[1:]:  # the header pass saw another size than decoded
            raise DataError(f"{entry.path} decodes to {pixels.shape[1]}x{pixels.shape[0]} "
                            f"pixels, expected {images.shape[2]}x{images.shape[1]}")
        images[i] = pixels
        if entry.mask is not None:
            masks[i, 0] = _decode_mask(entry.mask, size)
    return {"images": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
            "labels": torch.tensor([e.label for e in entries], dtype=torch.int64),
            "masks": None if masks is None else torch.from_numpy(masks)}


# --------------------------------------------------------------------------- cache

def _cache_key(scan: _Scan, split: str, size: int | None) -> str:
    files = sorted({p for entries in scan.splits.values() for e in entries
                    for p in (e.path, e.mask) if p is not None}, key=str)
    spec = {"version": _CACHE_VERSION, "folder": str(scan.folder), "layout": scan.layout,
            "classes": scan.classes, "stat": _stat_signature(files), "split": split,
            "size": size}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- loader

def load_folder(path: str | os.PathLike, split: str = "train", *,
                size: int | None = None) -> ImageSet:
    """Load one split of an image folder in MVTec AD's or the plain layout (module docstring).

    Args:
        path: the dataset folder (``~`` is expanded; relative to the working directory).
        split: ``"train"`` or ``"test"``.
        size: resize every image (bilinear) and mask (nearest) to ``size x size`` pixels;
            ``None`` keeps the native size, which all images must then share.

    Returns:
        An :class:`~adlib.data.ImageSet`: ``images`` uint8 ``N x C x H x W`` (C = 3 if any image
        of the folder is colour, else 1), ``labels`` int64 ``N`` (0 = normal, any other = an
        anomaly), ``classes`` (``["good", *defects]`` or ``["normal", "abnormal"]``), ``masks``
        uint8 ``N x 1 x H x W`` in {0, 255} or ``None`` (no mask file in the folder), and
        ``info`` with ``layout``, ``folder``, ``files`` (relative paths, in order), ``size``,
        ``channels``, ``digest`` (the cache key) and, for the plain layout, ``split_rule``.

    Raises:
        DataError: the path does not exist; the folder is in neither layout; a class folder
            holds no image; an image is unreadable; images differ in size and ``size`` is
            ``None``; a mask has no image or another size than its image; a bad ``split`` or
            ``size``. Each message names the file or folder.
    """
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}: use 'train' or 'test'")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer))
                             or size < 1):
        raise DataError(f"size={size!r} must be a positive number of pixels (or None)")
    size = None if size is None else int(size)
    layout = folder_layout(path)
    folder = _resolve(path)
    scan = _scan_mvtec(folder) if layout == "mvtec" else _scan_plain(folder)
    key = _cache_key(scan, split, size)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", folder.name)[:40]
    cached = cache_dir() / "decoded" / f"folder-{name}-{split}-{size or 'native'}-{key[:20]}.pt"
    obj = _cached_object(cached, lambda: _decode_split(scan, split, size))
    entries = scan.splits[split]
    images = obj["images"]
    info = {"layout": layout, "folder": str(folder), "size": size, "channels": images.shape[1],
            "files": [e.path.relative_to(folder).as_posix() for e in entries],
            "digest": key, "check": "structure"}
    if layout == "plain":
        info["split_rule"] = (f"train = the first {PLAIN_TRAIN_SHARE:.0%} of normal/ ranked by "
                              f"sha256('{PLAIN_SPLIT_SEED}:<file name>'); test = the other "
                              "normals and every abnormal image")
    kind = "MVTec AD layout" if layout == "mvtec" else "plain normal/abnormal layout"
    resized = f", resized to {size}x{size}" if size else ""
    return ImageSet(images, obj["labels"], list(scan.classes),
                    f"image folder {folder} ({kind}), {split} split{resized}", info,
                    masks=obj["masks"])
