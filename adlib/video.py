"""Video anomaly detection on UCSD Ped1/Ped2: frames, labels, masks and the patch protocol.

Data (Mahadevan et al., CVPR 2010). Both subsets share one layout, the official release's::

    UCSDped2/Train/Train001/001.tif ...            normal training clips (Ped2: 16, Ped1: 34)
    UCSDped2/Test/Test001/001.tif ...              test clips (Ped2: 12, Ped1: 36)
    UCSDped2/Test/Test001_gt/001.bmp ...           pixel masks (Ped1: only 10 clips have them)
    UCSDped2/Test/UCSDped2.m                       frame-level labels: 1-based ``gt_frame`` ranges

The book's offline copy keeps this layout with JPEG frames and PNG masks; the official release has
``.tif`` frames and ``.bmp`` masks, some named ``frameNNN.bmp``. Frames are sorted by the number in
their name, so every variant reads the same. A frame's label comes from ``UCSDpedN.m``
(1 = abnormal); where masks exist, a frame is abnormal exactly when its mask has a lit pixel.

Checks (``verify=True``): a folder holding exactly the files of the published offline copy of
Ped2 (``.jpg`` frames, ``.png`` masks, ``Test/UCSDped2.m``, ``UCSD_README.txt``, the published
frame counts; :func:`adlib.data.published_files`) must match its tree digest, else the load fails
as "corrupt or altered". Any other copy (the official release, Ped1, a partial copy) is checked
for structure and readability: a missing split folder, clip folder, frame, mask or label file
raises :class:`~adlib.data.DataError` naming it, and so does a frame or mask that cannot be
decoded. Before decoding, the structure check also counts what the official release holds, so a
partial copy (a clip missing its last frames, a missing clip or mask folder) is refused with an
error naming the folder, the expected and found count and the fix:

* Ped2: the clips ``Train001..Train016`` and ``Test001..Test012`` with the frames per clip of
  :data:`adlib.data.UCSD_PED2_FRAMES` (the official release's and the published copy's), and a
  ``TestNNN_gt`` folder with one mask per frame for every test clip;
* Ped1: the clips ``Train001..Train034`` and ``Test001..Test036`` (:data:`UCSD_PED1_CLIPS`, from
  the release's README). Its frames per clip are not documented in this project, so they are not
  counted; nor are its masks (only 10 test clips have them).

``verify=False`` skips the digest and the counts: a partial copy then loads what it holds (a
truncated test clip still needs labels and masks that fit its frames). Either way the decoded
clips are cached under the tree digest of the folder.

The patch protocol (thesis sections 3.4.2 and 4.4.2, after "Old is Gold" [64]; G2D section 4.3):

* each frame is cut into ``size x size`` patches (30) at ``stride`` (30: no overlap; G2D uses
  an overlap of 5, stride 25); the last row and column of patches are moved in so the grid covers
  the whole frame;
* **training** keeps the patches of the normal training clips that contain a moving object, which
  in a training clip can only be a pedestrian. "Moving" is defined reproducibly: a pixel moves
  when it differs by more than ``motion_threshold`` grey levels (25) from its clip's median
  frame over time (the static background, since pedestrians walk on); a patch is kept when at
  least ``min_motion`` (5%) of its pixels move;
* **testing** scores every patch of every test frame. A frame's score is its highest score over
  the patches that hold a moving object (the same motion rule, with the test clip's own median
  frame as background): the thesis evaluates "on patches that contain pedestrians or other
  objects" (section 4.4.2). Static background patches never occur in training, so a detector
  finds them all unfamiliar; taking the maximum over *all* patches lets a patch of grass decide
  every frame. We report both rules (moving patches: our default; all patches: beside it).
  A frame without a moving patch gets the lowest frame score of the test set. Frame-level AUROC
  and EER against the official labels; a localization map gives each pixel the highest score of
  the patches that cover it.
* **patch level** (the lab's public UCSD code scores patches, not frames, although the thesis
  calls its numbers "frame-level"): pedestrian test patches (moving, no mask pixel) against
  anomalous-object test patches (the official pixel mask covers at least
  :data:`PATCH_MIN_OVERLAP` = 30% of the patch); patches the mask only grazes, and static
  background, are left out (:func:`patch_labels`, :func:`patch_metrics`). Every Ped2 row of the
  bench reports both levels.

Memory: frames and patches stay uint8; only one test clip's patches are turned into float at a
time (:func:`score_clips`), so Ped2 is never held as float32 patches at once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import data as _data
from .data import (DataError, _cached, _check_split, _count_error, _download, cache_dir,
                   check_copy, find_dataset)
from .metrics import auroc, equal_error_rate
from .protocols import Preprocess

__all__ = ["VIDEO_DATASETS", "VideoSet", "parse_gt_ranges", "labels_from_ranges", "load_ucsd",
           "download_ucsd", "patch_positions", "extract_patches", "motion_mask", "moving_patches",
           "PatchSplit", "ucsd_patches", "score_clips", "motion_in_test_clips", "frame_scores",
           "frame_metrics", "PATCH_MIN_OVERLAP", "patch_labels", "patch_metrics",
           "localization_map", "clip_cuboids", "cuboid_frame_scores",
           "CuboidTransferSplit", "ucsd_transfer", "score_cuboid_clips"]

#: The video datasets: bench name -> (folder, labels file, frames per second).
VIDEO_DATASETS = {
    "ucsd_ped2": {"folder": "UCSDped2", "labels": "UCSDped2.m", "fps": 10},
    "ucsd_ped1": {"folder": "UCSDped1", "labels": "UCSDped1.m", "fps": 10},
}
#: Clips per split of UCSD Ped1's official release (its README: 34 training, 36 test clips).
UCSD_PED1_CLIPS = {"Train": 34, "Test": 36}
#: The official archive (both subsets); the site publishes no checksum, see download_ucsd.
UCSD_URL = "http://www.svcl.ucsd.edu/projects/anomaly/UCSD_Anomaly_Dataset.tar.gz"
_FRAME_SUFFIXES = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class VideoSet:
    """The clips of one split of a UCSD subset.

    Attributes:
        frames: one uint8 array ``T x H x W`` per clip (grey).
        names: the clips' folder names (``Train001``, ``Test004``, ...).
        labels: one bool array ``T`` per clip (True = abnormal frame); ``None`` for training.
        masks: one bool array ``T x H x W`` per clip, or ``None`` for a clip without masks;
            ``None`` altogether for training.
        source: which files the frames were decoded from.
    """

    frames: list
    names: list
    labels: list | None = None
    masks: list | None = None
    source: str = ""
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def num_frames(self) -> int:
        """Frames over all clips."""
        return int(sum(len(f) for f in self.frames))


# ----------------------------------------------------------------- labels

def parse_gt_ranges(text: str) -> list[list[tuple[int, int]]]:
    """The abnormal frame ranges of each test clip from an official ``UCSDpedN.m`` file.

    Each ``TestVideoFile{end+1}.gt_frame = [61:180];`` line gives one clip, in order; a line may
    hold several ranges (``[5:90, 140:200]``). Ranges are 1-based and inclusive, as in MATLAB.
    """
    clips = []
    for line in text.splitlines():
        if "gt_frame" not in line:
            continue
        body = re.search(r"\[(.*)\]", line)
        if body is None:
            raise DataError(f"cannot read the frame ranges of {line.strip()!r}")
        ranges = []
        for part in re.split(r"[,;]", body.group(1)):
            part = part.strip()
            if not part:
                continue
            bounds = part.split(":")
            try:
                lo, hi = (int(bounds[0]), int(bounds[-1]))
            except ValueError:
                raise DataError(f"cannot read the frame range {part!r} in {line.strip()!r}")
            if lo < 1 or hi < lo:
                raise DataError(f"frame range {part!r} is not 1-based and increasing")
            ranges.append((lo, hi))
        clips.append(ranges)
    if not clips:
        raise DataError("no gt_frame line found: not an official UCSDpedN.m label file")
    return clips


def labels_from_ranges(ranges: list[tuple[int, int]], num_frames: int) -> np.ndarray:
    """A bool array of ``num_frames`` with the 1-based inclusive ``ranges`` set to True."""
    labels = np.zeros(num_frames, dtype=bool)
    for lo, hi in ranges:
        if hi > num_frames:
            raise DataError(f"frame range {lo}:{hi} runs past the clip's {num_frames} frames")
        labels[lo - 1:hi] = True
    return labels


# ----------------------------------------------------------------- loading

def _frame_number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    if not digits:
        raise DataError(f"{path} has no frame number in its name")
    return int(digits[-1])


def _numbered(example: Path, number: int) -> Path:
    """``example`` with its frame number replaced by ``number`` (same zero padding)."""
    stem = re.sub(r"\d+(?=\D*$)", lambda m: f"{number:0{len(m.group())}d}", example.stem)
    return example.with_name(stem + example.suffix)


def _frame_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir()
             if p.suffix.lower() in _FRAME_SUFFIXES and not p.name.startswith(".")]
    if not files:
        raise DataError(f"{folder} holds no frames ({', '.join(_FRAME_SUFFIXES)} files)")
    files.sort(key=_frame_number)
    numbers = [_frame_number(p) for p in files]
    if numbers != list(range(1, len(files) + 1)):
        twice = [a for a, b in zip(files, files[1:]) if _frame_number(a) == _frame_number(b)]
        if twice:
            raise DataError(f"{folder} holds two frames numbered {_frame_number(twice[0])} "
                            f"({twice[0].name} and another): keep one file per frame")
        missing = next(n for n, got in enumerate(numbers + [0], 1) if got != n)
        raise DataError(f"{_numbered(files[0], missing)} is missing: the frames of {folder} must "
                        f"be numbered 1..{numbers[-1]} without gaps")
    return files


def _read_grey(files: list[Path]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    frames = []
    for p in files:
        try:
            with Image.open(p) as im:
                frames.append(np.asarray(im.convert("L"), dtype=np.uint8))
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"{p} is not a readable image ({err}): the file is corrupt; "
                            "restore it from the dataset's source") from err
    if len({f.shape for f in frames}) != 1:
        raise DataError(f"frames of {files[0].parent} differ in size")
    return np.stack(frames)


def _clip_folders(split_dir: Path, prefix: str) -> list[Path]:
    folders = sorted(p for p in split_dir.iterdir()
                     if p.is_dir() and re.fullmatch(rf"{prefix}\d+", p.name))
    if not folders:
        raise DataError(f"no {prefix}NNN clip folders in {split_dir}")
    return folders


def _split_dir(folder: Path, split: str) -> tuple[Path, str]:
    """``folder/Train`` or ``folder/Test`` and its clip prefix; raises when it is missing."""
    prefix = "Train" if split == "train" else "Test"
    split_dir = folder / prefix
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} not found: expected the official layout "
                        f"{folder.name}/{prefix}/{prefix}001/001.tif")
    return split_dir, prefix


def _release_counts(dataset: str, prefix: str) -> tuple[list, bool]:
    """What the official release of ``dataset`` holds in split ``prefix``: the frames of each
    clip (``None`` where not known) and whether every test clip has one mask per frame."""
    if dataset == "ucsd_ped2":
        return list(_data.UCSD_PED2_FRAMES[prefix]), prefix == "Test"
    if dataset == "ucsd_ped1":
        return [None] * UCSD_PED1_CLIPS[prefix], False
    return [], False


def _some(names: list[str], shown: int = 4) -> str:
    """``names`` joined by commas, the first ``shown`` only when there are more."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _missing_note(files: list[Path], expected: int) -> str:
    """`` (<first missing file> is missing, and the k after it)`` for a clip cut at its end."""
    if len(files) >= expected:
        return ""
    after = expected - len(files) - 1
    return (f" ({_numbered(files[-1], len(files) + 1)} is missing"
            f"{f', and the {after} after it' if after else ''})")


def _check_release_counts(folder: Path, dataset: str, split: str) -> None:
    """The counts of the structure check (``verify=True`` on a copy other than the published
    one), from the file names alone: the official release's clips, frames per clip and masks.

    Raises:
        DataError: a clip, frame, mask folder or mask is missing or extra; the message names the
            folder, the expected and found count and the fix (restore the files, or
            ``verify=False`` / ``--no-verify``).
    """
    split_dir, prefix = _split_dir(folder, split)
    per_clip, every_mask = _release_counts(dataset, prefix)
    if not per_clip:
        return
    clips = _clip_folders(split_dir, prefix)
    names = [c.name for c in clips]
    want = [f"{prefix}{k:03d}" for k in range(1, len(per_clip) + 1)]
    if names != want:
        missing = [n for n in want if n not in names]
        extra = [n for n in names if n not in want]
        note = "".join([f" ({_some(missing)} missing)" if missing else "",
                        f" ({_some(extra)} not in the release)" if extra else ""])
        raise _count_error(split_dir, len(names), len(want), "clip folders", note,
                           missing=bool(missing), extra=bool(extra))
    frames = {}
    for clip, expected in zip(clips, per_clip):
        files = _frame_files(clip)
        frames[clip.name] = len(files)
        if expected is not None and len(files) != expected:
            raise _count_error(clip, len(files), expected, "frames",
                               _missing_note(files, expected))
    if not every_mask:
        return
    for clip in clips:
        gt = split_dir / f"{clip.name}_gt"
        if not gt.is_dir():
            raise _count_error(gt, 0, frames[clip.name], "masks",
                               " (the folder is missing: every test clip has one mask per frame)")
        masks = _frame_files(gt)
        if len(masks) != frames[clip.name]:
            raise _count_error(gt, len(masks), frames[clip.name], "masks (one per frame)",
                               _missing_note(masks, frames[clip.name]))


def _decode_split(folder: Path, spec: dict, split: str):
    """Decode one split: frames (and for test: labels and masks), packed for the cache."""
    split_dir, prefix = _split_dir(folder, split)
    clips = _clip_folders(split_dir, prefix)
    frames = [_read_grey(_frame_files(c)) for c in tqdm(clips, desc=f"{folder.name} {split}",
                                                         unit="clip", leave=False)]
    out = {"names": [c.name for c in clips], "frames": frames}
    if split == "test":
        label_file = split_dir / spec["labels"]
        if not label_file.exists():
            raise DataError(f"{label_file} not found: the official frame labels are needed "
                            "to evaluate; restore the file from the release")
        ranges = parse_gt_ranges(label_file.read_text())
        if len(ranges) != len(clips):
            raise DataError(f"{label_file} labels {len(ranges)} clips but {split_dir} holds "
                            f"{len(clips)}")
        out["labels"] = [labels_from_ranges(r, len(f)) for r, f in zip(ranges, frames)]
        masks = []
        for c, f in zip(clips, frames):
            gt = split_dir / f"{c.name}_gt"
            if not gt.is_dir():
                masks.append(None)
                continue
            mask_files = _frame_files(gt)
            if len(mask_files) < len(f):
                raise DataError(f"{_numbered(mask_files[0], len(mask_files) + 1)} is missing: "
                                f"{gt} holds {len(mask_files)} masks for {len(f)} frames")
            m = _read_grey(mask_files) > 0
            if m.shape != f.shape:
                raise DataError(f"{gt} holds {m.shape[0]} masks of {m.shape[1:]} for "
                                f"{f.shape[0]} frames of {f.shape[1:]}")
            masks.append(m)
        out["masks"] = masks
    return out


def _pack(decoded: dict):
    """Turn decoded clips into (tensor dict, meta) for :func:`adlib.data._cached`."""
    lengths = torch.tensor([len(f) for f in decoded["frames"]])
    images = {"frames": torch.from_numpy(np.concatenate(decoded["frames"])), "lengths": lengths}
    if "labels" in decoded:
        images["labels"] = torch.from_numpy(np.concatenate(decoded["labels"]))
        has = [m is not None for m in decoded["masks"]]
        images["has_mask"] = torch.tensor(has)
        lit = [np.packbits(m, axis=-1) for m in decoded["masks"] if m is not None]
        images["masks"] = torch.from_numpy(np.concatenate(lit)) if lit else torch.zeros(0)
    return images, decoded["names"]


def _unpack(images: dict, names: list, width: int):
    ends = np.cumsum(images["lengths"].numpy())
    starts = ends - images["lengths"].numpy()
    frames = [images["frames"][s:e].numpy() for s, e in zip(starts, ends)]
    labels = masks = None
    if "labels" in images:
        labels = [images["labels"][s:e].numpy() for s, e in zip(starts, ends)]
        packed, masks, offset = images["masks"].numpy(), [], 0
        for has, f in zip(images["has_mask"].tolist(), frames):
            if not has:
                masks.append(None)
                continue
            masks.append(np.unpackbits(packed[offset:offset + len(f)], axis=-1,
                                       count=width).astype(bool))
            offset += len(f)
    return frames, labels, masks


def load_ucsd(dataset: str = "ucsd_ped2", split: str = "train", root=None,
              download: bool = False, verify: bool = True) -> VideoSet:
    """Load a split of UCSD Ped2 (``"ucsd_ped2"``) or Ped1 (``"ucsd_ped1"``).

    Args:
        dataset: a key of :data:`VIDEO_DATASETS`.
        split: ``"train"`` (normal clips) or ``"test"`` (clips with frame labels and masks).
        root: the data folder (default ``$ADLIB_DATA``).
        download: fetch the official archive when no data folder is configured (internet).
        verify: check the published offline copy against its tree digest, any other copy for
            structure, readability and the official counts (module docstring); ``False`` loads
            a partial copy on purpose.

    Returns:
        A :class:`VideoSet`: uint8 ``T x H x W`` frames per clip; for ``"test"`` also bool ``T``
        labels and bool ``T x H x W`` masks (``None`` for a clip without masks).
        ``info["check"]`` is ``"tree digest"``, ``"structure"`` or ``"none"`` (``verify=False``).

    Raises:
        DataError: unknown dataset or split; the folder is missing (or the download failed); the
            published copy does not match its digest; a file is missing or unreadable; with
            ``verify``, another copy does not hold the official clips, frames or masks.

    Decoded frames are cached in the project's cache folder, keyed by the tree's digest.
    """
    if dataset not in VIDEO_DATASETS:
        raise DataError(f"unknown video dataset {dataset!r}; available: "
                        f"{', '.join(VIDEO_DATASETS)}")
    _check_split(split)
    spec = VIDEO_DATASETS[dataset]
    folder = find_dataset(spec["folder"], root, download)
    if download and not folder.exists():
        _download(spec["folder"], folder.parent, fetch=lambda: download_ucsd(folder.parent))
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder of UCSD clips")
    digest, check = check_copy(folder, spec["folder"], verify)
    if check == "structure":  # on every load, cached or not, and before any decoding
        _check_release_counts(folder, dataset, split)
    images, names = _cached(f"{dataset}-{split}-{digest[:16]}",
                            lambda: _pack(_decode_split(folder, spec, split)))
    width = int(images["frames"].shape[-1])
    frames, labels, masks = _unpack(images, names, width)
    return VideoSet(frames, list(names), labels, masks,
                    f"{dataset} {split} frames in {folder / split.capitalize()}",
                    {"digest": digest, "check": check, "dataset": dataset, "split": split})


def download_ucsd(target: str | Path, sha256: str | None = None) -> Path:  # pragma: no cover
    """Fetch and unpack the official UCSD archive (both subsets) into ``target``.

    The UCSD site publishes no checksum for the archive, so ``sha256`` is checked only when the
    caller gives one; the unpacked ``UCSDped2/Test/UCSDped2.m`` is then checked against the
    official labels (12 clips, 1648 abnormal frames of 2010), which catches a truncated or
    altered download. Needs internet.
    """
    from torchvision.datasets.utils import download_url, extract_archive
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    archive = target / Path(UCSD_URL).name
    download_url(UCSD_URL, str(target), archive.name)
    if sha256 is not None:
        from .data import _sha256
        if _sha256(archive) != sha256:
            raise DataError(f"{archive} does not match the SHA-256 given; download it again")
    extract_archive(str(archive), str(target))
    for sub in ("UCSDped1", "UCSDped2"):
        unpacked = target / "UCSD_Anomaly_Dataset.v1p2" / sub
        if unpacked.exists() and not (target / sub).exists():
            unpacked.rename(target / sub)
    labels = parse_gt_ranges((target / "UCSDped2" / "Test" / "UCSDped2.m").read_text())
    if len(labels) != 12:
        raise DataError("the downloaded UCSDped2.m does not list the 12 official test clips")
    return target


# ----------------------------------------------------------------- patches

def patch_positions(height: int, width: int, size: int = 30, stride: int = 30) -> np.ndarray:
    """Top-left corners ``P x 2`` (row, column) of a grid of ``size`` patches at ``stride``.

    The last row and column are moved in to end at the frame's edge, so every pixel is covered
    (240 x 360 at size 30: 8 x 12 = 96 patches at stride 30; 10 x 15 = 150 at stride 25).
    """
    if size < 1 or stride < 1:
        raise ValueError(f"patch size {size} and stride {stride} must be positive")
    if size > min(height, width):
        raise ValueError(f"patches of {size} pixels do not fit frames of {height} x {width}")

    def starts(n):
        s = list(range(0, n - size + 1, stride))
        if s[-1] != n - size:
            s.append(n - size)
        return s

    rows, cols = starts(height), starts(width)
    return np.array([(r, c) for r in rows for c in cols], dtype=np.int64)


def extract_patches(frames: np.ndarray, positions: np.ndarray, size: int = 30) -> np.ndarray:
    """Patches of ``frames`` (``T x H x W``) at ``positions``, ``T x P x s x s``, same dtype."""
    windows = np.lib.stride_tricks.sliding_window_view(frames, (size, size), axis=(1, 2))
    return windows[:, positions[:, 0], positions[:, 1]]


def motion_mask(frames: np.ndarray, threshold: int = 25) -> np.ndarray:
    """Pixels of a clip that differ from its median frame by more than ``threshold`` levels.

    The median over time is the static background of a fixed camera where people walk on, so
    the mask lights moving objects (in training clips: pedestrians). ``T x H x W`` bool.
    """
    background = np.median(frames, axis=0).astype(np.int16)
    return np.abs(frames.astype(np.int16) - background) > threshold


def moving_patches(frames: np.ndarray, positions: np.ndarray, size: int = 30,
                   threshold: int = 25, min_motion: float = 0.05) -> np.ndarray:
    """Which patches of a clip hold a moving object: ``T x P`` bool (see :func:`motion_mask`)."""
    moving = extract_patches(motion_mask(frames, threshold), positions, size)
    return moving.mean(axis=(2, 3)) >= min_motion


# ----------------------------------------------------------------- the protocol

@dataclass
class PatchSplit:
    """One instance of the patch protocol.

    ``X_train`` and ``X_val`` are float model input (training patches with a moving object; the
    validation patches are held out from them, normals only). ``test`` keeps the test clips as
    uint8 frames; :func:`score_clips` cuts and scores them clip by clip.
    """

    X_train: torch.Tensor
    X_val: torch.Tensor
    test: VideoSet
    positions: np.ndarray
    size: int
    preprocess: Preprocess
    motion_threshold: int = 25
    min_motion: float = 0.05
    info: dict = field(default_factory=dict)


def _training_patches(train: VideoSet, positions, size, threshold, min_motion) -> np.ndarray:
    kept = []
    for frames in train.frames:
        keep = moving_patches(frames, positions, size, threshold, min_motion)
        kept.append(extract_patches(frames, positions, size)[keep])
    return np.concatenate(kept)


def ucsd_patches(dataset: str = "ucsd_ped2", seed: int = 0, *, size: int = 30,
                 stride: int = 30, motion_threshold: int = 25, min_motion: float = 0.05,
                 val_size: float = 0.1, max_train: int | None = None,
                 preprocess: Preprocess = Preprocess(), root=None, verify: bool = True,
                 train_set: VideoSet | None = None, test_set: VideoSet | None = None
                 ) -> PatchSplit:
    """The patch protocol on UCSD (module docstring): training patches and the test clips.

    The training patches (uint8) are cached by their parameters; ``max_train`` draws a seeded
    subset of them, and ``val_size`` of the rest is held out for validation.
    """
    if not 0 < val_size < 1:
        raise ValueError(f"val_size={val_size} must be a fraction in (0, 1)")
    train = train_set or load_ucsd(dataset, "train", root=root, verify=verify)
    test = test_set or load_ucsd(dataset, "test", root=root, verify=verify)
    height, width = train.frames[0].shape[1:]
    positions = patch_positions(height, width, size, stride)
    key = (f"patches-{dataset}-{train.info.get('digest', '')[:16]}-s{size}-st{stride}"
           f"-t{motion_threshold}-m{min_motion}")
    path = cache_dir() / "patches" / f"{key}.npy"
    if path.exists():
        patches = np.load(path)
    else:
        patches = _training_patches(train, positions, size, motion_threshold, min_motion)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npy")
        np.save(tmp, patches)
        tmp.replace(path)
    if len(patches) < 2:
        raise DataError(f"only {len(patches)} training patches hold motion: lower "
                        f"motion_threshold ({motion_threshold}) or min_motion ({min_motion})")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(patches))
    if max_train is not None:
        order = order[:max_train]
    n_val = max(1, int(round(val_size * len(order))))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    as_input = lambda idx: preprocess(torch.from_numpy(patches[idx][:, None]))  # noqa: E731
    info = {"dataset": dataset, "seed": seed, "patch_size": size, "stride": stride,
            "motion_threshold": motion_threshold, "min_motion": min_motion,
            "patches_per_frame": len(positions), "moving_patches": int(len(patches)),
            "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
            "n_test_frames": test.num_frames,
            "n_test_abnormal": int(sum(lbl.sum() for lbl in test.labels)),
            "source": test.source, "digest": test.info.get("digest")}
    return PatchSplit(as_input(train_idx), as_input(val_idx), test, positions, size,
                      preprocess, motion_threshold, min_motion, info)


def score_clips(detector, split: PatchSplit, clips=None, verbose: bool = False) -> list:
    """Score every patch of every test frame, one clip at a time: a ``T x P`` array per clip."""
    out = []
    chosen = range(len(split.test)) if clips is None else clips
    for i in tqdm(chosen, desc="scoring clips", unit="clip", disable=not verbose):
        frames = split.test.frames[i]
        patches = extract_patches(frames, split.positions, split.size)
        t, p = patches.shape[:2]
        x = split.preprocess(torch.from_numpy(np.ascontiguousarray(
            patches.reshape(t * p, 1, split.size, split.size))))
        out.append(np.asarray(detector.score(x), dtype=np.float64).reshape(t, p))
    return out


def motion_in_test_clips(split: PatchSplit, clips=None) -> list:
    """Which patches of each test frame hold a moving object: a ``T x P`` bool array per clip,
    by the training rule with the test clip's own median frame as background (no labels)."""
    chosen = range(len(split.test)) if clips is None else clips
    return [moving_patches(split.test.frames[i], split.positions, split.size,
                           split.motion_threshold, split.min_motion) for i in chosen]


def frame_scores(patch_scores: list, keep: list | None = None) -> list:
    """A frame's score is its highest patch score: one array ``T`` per clip.

    With ``keep`` (``T x P`` bool per clip, from :func:`motion_in_test_clips`) only the kept patches
    count; a frame with none gets the lowest frame score over all clips.
    """
    if keep is None:
        return [s.max(axis=1) for s in patch_scores]
    masked = [np.where(k, s, -np.inf).max(axis=1) for s, k in zip(patch_scores, keep)]
    finite = np.concatenate(masked)
    floor = finite[np.isfinite(finite)].min() if np.isfinite(finite).any() else 0.0
    return [np.where(np.isfinite(m), m, floor) for m in masked]


def _minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def frame_metrics(scores: list, labels: list) -> dict:
    """Frame-level AUROC and EER over all test frames, pooled across clips.

    ``auroc``/``eer`` use the raw scores. ``auroc_per_clip_norm``/``eer_per_clip_norm`` first
    min-max scale each clip's scores, as many video papers do; that uses each test clip's own
    score range (not its labels), so we report it beside, never instead.
    """
    y = np.concatenate(labels).astype(int)
    raw = np.concatenate(scores)
    norm = np.concatenate([_minmax(s) for s in scores])
    return {"auroc": auroc(y, raw), "eer": equal_error_rate(y, raw),
            "auroc_per_clip_norm": auroc(y, norm), "eer_per_clip_norm": equal_error_rate(y, norm),
            "n_frames": int(len(y)), "n_abnormal": int(y.sum())}


#: Patch-level labels: a test patch is anomalous when the official pixel mask covers at least
#: this share of its pixels (our rule; the lab's code ships its patches without the rule).
PATCH_MIN_OVERLAP = 0.3


def patch_labels(split: PatchSplit, clips=None, min_overlap: float = PATCH_MIN_OVERLAP,
                 moving: list | None = None) -> list:
    """Patch-level labels of the test clips: one ``T x P`` int8 array per clip.

    ``1`` (anomalous object): the official pixel mask covers at least ``min_overlap`` of the
    patch's pixels. ``0`` (pedestrian): the patch holds a moving object
    (:func:`motion_in_test_clips`) and no mask pixel at all. ``-1`` (left out): static
    background, and patches that the mask touches below ``min_overlap`` (part object, part
    pedestrian or ground). This is the lab's UCSD protocol as its public code runs it (one array
    of pedestrian test patches against one of anomalous-object patches, no frame aggregation);
    the rule that cuts them is ours, since the lab's patches ship without it. ``moving``: the
    clips' :func:`motion_in_test_clips` when the caller has them already (computed otherwise).

    Raises:
        ValueError: ``min_overlap`` outside (0, 1], or a test clip without masks.
    """
    if not 0 < min_overlap <= 1:
        raise ValueError(f"min_overlap={min_overlap} must lie in (0, 1]")
    chosen = list(range(len(split.test)) if clips is None else clips)
    masks = split.test.masks or [None] * len(split.test)
    missing = [split.test.names[i] for i in chosen if masks[i] is None]
    if missing:
        raise ValueError(f"patch-level labels need the pixel masks; {', '.join(missing)} has none")
    out = []
    for i, moves in zip(chosen, moving or motion_in_test_clips(split, chosen)):
        cover = extract_patches(masks[i], split.positions, split.size).mean(axis=(2, 3))
        labels = np.full(cover.shape, -1, dtype=np.int8)
        labels[moves & (cover == 0)] = 0
        labels[cover >= min_overlap] = 1
        out.append(labels)
    return out


def patch_metrics(patch_scores: list, labels: list) -> dict:
    """Patch-level AUROC and EER: every labelled test patch (``labels`` from
    :func:`patch_labels`, ``-1`` left out) pooled over clips, with the counts of each kind."""
    y = np.concatenate([lbl.reshape(-1) for lbl in labels])
    s = np.concatenate([np.asarray(sc).reshape(-1) for sc in patch_scores])
    if len(y) != len(s):
        raise ValueError(f"{len(s)} patch scores for {len(y)} patch labels")
    keep = y >= 0
    y, s = y[keep].astype(int), s[keep]
    return {"auroc": auroc(y, s), "eer": equal_error_rate(y, s), "n_normal": int((y == 0).sum()),
            "n_anomalous": int(y.sum())}


def localization_map(patch_scores: np.ndarray, positions: np.ndarray, size: int,
                     shape: tuple) -> np.ndarray:
    """A frame's ``H x W`` map: each pixel gets the highest score of the patches covering it."""
    out = np.full(shape, -np.inf)
    for (r, c), s in zip(positions, patch_scores):
        block = out[r:r + size, c:c + size]
        np.maximum(block, s, out=block)
    return out


# ----------------------------------------------------------------- IWAD's video transfer

def clip_cuboids(frames: np.ndarray, length: int = 16, stride: int = 8,
                 side: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Cuboids of ``length`` adjacent frames, resized to ``side x side``, every ``stride`` frames
    (the last window is moved to end at the clip's last frame, so every frame is covered).

    Returns uint8 cuboids ``N x 1 x length x side x side`` and their first frames ``N``.
    """
    t = len(frames)
    if t < length:
        raise DataError(f"a clip of {t} frames is shorter than one cuboid ({length} frames)")
    if stride < 1:
        raise ValueError(f"stride={stride} must be at least 1")
    x = torch.from_numpy(np.ascontiguousarray(frames)).float()[:, None]
    x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear",
                                        align_corners=False)
    small = x.round_().clamp_(0, 255).to(torch.uint8)[:, 0].numpy()
    starts = np.arange(0, t - length + 1, stride)
    if starts[-1] != t - length:
        starts = np.r_[starts, t - length]
    return np.stack([small[s:s + length] for s in starts])[:, None], starts


def cuboid_frame_scores(scores: np.ndarray, starts: np.ndarray, num_frames: int,
                        length: int = 16) -> np.ndarray:
    """A frame's score: the mean score of the cuboids that hold it."""
    total, count = np.zeros(num_frames), np.zeros(num_frames)
    for score, start in zip(np.asarray(scores, dtype=np.float64), starts):
        total[start:start + length] += score
        count[start:start + length] += 1
    if (count == 0).any():
        raise ValueError("some frames are in no cuboid: the starts do not cover the clip")
    return total / count


@dataclass
class CuboidTransferSplit:
    """IWAD's video transfer (section 4.1): source cuboids (normal training clips), the
    target's unlabelled cuboids, and the target's test clips to score frame by frame."""

    X_source: torch.Tensor
    X_val: torch.Tensor
    X_target: torch.Tensor
    X_target_normals: torch.Tensor
    test: VideoSet
    length: int
    stride: int
    side: int
    scale: str = "pm1"
    info: dict = field(default_factory=dict)

    def cuboids(self, frames: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Model input and first frames of the cuboids of one clip."""
        raw, starts = clip_cuboids(frames, self.length, self.stride, self.side)
        return _cuboid_input(raw, self.scale), starts


def _cuboid_input(raw: np.ndarray, scale: str) -> torch.Tensor:
    x = torch.from_numpy(raw)
    n, c, t, h, w = x.shape
    return Preprocess(scale=scale)(x.reshape(n, c * t, h, w)).reshape(n, c, t, h, w)


def ucsd_transfer(source: str = "ucsd_ped1", target: str = "ucsd_ped2", seed: int = 0, *,
                  length: int = 16, stride: int = 8, side: int = 64, val_size: float = 0.1,
                  max_source: int | None = None, max_target: int | None = None,
                  scale: str = "pm1", root=None, verify: bool = True,
                  sets: dict | None = None) -> CuboidTransferSplit:
    """IWAD's video transfer protocol (section 4.1, Table 2).

    Source: cuboids of the source's normal training clips (``val_size`` held out). Target: the
    cuboids of the target's *test* clips, unlabelled (UCSD's training clips hold no anomaly; the
    paper does not say which target clips it adapts on, and the unsupervised methods of its
    Table 2 work on the test videos). Test: the target's test clips, scored frame by frame.
    ``X_target_normals`` holds the cuboids of the target's training clips (the semi-supervised
    reference).
    ``side`` is 64 by default (the paper: 256; CPU budget). ``sets`` maps ``(name, split)`` to
    loaded :class:`VideoSet` objects.
    """
    if not 0 < val_size < 1:
        raise ValueError(f"val_size={val_size} must be a fraction in (0, 1)")
    sets = sets or {}

    def load(name, part):
        found = sets.get((name, part))
        return found if found is not None else load_ucsd(name, part, root=root, verify=verify)

    rng = np.random.default_rng(seed)

    def cuboids(videos: VideoSet) -> np.ndarray:
        return np.concatenate([clip_cuboids(f, length, stride, side)[0] for f in videos.frames])

    def capped(x: np.ndarray) -> np.ndarray:
        if max_target is None or max_target >= len(x):
            return x
        return x[np.sort(rng.choice(len(x), max_target, replace=False))]

    src = cuboids(load(source, "train"))
    order = rng.permutation(len(src))
    if max_source is not None:
        order = order[:max_source]
    n_val = max(1, int(round(val_size * len(order))))
    val_idx, src_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    test = load(target, "test")
    tgt, tgt_normal = cuboids(test), cuboids(load(target, "train"))
    tgt, tgt_normal = capped(tgt), capped(tgt_normal)
    info = {"protocol": "video_transfer", "source": source, "target": target, "seed": seed,
            "length": length, "stride": stride, "side": side, "n_source": int(len(src_idx)),
            "n_val": int(len(val_idx)), "n_target": int(len(tgt)),
            "n_test_frames": test.num_frames,
            "n_test_abnormal": int(sum(lbl.sum() for lbl in test.labels))}
    as_input = [_cuboid_input(x, scale) for x in (src[src_idx], src[val_idx], tgt, tgt_normal)]
    return CuboidTransferSplit(*as_input, test, length, stride, side, scale, info)


def score_cuboid_clips(detector, split: CuboidTransferSplit) -> list:
    """Frame scores of every test clip: each frame gets the mean score of its cuboids."""
    out = []
    for frames in split.test.frames:
        X, starts = split.cuboids(frames)
        out.append(cuboid_frame_scores(detector.score(X), starts, len(frames), split.length))
    return out
