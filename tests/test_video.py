"""UCSD video: loaders on generated trees in the official layouts, the patch protocol, frame-level
metrics, localization, and the bench command on a video dataset."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adlib.bench import run_grid
from adlib.data import DataError
from adlib.protocols import Preprocess
from adlib.results import read_rows
from adlib.video import (PatchSplit, VideoSet, patch_labels, patch_metrics)
from adlib.video import (extract_patches, frame_metrics, frame_scores, labels_from_ranges,
                         load_ucsd, localization_map, motion_mask, moving_patches,
                         parse_gt_ranges, patch_positions, score_clips, motion_in_test_clips,
                         ucsd_patches, clip_cuboids,
                         cuboid_frame_scores, score_cuboid_clips, ucsd_transfer)

H, W = 48, 72  # small frames; the real ones are 240 x 360 (Ped2) and 158 x 238 (Ped1)
BACKGROUND = 60


@dataclass
class Video:
    root: Path
    train: list  # uint8 T x H x W per clip
    test: list
    labels: list  # bool T per test clip
    masks: list  # bool T x H x W per test clip, or None


def _clip(rng, t: int, square: int = 12, anomaly_from: int | None = None) -> tuple:
    """A grey clip with a bright square walking right; from ``anomaly_from`` a dark square too."""
    frames = np.full((t, H, W), BACKGROUND, dtype=np.uint8)
    frames += rng.integers(0, 4, size=frames.shape, dtype=np.uint8)
    masks = np.zeros((t, H, W), dtype=bool)
    for i in range(t):
        c = (3 * i) % (W - square)
        frames[i, 10:10 + square, c:c + square] = 220
        if anomaly_from is not None and i >= anomaly_from:
            frames[i, 30:30 + square, 40:40 + square] = 0
            masks[i, 30:30 + square, 40:40 + square] = True
    return frames, masks


def write_ucsd(root: Path, folder: str = "UCSDped2", frame_ext: str = ".tif",
               mask_ext: str = ".bmp", mask_prefix: str | dict = "", n_train: int = 2,
               n_test: int = 2, t: int = 12, gt_lines=None, masked=None) -> Video:
    """Write a UCSD tree in the official release's layout (``.tif`` frames, ``.bmp`` masks).

    ``mask_prefix`` prefixes the mask files' names (the release names some ``frameNNN.bmp``);
    a dict gives it by test clip number (default ``""``).
    """
    rng = np.random.default_rng(0)
    base = root / folder
    train, test, labels, masks = [], [], [], []
    for k in range(1, n_train + 1):
        frames, _ = _clip(rng, t)
        d = base / "Train" / f"Train{k:03d}"
        d.mkdir(parents=True)
        for i, f in enumerate(frames, 1):
            Image.fromarray(f).save(d / f"{i:03d}{frame_ext}")
        train.append(frames)
    lines = ["TestVideoFile = {};"]
    for k in range(1, n_test + 1):
        start = t // 2 + 1  # 1-based first abnormal frame
        frames, m = _clip(rng, t, anomaly_from=start - 1)
        d = base / "Test" / f"Test{k:03d}"
        d.mkdir(parents=True)
        for i, f in enumerate(frames, 1):
            Image.fromarray(f).save(d / f"{i:03d}{frame_ext}")
        has_mask = masked is None or k in masked
        if has_mask:
            g = base / "Test" / f"Test{k:03d}_gt"
            g.mkdir()
            prefix = mask_prefix.get(k, "") if isinstance(mask_prefix, dict) else mask_prefix
            for i, mm in enumerate(m, 1):
                Image.fromarray(mm.astype(np.uint8) * 255).save(g / f"{prefix}{i:03d}{mask_ext}")
        lines.append(f"TestVideoFile{{end+1}}.gt_frame = [{start}:{t}];")
        test.append(frames)
        labels.append(np.arange(1, t + 1) >= start)
        masks.append(m if has_mask else None)
    if gt_lines is not None:
        lines = ["TestVideoFile = {};", *gt_lines]
    (base / "Test" / f"{folder}.m").write_text("\n".join(lines) + "\n")
    return Video(root, train, test, labels, masks)


@pytest.fixture
def ped2(tmp_path) -> Video:
    return write_ucsd(tmp_path, "UCSDped2", ".tif", ".bmp", mask_prefix="frame")


# ----------------------------------------------------------------- labels

def test_parse_gt_ranges_reads_official_lines_and_multi_ranges():
    text = ("TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [61:180];\n"
            "TestVideoFile{end+1}.gt_frame = [5:90, 140:200];\n")
    assert parse_gt_ranges(text) == [[(61, 180)], [(5, 90), (140, 200)]]
    labels = labels_from_ranges([(2, 3), (5, 5)], 6)
    assert labels.tolist() == [False, True, True, False, True, False]


@pytest.mark.parametrize("text, match", [
    ("nothing here", "no gt_frame"),
    ("TestVideoFile{end+1}.gt_frame = [0:10];", "1-based"),
    ("TestVideoFile{end+1}.gt_frame = [a:b];", "cannot read"),
])
def test_parse_gt_ranges_rejects_bad_files(text, match):
    with pytest.raises(DataError, match=match):
        parse_gt_ranges(text)


def test_labels_past_the_clip_are_an_error():
    with pytest.raises(DataError, match="runs past"):
        labels_from_ranges([(1, 9)], 8)


def test_real_ped2_label_file_gives_the_published_counts():
    from conftest import real_data_root
    path = real_data_root() / "UCSDped2" / "Test" / "UCSDped2.m"
    if not path.exists():
        pytest.skip("the offline UCSDped2 copy is not here")
    ranges = parse_gt_ranges(path.read_text())
    lengths = [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]
    assert len(ranges) == 12
    assert sum(labels_from_ranges(r, n).sum() for r, n in zip(ranges, lengths)) == 1648


# ----------------------------------------------------------------- loaders

def test_official_ped2_layout_loads_frames_labels_and_masks(ped2):
    train = load_ucsd("ucsd_ped2", "train", root=ped2.root, verify=False)
    test = load_ucsd("ucsd_ped2", "test", root=ped2.root, verify=False)
    assert train.names == ["Train001", "Train002"] and test.names == ["Test001", "Test002"]
    assert train.labels is None and train.masks is None
    for got, want in zip(train.frames + test.frames, ped2.train + ped2.test):
        assert got.dtype == np.uint8 and np.array_equal(got, want)  # .tif is lossless
    for got, want in zip(test.labels, ped2.labels):
        assert np.array_equal(got, want)
    for got, want in zip(test.masks, ped2.masks):
        assert got.dtype == bool and np.array_equal(got, want)


def test_decoded_clips_are_cached_and_reread_identically(ped2, isolated_cache):
    first = load_ucsd("ucsd_ped2", "test", root=ped2.root, verify=False)
    assert list((isolated_cache / "decoded").glob("ucsd_ped2-test-*.pt"))
    second = load_ucsd("ucsd_ped2", "test", root=ped2.root, verify=False)
    for a, b in zip(first.masks + first.frames, second.masks + second.frames):
        assert np.array_equal(a, b)


def test_ped1_layout_with_partial_masks_and_two_ranges(tmp_path):
    video = write_ucsd(tmp_path, "UCSDped1", ".tif", ".bmp", n_test=2, t=10, masked={2},
                       gt_lines=["TestVideoFile{end+1}.gt_frame = [2:3, 6:10];",
                                 "TestVideoFile{end+1}.gt_frame = [6:10];"])
    test = load_ucsd("ucsd_ped1", "test", root=video.root, verify=False)
    assert test.masks[0] is None and test.masks[1] is not None
    assert test.labels[0].tolist() == [False, True, True, False, False] + [True] * 5


def test_offline_copy_layout_with_jpeg_and_png(tmp_path):
    video = write_ucsd(tmp_path, "UCSDped2", ".jpg", ".png")
    test = load_ucsd("ucsd_ped2", "test", root=video.root, verify=False)
    assert test.frames[0].shape == (12, H, W)
    assert np.abs(test.frames[0].astype(int) - video.test[0]).mean() < 3  # JPEG is lossy
    assert np.array_equal(test.masks[0], video.masks[0])  # PNG is not


def test_official_release_layout_loads_verified(tmp_path, monkeypatch):
    """The official release (.tif frames, .bmp masks, some named frameNNN.bmp) is not the
    published offline copy: it is checked for structure (with the official frame counts, here
    set to the generated ones) and loads with verify=True."""
    import adlib.data as data
    monkeypatch.setattr(data, "UCSD_PED2_FRAMES", {"Train": [12, 12], "Test": [12, 12, 12]})
    video = write_ucsd(tmp_path, "UCSDped2", ".tif", ".bmp", n_test=3, mask_prefix={2: "frame"})
    train = load_ucsd("ucsd_ped2", "train", root=video.root, verify=True)
    test = load_ucsd("ucsd_ped2", "test", root=video.root, verify=True)
    assert test.info["check"] == "structure" and test.names == ["Test001", "Test002", "Test003"]
    for got, want in zip(train.frames + test.frames, video.train + video.test):
        assert np.array_equal(got, want)
    for got, want in zip(test.masks, video.masks):
        assert np.array_equal(got, want)
    assert [lbl.tolist() for lbl in test.labels] == [lbl.tolist() for lbl in video.labels]


def test_official_layout_names_a_missing_or_unreadable_file(tmp_path, monkeypatch):
    import adlib.data as data
    monkeypatch.setattr(data, "UCSD_PED2_FRAMES", {"Train": [12, 12], "Test": [12, 12]})
    video = write_ucsd(tmp_path, "UCSDped2", ".tif", ".bmp", mask_prefix={2: "frame"})
    test_dir = video.root / "UCSDped2" / "Test"
    (test_dir / "Test002_gt" / "frame012.bmp").unlink()
    with pytest.raises(DataError, match="Test002_gt/frame012.bmp is missing"):
        load_ucsd("ucsd_ped2", "test", root=video.root, verify=True)
    (test_dir / "Test001" / "005.tif").unlink()
    with pytest.raises(DataError, match="Test001/005.tif is missing.*without gaps"):
        load_ucsd("ucsd_ped2", "test", root=video.root, verify=True)
    bad = video.root / "UCSDped2" / "Train" / "Train002" / "003.tif"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match="Train002/003.tif is not a readable image"):
        load_ucsd("ucsd_ped2", "train", root=video.root, verify=True)


def test_published_ped2_layout_is_digest_checked(tmp_path, monkeypatch):
    """A folder with exactly the published copy's file list (.jpg frames, .png masks, the .m and
    README files, the published frame counts: here those of the generated tree) is taken for the
    published copy and must match its digest; without the README it is another copy."""
    import adlib.data as data
    video = write_ucsd(tmp_path, "UCSDped2", ".jpg", ".png")
    readme = video.root / "UCSDped2" / "UCSD_README.txt"
    readme.write_text("UCSD Anomaly Detection Dataset\n")
    monkeypatch.setattr(data, "UCSD_PED2_FRAMES", {"Train": [12, 12], "Test": [12, 12]})
    with pytest.raises(DataError, match="published tree digest of UCSDped2.*corrupt or altered"):
        load_ucsd("ucsd_ped2", "test", root=video.root, verify=True)
    assert load_ucsd("ucsd_ped2", "test", root=video.root, verify=False).info["check"] == "none"
    readme.unlink()
    assert load_ucsd("ucsd_ped2", "test", root=video.root).info["check"] == "structure"


# ----------------------------------------------------------------- partial copies

PARTIAL_FIX = (r"restore the missing files from the official release, or run with verify=False "
               r"/ --no-verify to use a partial copy on purpose")


@pytest.fixture
def small_release(monkeypatch):
    """The official Ped2 frame counts set to those of :func:`write_ucsd`'s default tree."""
    import adlib.data as data
    monkeypatch.setattr(data, "UCSD_PED2_FRAMES", {"Train": [12, 12], "Test": [12, 12]})


def test_clip_cut_at_its_end_is_refused(tmp_path, small_release):
    """A clip missing its last frames has no gap in its numbering: only the count shows it."""
    video = write_ucsd(tmp_path, "UCSDped2", ".tif", ".bmp", mask_prefix="frame")
    clip = video.root / "UCSDped2" / "Train" / "Train002"
    for name in ("011.tif", "012.tif"):
        (clip / name).unlink()
    with pytest.raises(DataError, match=r"Train/Train002 holds 10 frames; the official release "
                                        r"has 12 \(\S*Train002/011.tif is missing, and the 1 "
                                        r"after it\)\..*" + PARTIAL_FIX):
        load_ucsd("ucsd_ped2", "train", root=video.root, verify=True)
    assert load_ucsd("ucsd_ped2", "test", root=video.root).info["check"] == "structure"


def test_clip_cut_at_its_end_loads_with_verify_off(tmp_path, small_release):
    video = write_ucsd(tmp_path, "UCSDped2", ".tif", ".bmp", mask_prefix="frame")
    clip = video.root / "UCSDped2" / "Train" / "Train002"
    for name in ("011.tif", "012.tif"):
        (clip / name).unlink()
    train = load_ucsd("ucsd_ped2", "train", root=video.root, verify=False)
    assert train.info["check"] == "none" and [len(f) for f in train.frames] == [12, 10]
    assert np.array_equal(train.frames[1], video.train[1][:10])
    with pytest.raises(DataError, match="Train002 holds 10 frames"):  # cached, still counted
        load_ucsd("ucsd_ped2", "train", root=video.root, verify=True)


def test_test_clip_cut_with_its_masks_is_refused_or_loaded_with_verify_off(tmp_path,
                                                                          small_release):
    """Frames and masks both cut at the end (labels that fit): refused by the count, not by a
    label that runs past the clip; verify=False loads it short."""
    video = write_ucsd(tmp_path, "UCSDped2", ".tif", ".bmp",
                       gt_lines=["TestVideoFile{end+1}.gt_frame = [7:12];",
                                 "TestVideoFile{end+1}.gt_frame = [7:9];"])
    test_dir = video.root / "UCSDped2" / "Test"
    for name in ("011", "012"):
        (test_dir / "Test002" / f"{name}.tif").unlink()
        (test_dir / "Test002_gt" / f"{name}.bmp").unlink()
    with pytest.raises(DataError, match=r"Test/Test002 holds 10 frames; the official release has "
                                        r"12.*" + PARTIAL_FIX):
        load_ucsd("ucsd_ped2", "test", root=video.root, verify=True)
    test = load_ucsd("ucsd_ped2", "test", root=video.root, verify=False)
    assert [len(f) for f in test.frames] == [12, 10] and len(test.masks[1]) == 10
    assert test.labels[1].tolist() == [False] * 6 + [True] * 3 + [False]


def test_missing_clip_or_mask_folder_is_refused_unless_verify_is_off(tmp_path, small_release):
    import shutil
    video = write_ucsd(tmp_path, "UCSDped2", ".tif", ".bmp")
    test_dir = video.root / "UCSDped2" / "Test"
    shutil.rmtree(test_dir / "Test001_gt")
    with pytest.raises(DataError, match=r"Test001_gt holds 0 masks; the official release has 12 "
                                        r"\(the folder is missing.*\)\..*" + PARTIAL_FIX):
        load_ucsd("ucsd_ped2", "test", root=video.root)
    test = load_ucsd("ucsd_ped2", "test", root=video.root, verify=False)
    assert test.masks[0] is None and np.array_equal(test.masks[1], video.masks[1])

    shutil.rmtree(video.root / "UCSDped2" / "Train" / "Train002")
    with pytest.raises(DataError, match=r"UCSDped2/Train holds 1 clip folders; the official "
                                        r"release has 2 \(Train002 missing\)\..*" + PARTIAL_FIX):
        load_ucsd("ucsd_ped2", "train", root=video.root)
    assert len(load_ucsd("ucsd_ped2", "train", root=video.root, verify=False)) == 1


def test_official_clip_counts_are_the_releases(tmp_path):
    """Unpatched, a small tree is a partial copy of Ped2 (16 training clips) and of Ped1 (34: the
    only counts of Ped1 the loader knows)."""
    ped2 = write_ucsd(tmp_path, "UCSDped2", ".tif", ".bmp")
    with pytest.raises(DataError, match=r"Train holds 2 clip folders; the official release has 16 "
                                        r"\(Train003, Train004, Train005, Train006 and 10 more "
                                        r"missing\)"):
        load_ucsd("ucsd_ped2", "train", root=ped2.root)
    ped1 = write_ucsd(tmp_path, "UCSDped1", ".tif", ".bmp", n_test=3, masked={2})
    with pytest.raises(DataError, match=r"UCSDped1/Test holds 3 clip folders; the official release "
                                        r"has 36"):
        load_ucsd("ucsd_ped1", "test", root=ped1.root)
    assert len(load_ucsd("ucsd_ped1", "test", root=ped1.root, verify=False)) == 3


def test_ped1_counts_its_clips_only(tmp_path, monkeypatch):
    """Ped1's frames per clip and masks are not counted: any clip length, masks where present."""
    import adlib.video as video_module
    monkeypatch.setattr(video_module, "UCSD_PED1_CLIPS", {"Train": 2, "Test": 2})
    video = write_ucsd(tmp_path, "UCSDped1", ".tif", ".bmp", t=10, masked={2})
    test = load_ucsd("ucsd_ped1", "test", root=video.root)
    assert test.info["check"] == "structure" and test.masks[0] is None
    assert len(load_ucsd("ucsd_ped1", "train", root=video.root)) == 2


def test_download_is_passed_on_and_its_failure_is_a_data_error(monkeypatch):
    import urllib.error

    import adlib.video as video
    calls = []

    def no_network(target):
        calls.append(target)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.delenv("ADLIB_DATA", raising=False)
    monkeypatch.setattr(video, "download_ucsd", no_network)
    with pytest.raises(DataError, match="downloading UCSDped2 .* failed.*needs internet access"):
        load_ucsd("ucsd_ped2", "test", download=True)
    assert len(calls) == 1


def test_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="UCSDped2 not found"):
        load_ucsd("ucsd_ped2", "train", root=tmp_path, verify=False)
    with pytest.raises(DataError, match="unknown video dataset"):
        load_ucsd("ucsd_ped3", "train", root=tmp_path)
    with pytest.raises(DataError, match="unknown split"):
        load_ucsd("ucsd_ped2", "val", root=tmp_path)


def test_corrupt_frame_is_named(ped2):
    bad = ped2.root / "UCSDped2" / "Train" / "Train002" / "004.tif"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="004.tif is not a readable image"):
        load_ucsd("ucsd_ped2", "train", root=ped2.root, verify=False)


def test_gap_in_frame_numbers_is_an_error(ped2):
    (ped2.root / "UCSDped2" / "Train" / "Train001" / "005.tif").unlink()
    with pytest.raises(DataError, match="without gaps"):
        load_ucsd("ucsd_ped2", "train", root=ped2.root, verify=False)


def test_label_file_must_match_the_clips(ped2):
    (ped2.root / "UCSDped2" / "Test" / "UCSDped2.m").write_text(
        "TestVideoFile{end+1}.gt_frame = [1:4];\n")
    with pytest.raises(DataError, match="labels 1 clips"):
        load_ucsd("ucsd_ped2", "test", root=ped2.root, verify=False)
    (ped2.root / "UCSDped2" / "Test" / "UCSDped2.m").unlink()
    with pytest.raises(DataError, match="UCSDped2.m not found"):
        load_ucsd("ucsd_ped2", "test", root=ped2.root, verify=False)


# ----------------------------------------------------------------- patches

def test_patch_grid_covers_the_frame():
    pos = patch_positions(240, 360, 30, 30)
    assert len(pos) == 96 and pos.max(0).tolist() == [210, 330]
    pos25 = patch_positions(240, 360, 30, 25)  # G2D's overlap of 5; last row/column moved in
    assert len(pos25) == 10 * 15 and pos25[:, 0].max() == 210 and pos25[:, 1].max() == 330
    covered = np.zeros((240, 360), bool)
    for r, c in pos25:
        covered[r:r + 30, c:c + 30] = True
    assert covered.all()
    with pytest.raises(ValueError, match="do not fit"):
        patch_positions(20, 40, 30)


def test_extract_patches_matches_slicing():
    frames = np.random.default_rng(0).integers(0, 256, (3, 48, 72), dtype=np.uint8)
    pos = patch_positions(48, 72, 20, 15)
    patches = extract_patches(frames, pos, 20)
    assert patches.shape == (3, len(pos), 20, 20) and patches.dtype == np.uint8
    t, p = 2, 4
    r, c = pos[p]
    assert np.array_equal(patches[t, p], frames[t, r:r + 20, c:c + 20])


def test_motion_filter_keeps_the_patches_the_walker_is_in(ped2):
    frames = ped2.train[0]
    moving = motion_mask(frames, threshold=25)
    assert moving[:, 10:22].any() and not moving[:, 30:].any()  # the square's rows only
    pos = patch_positions(H, W, 12, 12)
    keep = moving_patches(frames, pos, 12, threshold=25, min_motion=0.5)
    for i in range(len(frames)):
        c = (3 * i) % (W - 12)
        if c % 12 == 0:  # the square (rows 10-21) fills 10/12 of the patch at (12, c)
            assert keep[i][(pos[:, 0] == 12) & (pos[:, 1] == c)].all()
    assert not keep.any(axis=1).all()  # half-covered patches fall below 50% motion ...
    assert moving_patches(frames, pos, 12, threshold=25, min_motion=0.3).any(axis=1).all()
    assert not keep[:, pos[:, 0] >= 24].any()


def test_ucsd_patches_split_is_uint8_cached_and_seeded(ped2, isolated_cache):
    pre = Preprocess()
    a = ucsd_patches("ucsd_ped2", 0, size=12, stride=12, min_motion=0.3, root=ped2.root,
                     verify=False, preprocess=pre)
    assert list((isolated_cache / "patches").glob("*.npy"))
    assert np.load(next((isolated_cache / "patches").glob("*.npy"))).dtype == np.uint8
    b = ucsd_patches("ucsd_ped2", 0, size=12, stride=12, min_motion=0.3, root=ped2.root,
                     verify=False, preprocess=pre)
    c = ucsd_patches("ucsd_ped2", 1, size=12, stride=12, min_motion=0.3, root=ped2.root,
                     verify=False, preprocess=pre)
    assert torch.equal(a.X_train, b.X_train) and not torch.equal(a.X_train, c.X_train)
    assert a.X_train.shape[1:] == (1, 12, 12) and a.X_train.dtype == torch.float32
    assert a.info["n_train"] + a.info["n_val"] == a.info["moving_patches"]
    assert a.X_train.max() > 0.8  # the bright walker is in the kept patches
    with pytest.raises(DataError, match="lower motion_threshold"):
        ucsd_patches("ucsd_ped2", 0, size=12, stride=12, motion_threshold=250, root=ped2.root,
                     verify=False)


# ----------------------------------------------------------------- scores and metrics

class DarkDetector:
    """Scores a patch by how much of it is darker than the background: finds the dark square."""

    def score(self, X):
        return (X < 0.1).float().mean(dim=(1, 2, 3)).numpy()


def test_score_clips_finds_the_dark_square_frame_by_frame(ped2):
    split = ucsd_patches("ucsd_ped2", 0, size=12, stride=12, min_motion=0.3, root=ped2.root,
                         verify=False)
    patch_scores = score_clips(DarkDetector(), split)
    assert [s.shape for s in patch_scores] == [(12, len(split.positions))] * 2
    scores = frame_scores(patch_scores)
    metrics = frame_metrics(scores, split.test.labels)
    assert metrics["auroc"] == 1.0 and metrics["eer"] == 0.0
    assert metrics["n_frames"] == 24 and metrics["n_abnormal"] == 12
    heat = localization_map(patch_scores[0][-1], split.positions, 12, (H, W))
    assert heat[30:42, 40:52].min() > 0 and heat[:12, :12].max() == 0


def test_frame_metrics_hand_checked():
    scores = [np.array([0.1, 0.4, 0.35]), np.array([0.8, 0.2])]
    labels = [np.array([0, 1, 0], bool), np.array([1, 0], bool)]
    m = frame_metrics(scores, labels)
    assert m["auroc"] == pytest.approx(1.0)  # 0.4, 0.8 above 0.1, 0.35, 0.2
    # per-clip scaling: clip 1 -> 0, 1, 0.833; clip 2 -> 1, 0: still separable
    assert m["auroc_per_clip_norm"] == pytest.approx(1.0)
    swapped = frame_metrics([np.array([0.9, 0.1])], [np.array([0, 1], bool)])
    assert swapped["auroc"] == 0.0 and swapped["eer"] == pytest.approx(1.0)


def test_localization_map_takes_the_highest_covering_patch():
    pos = np.array([[0, 0], [0, 2]])
    heat = localization_map(np.array([0.2, 0.7]), pos, 3, (3, 5))
    assert heat[:, :2].tolist() == [[0.2, 0.2]] * 3
    assert heat[:, 2:].tolist() == [[0.7, 0.7, 0.7]] * 3


# ----------------------------------------------------------------- the bench command

def test_bench_runs_a_detector_on_the_video_protocol_and_resumes(ped2, tmp_path):
    out = tmp_path / "v.jsonl"
    kwargs = dict(params={"n_estimators": 10}, out=out, root=ped2.root, verify=False,
                  verbose=False, protocol={"size": 12, "stride": 12, "min_motion": 0.3})
    run_grid("isolation_forest", "ucsd_ped2", seeds=[0], **kwargs)
    rows = read_rows(out)
    assert len(rows) == 1
    row = rows[0]
    assert row["variant"] == "default+min_motion=0.3,size=12,stride=12"
    assert 0 <= row["auroc"] <= 1 and 0 <= row["eer"] <= 1
    assert sorted(row["frame_scores"]) == ["Test001", "Test002"]
    assert len(row["frame_scores"]["Test001"]) == 12
    level = row["patch_level"]  # both levels in every row
    assert 0 <= level["auroc"] <= 1 and level["min_overlap"] == 0.3
    assert level["n_normal"] > 0 and level["n_anomalous"] > 0
    for key in ("extract_s", "extract_peak_rss_mb", "peak_rss_mb", "commit", "protocol"):
        assert key in row
    run_grid("isolation_forest", "ucsd_ped2", seeds=[0], **kwargs)  # resumes: nothing new
    assert len(read_rows(out)) == 1


def test_bench_rejects_unknown_dataset_and_protocol_on_images(tmp_path):
    with pytest.raises(DataError, match="video datasets: ucsd_ped2"):
        run_grid("isolation_forest", "ucsd_ped9", out=tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="video datasets and few-shot methods only"):
        run_grid("isolation_forest", "mnist", protocol={"stride": 25}, root=tmp_path,
                 out=tmp_path / "x.jsonl")


def test_frame_scores_over_moving_patches_only():
    scores = [np.array([[0.9, 0.1], [0.9, 0.5]]), np.array([[0.9, 0.3]])]
    keep = [np.array([[False, True], [False, False]]), np.array([[True, True]])]
    assert [s.tolist() for s in frame_scores(scores)] == [[0.9, 0.9], [0.9]]
    # frame 2 of clip 1 has no moving patch: it gets the lowest frame score (0.1)
    assert [s.tolist() for s in frame_scores(scores, keep)] == [[0.1, 0.1], [0.9]]


def test_motion_in_test_clips_follows_the_walker_and_the_dark_square(ped2):
    split = ucsd_patches("ucsd_ped2", 0, size=12, stride=12, min_motion=0.3, root=ped2.root,
                         verify=False)
    keep = motion_in_test_clips(split)
    assert [k.shape for k in keep] == [(12, len(split.positions))] * 2
    square = (split.positions[:, 0] == 24) & (split.positions[:, 1] == 36)  # rows 30-41 of 24-35
    assert keep[0][6:, square].all()  # the square's patch is scored while it is there
    walker_rows = split.positions[:, 0] == 12
    assert keep[0][:, walker_rows].any(axis=1).all()  # and the walker's in every frame


def test_video_table_puts_our_rows_under_the_papers():
    import pandas as pd

    from adlib.papers import video_table
    ours = pd.DataFrame({"AUROC (%)": [70.1], "EER (%)": [37.0]}, index=["adacl (ours)"])
    table = video_table(ours)
    assert table.loc["adacl (ours)", "source"] == "ours (measured)"
    assert table.loc["ADACL (thesis)", "AUROC (%)"] == 98.4
    assert table.loc["G2D (paper)", "EER (%)"] == 11
    assert table["AUROC (%)"].dtype == float  # unreported numbers are NaN, not None


# ----------------------------------------------------------------- IWAD's video transfer

def test_clip_cuboids_cover_every_frame_and_resize():
    frames = np.arange(20 * 8 * 8, dtype=np.uint8).reshape(20, 8, 8)
    cub, starts = clip_cuboids(frames, length=16, stride=3, side=16)
    assert cub.shape == (len(starts), 1, 16, 16, 16) and cub.dtype == np.uint8
    assert starts.tolist() == [0, 3, 4]  # the last window ends at the last frame
    scores = cuboid_frame_scores(np.array([1.0, 2.0, 4.0]), starts, 20, 16)
    assert scores[0] == 1.0 and scores[3] == 1.5 and scores[19] == 4.0
    assert scores[10] == pytest.approx(7 / 3)
    with pytest.raises(DataError, match="shorter than one cuboid"):
        clip_cuboids(frames[:10], length=16)


def test_ucsd_transfer_on_generated_ped1_and_ped2(tmp_path):
    ped1 = write_ucsd(tmp_path, "UCSDped1", ".tif", ".bmp", n_train=3, t=20)
    write_ucsd(tmp_path, "UCSDped2", ".tif", ".bmp", mask_prefix="frame", t=20)
    split = ucsd_transfer("ucsd_ped1", "ucsd_ped2", 0, length=16, stride=4, side=16,
                          root=ped1.root, verify=False)
    # Ped1: 3 clips x 2 cuboids (starts 0, 4); Ped2 test: 2 clips x 2 cuboids
    assert len(split.X_source) + len(split.X_val) == 6 and len(split.X_val) == 1
    assert split.X_target.shape == (4, 1, 16, 16, 16)
    assert -1 <= split.X_source.min() and split.X_source.max() <= 1
    assert split.info["n_test_frames"] == 40 and split.info["n_test_abnormal"] == 20

    class Mean:  # scores a cuboid by its mean intensity
        def score(self, X):
            return X.flatten(1).mean(1).numpy()

    scores = score_cuboid_clips(Mean(), split)
    assert [len(s) for s in scores] == [20, 20]
    with pytest.raises(ValueError, match="val_size"):
        ucsd_transfer("ucsd_ped1", "ucsd_ped2", val_size=0, root=ped1.root, verify=False)


def test_iwad_and_memae_train_on_cuboids():
    from adlib.methods.iwad import IWAD
    from adlib.methods.memae import MemAE

    rng = np.random.default_rng(0)
    source = torch.from_numpy(rng.uniform(-1, 1, (6, 1, 8, 16, 16)).astype(np.float32))
    target = torch.from_numpy(rng.uniform(-1, 1, (6, 1, 8, 16, 16)).astype(np.float32))
    iwad = IWAD(num_epochs=2, pretrain_epochs=1, batch_size=3, verbose=False,
                device="cpu").fit(source, target)
    assert iwad.score(target).shape == (6,) and "L_adv" in iwad.history_[-1]
    memory = iwad.network_.autoencoder.memory  # the authors' video backbone by default
    assert memory is not None and memory.memory.shape[0] == 2000
    assert memory.shrink_threshold == pytest.approx(0.0025)
    memae = MemAE(num_epochs=1, batch_size=3, num_slots=20, verbose=False, device="cpu")
    memae.fit(source)
    recon, w = memae.network_(source[:2])
    assert recon.shape == source[:2].shape and w.shape == (2 * 1 * 1 * 1, 20)
    with pytest.raises(ValueError, match="multiple of 8"):
        IWAD(num_epochs=1, verbose=False, device="cpu").fit(source[:, :, :6], target[:, :, :6])


def test_video_transfer_grid_writes_frame_metrics(tmp_path):
    from adlib.bench import run_transfer

    ped1 = write_ucsd(tmp_path, "UCSDped1", ".tif", ".bmp", n_train=2, t=24)  # 2 cuboids a clip
    write_ucsd(tmp_path, "UCSDped2", ".tif", ".bmp", mask_prefix="frame", t=24)
    out = tmp_path / "v.jsonl"
    run_transfer("iwad", "ucsd_ped1", "ucsd_ped2", seeds=(0,), quick=True, max_train=4, out=out,
                 root=ped1.root, verify=False, verbose=False, params={"batch_size": 2})
    (row,) = read_rows(out)
    assert row["dataset"] == "ucsd_ped12ucsd_ped2" and row["n_frames"] == 48
    assert 0 <= row["auroc"] <= 1 and row["protocol"]["protocol"] == "video_transfer"
    with pytest.raises(ValueError, match="two video datasets"):
        run_transfer("iwad", "ucsd_ped1", "mnist", out=out, root=ped1.root, verify=False)


# --------------------------------------------------------------------------- patch level

def _patch_level_split():
    """3 frames of 60 x 90 cut into 2 x 3 patches of 30. Frame 1: a pedestrian (moving, no mask)
    in patch 0, an object whose mask covers 40% of patch 5 and grazes patch 4 (10%)."""
    frames = np.zeros((3, 60, 90), dtype=np.uint8)
    masks = np.zeros((3, 60, 90), dtype=bool)
    frames[1, 5:25, 5:25] = 200                 # patch 0: moves (differs from the median frame)
    frames[1, 30:60, 69:90] = 200               # the object: 30 x 21 of patch 5 (70%) ...
    masks[1, 30:60, 78:90] = True               # ... its mask: 30 x 12 = 40% of patch 5
    masks[1, 51:60, 50:60] = True               # 9 x 10 = 10% of patch 4 (a graze)
    test = VideoSet([frames], ["Test001"], [np.array([False, True, False])], [masks])
    positions = patch_positions(60, 90, 30, 30)
    return PatchSplit(torch.zeros(1, 1, 30, 30), torch.zeros(1, 1, 30, 30), test, positions, 30,
                      Preprocess())


def test_patch_labels_by_hand():
    (labels,) = patch_labels(_patch_level_split())
    assert labels.shape == (3, 6)
    assert labels[1].tolist() == [0, -1, -1, -1, -1, 1]  # pedestrian, static x3, graze, object
    assert (labels[[0, 2]] == -1).all()                   # nothing moves, no mask
    (strict,) = patch_labels(_patch_level_split(), min_overlap=0.5)
    assert strict[1, 5] == -1                             # 40% < 50%: left out


def test_patch_metrics_pool_labelled_patches_only():
    labels = [np.array([[0, -1, 1], [0, 1, -1]], dtype=np.int8)]
    scores = [np.array([[0.1, 9.0, 0.8], [0.3, 0.2, -5.0]])]
    out = patch_metrics(scores, labels)
    assert out["n_normal"] == 2 and out["n_anomalous"] == 2
    # anomalies 0.8, 0.2 vs normals 0.1, 0.3: 3 of 4 pairs ordered
    assert out["auroc"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="patch scores"):
        patch_metrics([np.zeros(5)], labels)


def test_patch_labels_need_masks_and_a_valid_overlap():
    split = _patch_level_split()
    with pytest.raises(ValueError, match="min_overlap"):
        patch_labels(split, min_overlap=0)
    split.test.masks = [None]
    with pytest.raises(ValueError, match="Test001 has none"):
        patch_labels(split)
