"""Image folders as datasets (adlib.folders): MVTec AD's layout and the plain normal / abnormal
one, generated with Pillow in ``tmp_path``; every decoded mode checked against a pixel value
worked out by hand."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adlib import folders
from adlib.data import DataError, ImageSet, load_dataset
from adlib.folders import PLAIN_SPLIT_SEED, PLAIN_TRAIN_SHARE, decode_image, load_folder
from adlib.protocols import one_class

SIDE = 8


def grey(value: int, side: int = SIDE) -> Image.Image:
    return Image.fromarray(np.full((side, side), value, dtype=np.uint8), "L")


def rgb(colour, side: int = SIDE) -> Image.Image:
    return Image.fromarray(np.full((side, side, 3), colour, dtype=np.uint8), "RGB")


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def square_mask(side: int = SIDE, value: int = 255) -> Image.Image:
    """A mask with the 2 x 2 square at rows / columns 2..3 set to ``value``."""
    m = np.zeros((side, side), dtype=np.uint8)
    m[2:4, 2:4] = value
    return Image.fromarray(m, "L")


def write_mvtec(root: Path, n_train: int = 5, masks: bool = True) -> Path:
    """``train/good`` (n_train), ``test/good`` (2), ``test/crack`` (2), ``test/hole`` (1) grey
    PNGs; image i of a folder has value ``10 * i`` (+100 for defects); masks for the crack
    images (``000_mask.png`` and ``001_mask.png``) and the hole image (``000.png``, 0 / 1)."""
    for sub, n, base in (("train/good", n_train, 0), ("test/good", 2, 0),
                         ("test/crack", 2, 100), ("test/hole", 1, 150)):
        for i in range(n):
            save(grey(base + 10 * i), root / sub / f"{i:03d}.png")
    if masks:
        save(square_mask(), root / "ground_truth/crack/000_mask.png")
        save(square_mask(), root / "ground_truth/crack/001_mask.png")
        save(square_mask(value=1), root / "ground_truth/hole/000.png")
    return root


def write_plain(root: Path, n_normal: int = 10, n_abnormal: int = 3,
                masks: bool = True) -> Path:
    """``normal/n00.png ...`` (value i) and ``abnormal/a00.png ...`` (value 200 + i); masks
    ``masks/a00_mask.png`` and ``masks/a01.png`` when ``masks``."""
    for i in range(n_normal):
        save(grey(i), root / "normal" / f"n{i:02d}.png")
    for i in range(n_abnormal):
        save(grey(200 + i), root / "abnormal" / f"a{i:02d}.png")
    if masks:
        save(square_mask(), root / "masks/a00_mask.png")
        save(square_mask(), root / "masks/a01.png")
    return root


# --------------------------------------------------------------------------- layouts

def test_mvtec_layout_labels_classes_and_masks(tmp_path):
    root = write_mvtec(tmp_path / "bottle")
    train, test = load_folder(root, "train"), load_folder(root, "test")
    for part in (train, test):
        assert isinstance(part, ImageSet)
        assert part.classes == ["good", "crack", "hole"]
        assert part.images.dtype == torch.uint8 and part.labels.dtype == torch.int64
        assert part.info["layout"] == "mvtec"
    assert train.images.shape == (5, 1, SIDE, SIDE)
    assert train.labels.tolist() == [0] * 5
    assert train.images[:, 0, 0, 0].tolist() == [0, 10, 20, 30, 40]
    assert train.masks.shape == (5, 1, SIDE, SIDE) and train.masks.sum() == 0
    assert test.labels.tolist() == [0, 0, 1, 1, 2]
    assert test.info["files"] == ["test/good/000.png", "test/good/001.png",
                                  "test/crack/000.png", "test/crack/001.png", "test/hole/000.png"]
    assert test.images[:, 0, 0, 0].tolist() == [0, 10, 100, 110, 150]
    assert test.masks.dtype == torch.uint8 and test.masks.shape == (5, 1, SIDE, SIDE)
    expected = np.asarray(square_mask())
    for i in (2, 3, 4):  # crack _mask.png, crack _mask.png, hole's 0 / 1 mask named <name>.png
        assert np.array_equal(test.masks[i, 0].numpy(), expected)
    assert test.masks[:2].sum() == 0
    assert set(test.masks.unique().tolist()) == {0, 255}


def test_mvtec_layout_without_ground_truth_has_no_masks(tmp_path):
    root = write_mvtec(tmp_path / "bottle", masks=False)
    assert load_folder(root, "train").masks is None
    assert load_folder(root, "test").masks is None


def test_plain_layout_labels_classes_and_masks(tmp_path):
    root = write_plain(tmp_path / "mine")
    train, test = load_folder(root, "train"), load_folder(root, "test")
    assert train.classes == test.classes == ["normal", "abnormal"]
    assert train.info["layout"] == "plain" and "split_rule" in train.info
    assert len(train) == 8 and train.labels.tolist() == [0] * 8
    assert test.labels.tolist() == [0, 0, 1, 1, 1]
    assert test.info["files"][2:] == ["abnormal/a00.png", "abnormal/a01.png", "abnormal/a02.png"]
    assert test.images[2:, 0, 0, 0].tolist() == [200, 201, 202]
    expected = np.asarray(square_mask())
    assert np.array_equal(test.masks[2, 0].numpy(), expected)  # masks/a00_mask.png
    assert np.array_equal(test.masks[3, 0].numpy(), expected)  # masks/a01.png
    assert test.masks[4].sum() == 0 and test.masks[:2].sum() == 0 and train.masks.sum() == 0
    assert load_folder(write_plain(tmp_path / "nomask", masks=False), "test").masks is None


def test_plain_split_is_deterministic_disjoint_and_the_documented_rule(tmp_path, monkeypatch):
    root = write_plain(tmp_path / "mine", n_normal=20, masks=False)
    train, test = load_folder(root, "train"), load_folder(root, "test")
    train_files = set(train.info["files"])
    test_normals = {f for f in test.info["files"] if f.startswith("normal/")}
    assert not train_files & test_normals
    assert train_files | test_normals == {f"normal/n{i:02d}.png" for i in range(20)}
    assert len(train_files) == round(PLAIN_TRAIN_SHARE * 20) == 16
    ranked = sorted((f"n{i:02d}.png" for i in range(20)), key=lambda n: (
        hashlib.sha256(f"{PLAIN_SPLIT_SEED}:{n}".encode()).hexdigest(), n))
    assert train_files == {f"normal/{n}" for n in ranked[:16]}
    assert train.info["files"] == sorted(train.info["files"])  # listed by file name
    monkeypatch.setenv("ADLIB_CACHE", str(tmp_path / "other-cache"))  # decoded afresh
    assert load_folder(root, "train").info["files"] == train.info["files"]
    assert load_folder(root, "test").info["files"] == test.info["files"]


@pytest.mark.parametrize("n_normal, n_train", [(1, 1), (2, 1), (3, 2), (5, 4)])
def test_plain_split_keeps_a_training_image_and_a_test_normal(tmp_path, n_normal, n_train):
    root = write_plain(tmp_path / "mine", n_normal=n_normal, n_abnormal=1, masks=False)
    assert len(load_folder(root, "train")) == n_train
    assert (load_folder(root, "test").labels == 0).sum() == n_normal - n_train


def test_plain_split_moves_at_most_one_image_when_one_is_added(tmp_path):
    root = write_plain(tmp_path / "mine", n_normal=12, masks=False)
    before = set(load_folder(root, "train").info["files"])
    save(grey(99), root / "normal/zz_new.png")
    after = set(load_folder(root, "train").info["files"]) - {"normal/zz_new.png"}
    assert len(before ^ after) <= 1


# --------------------------------------------------------------------------- decoding

def _palette(transparent: bool) -> tuple[Image.Image, dict]:
    im = Image.new("P", (SIDE, SIDE), 1)
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    return im, ({"transparency": 1} if transparent else {})


def _sixteen(values, mode="I;16") -> Image.Image:
    arr = np.resize(np.asarray(values, dtype=np.uint16), (SIDE, SIDE))
    dtype = ">u2" if mode == "I;16B" else "<u2"
    return Image.frombytes(mode, (SIDE, SIDE), arr.astype(dtype).tobytes())


def _int32(values) -> Image.Image:
    return Image.fromarray(np.resize(np.asarray(values, dtype=np.int32), (SIDE, SIDE)))


def _one_bit() -> Image.Image:
    im = Image.new("1", (SIDE, SIDE), 0)
    im.putpixel((0, 0), 1)
    return im


#: (id, extension, image, save options, channels of the dataset, first row's first pixels,
#: tolerance). Values worked out by hand: 16-bit v -> round(v * 255 / 65535); RGBA and a
#: transparent palette entry keep their colour (alpha dropped, not composited: 128 of alpha on
#: (10, 200, 30) would give (5, 100, 15)); CMYK (0, 255, 255, 0) is pure red.
CASES = [
    ("L-png", ".png", lambda: grey(77), {}, 1, [[77]], 0),
    ("L-bmp", ".bmp", lambda: grey(77), {}, 1, [[77]], 0),
    ("L-tif", ".tif", lambda: grey(77), {}, 1, [[77]], 0),
    ("L-TIFF-upper", ".TIFF", lambda: grey(77), {}, 1, [[77]], 0),
    ("L-jpg", ".jpg", lambda: grey(77), {"quality": 95}, 1, [[77]], 2),
    ("L-JPEG-upper", ".JPEG", lambda: grey(77), {"quality": 95}, 1, [[77]], 2),
    ("L-webp-is-rgb", ".webp", lambda: grey(77), {"lossless": True}, 3, [[77, 77, 77]], 0),
    ("RGB-png", ".png", lambda: rgb((10, 200, 30)), {}, 3, [[10, 200, 30]], 0),
    ("RGB-PNG-upper", ".PNG", lambda: rgb((10, 200, 30)), {}, 3, [[10, 200, 30]], 0),
    ("RGB-jpeg", ".jpeg", lambda: rgb((10, 200, 30)), {"quality": 95}, 3, [[10, 200, 30]], 4),
    ("RGB-bmp", ".bmp", lambda: rgb((10, 200, 30)), {}, 3, [[10, 200, 30]], 0),
    ("RGB-tiff", ".tiff", lambda: rgb((10, 200, 30)), {}, 3, [[10, 200, 30]], 0),
    ("RGB-webp", ".webp", lambda: rgb((10, 200, 30)), {"lossless": True}, 3, [[10, 200, 30]], 0),
    ("RGBA-png", ".png", lambda: Image.new("RGBA", (SIDE, SIDE), (10, 200, 30, 128)), {}, 3,
     [[10, 200, 30]], 0),
    ("RGBA-webp", ".webp", lambda: Image.new("RGBA", (SIDE, SIDE), (10, 200, 30, 128)),
     {"lossless": True}, 3, [[10, 200, 30]], 0),
    ("CMYK-jpg", ".jpg", lambda: Image.new("CMYK", (SIDE, SIDE), (0, 255, 255, 0)),
     {"quality": 95}, 3, [[255, 0, 0]], 4),
    ("CMYK-tif", ".tif", lambda: Image.new("CMYK", (SIDE, SIDE), (0, 255, 255, 0)), {}, 3,
     [[255, 0, 0]], 0),
    ("P-png", ".png", lambda: _palette(False)[0], {}, 3, [[255, 0, 0]], 0),
    ("P-tif", ".tif", lambda: _palette(False)[0], {}, 3, [[255, 0, 0]], 0),
    ("P-transparent-png", ".png", lambda: _palette(True)[0], {"transparency": 1}, 3,
     [[255, 0, 0]], 0),
    ("I16-png", ".png", lambda: _sixteen([65535, 257, 0, 32768]), {}, 1,
     [[255], [1], [0], [128]], 0),
    ("I16-tif", ".tif", lambda: _sixteen([65535, 257, 0, 32768]), {}, 1,
     [[255], [1], [0], [128]], 0),
    ("I16B-tif", ".tif", lambda: _sixteen([65535, 257, 0, 32768], "I;16B"), {}, 1,
     [[255], [1], [0], [128]], 0),
    ("I32-tif", ".tif", lambda: _int32([65535, 70000, -5, 32768]), {}, 1,
     [[255], [255], [0], [128]], 0),
    ("1-png", ".png", _one_bit, {}, 1, [[255], [0]], 0),
    ("1-bmp", ".bmp", _one_bit, {}, 1, [[255], [0]], 0),
    ("1-tif", ".tif", _one_bit, {}, 1, [[255], [0]], 0),
    ("LA-png", ".png", lambda: Image.new("LA", (SIDE, SIDE), (77, 0)), {}, 1, [[77]], 0),
]


@pytest.mark.parametrize("ext, make, options, channels, pixels, tol",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_mode_and_extension_decodes(tmp_path, ext, make, options, channels, pixels, tol):
    image = make()
    mode = image.mode
    root = tmp_path / "data"
    for name in ("normal/n0", "normal/n1", "abnormal/a0"):
        save(image, root / f"{name}{ext}", **options)
    assert Image.open(root / f"abnormal/a0{ext}").mode in (mode, "RGB", "RGBA")  # as written
    test = load_folder(root, "test")
    assert test.images.shape == (2, channels, SIDE, SIDE)
    row = test.images[1, :, 0, :len(pixels)].T.numpy().astype(int)  # the abnormal image
    assert np.abs(row - np.asarray(pixels)).max() <= tol, row.tolist()
    assert test.labels.tolist() == [0, 1]


def test_palette_with_transparency_is_read_through_the_palette(tmp_path):
    im, _ = _palette(True)
    im.putpixel((1, 0), 2)  # an opaque green beside the transparent red
    pixels = decode_image(save(im, tmp_path / "p.png", transparency=1))
    assert pixels.shape == (SIDE, SIDE, 3)
    assert pixels[0, 0].tolist() == [255, 0, 0] and pixels[0, 1].tolist() == [0, 255, 0]


def test_grey_and_rgb_mixed_give_three_channels_in_both_splits(tmp_path):
    root = write_mvtec(tmp_path / "mixed", masks=False)
    save(rgb((10, 200, 30)), root / "test/crack/000.png")  # the one colour image
    train, test = load_folder(root, "train"), load_folder(root, "test")
    assert train.images.shape[1] == test.images.shape[1] == 3
    assert train.images[1, :, 0, 0].tolist() == [10, 10, 10]  # grey repeated
    assert test.images[2, :, 0, 0].tolist() == [10, 200, 30]


def test_non_images_and_hidden_files_are_skipped(tmp_path):
    root = write_plain(tmp_path / "mine", masks=False)
    (root / "normal/.DS_Store").write_bytes(b"\x00\x01junk")
    (root / "normal/README.txt").write_text("my images")
    (root / "normal/.hidden.png").write_bytes(b"not a png")  # hidden: never opened
    (root / "normal/sub").mkdir()
    save(grey(5), root / "normal/sub/nested.png")  # class folders are not read recursively
    (root / "notes.md").write_text("top-level files are ignored")
    save(grey(5), root / "abnormal/.ipynb_checkpoints/a00-checkpoint.png")
    assert len(load_folder(root, "train")) + (load_folder(root, "test").labels == 0).sum() == 10
    mvtec = write_mvtec(tmp_path / "bottle")
    save(grey(5), mvtec / "test/.ipynb_checkpoints/000-checkpoint.png")  # a hidden folder
    (mvtec / "test/crack/Thumbs.db").write_bytes(b"\x00")
    assert load_folder(mvtec, "test").classes == ["good", "crack", "hole"]


def test_float_image_is_refused_by_name(tmp_path):
    root = write_plain(tmp_path / "mine", masks=False)
    bad = save(Image.fromarray(np.zeros((SIDE, SIDE), np.float32)), root / "normal/f.tif")
    with pytest.raises(DataError, match=f"{bad}.*float"):
        load_folder(root, "test")


# --------------------------------------------------------------------------- size

def test_size_mismatch_names_the_file_the_sizes_and_the_fix(tmp_path):
    root = write_mvtec(tmp_path / "bottle")
    odd = save(grey(3, side=12), root / "test/hole/001.png")
    for split in ("train", "test"):  # a dataset shares one size, whichever split is loaded
        with pytest.raises(DataError) as err:
            load_folder(root, split)
        message = str(err.value)
        assert str(odd) in message and "12x12" in message and f"{SIDE}x{SIDE}" in message
        assert "size=" in message and "--size" in message


def test_size_resizes_images_bilinearly_and_masks_nearest(tmp_path):
    root = write_mvtec(tmp_path / "bottle")
    save(grey(3, side=12), root / "test/hole/001.png")
    test = load_folder(root, "test", size=4)
    assert test.images.shape == (6, 1, 4, 4) and test.masks.shape == (6, 1, 4, 4)
    assert test.images[1, 0].unique().tolist() == [10]  # a flat image stays flat
    assert set(test.masks.unique().tolist()) == {0, 255}  # nearest: no grey edge
    expected = np.asarray(square_mask().resize((4, 4), Image.Resampling.NEAREST))
    assert np.array_equal(test.masks[2, 0].numpy(), expected) and expected.any()
    ramp = np.tile(np.arange(0, 240, 30, dtype=np.uint8), (SIDE, 1))
    save(Image.fromarray(ramp), root / "train/good/000.png")
    got = load_folder(root, "train", size=4).images[0, 0].numpy()
    want = np.asarray(Image.fromarray(ramp).resize((4, 4), Image.Resampling.BILINEAR))
    assert np.array_equal(got, want)


@pytest.mark.parametrize("size", [0, -3, 2.5, "64", True])
def test_bad_size_is_refused(tmp_path, size):
    with pytest.raises(DataError, match="size"):
        load_folder(write_plain(tmp_path / "mine"), "train", size=size)


# --------------------------------------------------------------------------- errors

def test_missing_path_and_file_path(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nowhere'} does not exist"):
        load_folder(tmp_path / "nowhere")
    file = tmp_path / "image.png"
    save(grey(1), file)
    with pytest.raises(DataError, match=f"{file} is a file"):
        load_folder(file)


def test_folder_in_neither_layout_says_what_is_expected(tmp_path):
    save(grey(1), tmp_path / "photos/cats/1.png")
    with pytest.raises(DataError) as err:
        load_folder(tmp_path / "photos")
    message = str(err.value)
    assert str(tmp_path / "photos") in message and "cats/" in message
    assert "train/good" in message and "test/<defect>" in message and "normal/" in message


def test_folder_in_both_layouts_is_refused(tmp_path):
    write_plain(tmp_path / "both")
    write_mvtec(tmp_path / "both")
    with pytest.raises(DataError, match="both"):
        load_folder(tmp_path / "both")


@pytest.mark.parametrize("empty", ["train/good", "test/good", "test/hole"])
def test_empty_class_folder_is_named(tmp_path, empty):
    root = write_mvtec(tmp_path / "bottle", masks=False)
    for p in (root / empty).iterdir():
        p.unlink()
    (root / empty / "README.txt").write_text("nothing here")
    with pytest.raises(DataError, match=f"{root / empty} holds no image.*README.txt"):
        load_folder(root, "train")


@pytest.mark.parametrize("missing", ["train/good", "test/good", "abnormal", "normal"])
def test_missing_class_folder_is_named(tmp_path, missing):
    plain = missing in ("normal", "abnormal")
    root = (write_plain if plain else write_mvtec)(tmp_path / "d", masks=False)
    for p in (root / missing).iterdir():
        p.unlink()
    (root / missing).rmdir()
    with pytest.raises(DataError, match=f"{root / missing}"):
        load_folder(root, "test")


def test_mvtec_needs_a_defect_folder_and_good_only_in_train(tmp_path):
    root = write_mvtec(tmp_path / "bottle", masks=False)
    save(grey(1), root / "train/bad/000.png")
    with pytest.raises(DataError, match=f"{root / 'train'} holds bad/"):
        load_folder(root)
    root = tmp_path / "only_good"
    save(grey(1), root / "train/good/0.png")
    save(grey(1), root / "test/good/0.png")
    with pytest.raises(DataError, match=f"{root / 'test'} holds no defect folder"):
        load_folder(root)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n garbage", b"hello world"])
def test_unreadable_image_is_named(tmp_path, content):
    root = write_mvtec(tmp_path / "bottle")
    bad = root / "test/crack/002.png"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=f"{bad} is not a readable image"):
        load_folder(root, "test")


def test_truncated_image_is_named(tmp_path):
    root = write_plain(tmp_path / "mine", masks=False)
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (SIDE, SIDE), dtype=np.uint8))
    bad = save(noisy, root / "abnormal/a01.png")
    bad.write_bytes(bad.read_bytes()[:-30])  # header intact, pixel data cut
    with pytest.raises(DataError, match=f"{bad} is not a readable image"):
        load_folder(root, "test")


@pytest.mark.parametrize("mask", ["ground_truth/crack/007_mask.png",
                                  "ground_truth/scratch/000_mask.png"])
def test_mvtec_mask_without_its_image_is_named(tmp_path, mask):
    root = write_mvtec(tmp_path / "bottle")
    save(square_mask(), root / mask)
    with pytest.raises(DataError, match=f"mask {root / mask} has no image"):
        load_folder(root, "train")


def test_plain_mask_without_its_image_is_named(tmp_path):
    root = write_plain(tmp_path / "mine")
    stray = save(square_mask(), root / "masks/n03_mask.png")  # n03 is a normal image
    with pytest.raises(DataError, match=f"mask {stray} has no image"):
        load_folder(root, "test")


def test_two_masks_for_one_image_are_refused(tmp_path):
    root = write_plain(tmp_path / "mine")
    save(square_mask(), root / "masks/a00.png")  # beside masks/a00_mask.png
    with pytest.raises(DataError, match="two masks"):
        load_folder(root, "test")


def test_mask_of_another_size_is_named(tmp_path):
    root = write_mvtec(tmp_path / "bottle")
    bad = save(square_mask(side=SIDE * 2), root / "ground_truth/crack/001_mask.png")
    for size in (None, 4):  # the mask must match its image before any resizing
        with pytest.raises(DataError, match=f"mask {bad} is 16x16.*{root / 'test/crack/001.png'}"):
            load_folder(root, "test", size=size)


def test_unknown_split_is_refused(tmp_path):
    with pytest.raises(DataError, match="split"):
        load_folder(write_plain(tmp_path / "mine"), "val")


# --------------------------------------------------------------------------- cache

def test_decoded_tensors_are_cached_and_invalidated(tmp_path, isolated_cache, monkeypatch):
    root = write_mvtec(tmp_path / "bottle")
    listing = sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))
    first = load_folder(root, "test")
    assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*")) == listing  # nothing added
    assert list((isolated_cache / "decoded").glob("folder-bottle-test-native-*.pt"))

    calls = []
    real = folders.decode_image
    monkeypatch.setattr(folders, "decode_image", lambda p: calls.append(p) or real(p))
    again = load_folder(root, "test")
    assert calls == []  # served from the cache
    assert torch.equal(again.images, first.images) and torch.equal(again.masks, first.masks)
    assert torch.equal(again.labels, first.labels) and again.info == first.info

    load_folder(root, "test", size=4)  # another size is another entry
    assert calls
    calls.clear()
    save(grey(123), root / "test/hole/001.png")  # a file added
    grown = load_folder(root, "test")
    assert len(calls) == len(grown) + 3  # every image and mask decoded again
    assert len(grown) == 6 and grown.images[-1, 0, 0, 0] == 123
    calls.clear()
    save(grey(7), root / "test/hole/001.png")  # a file edited
    os.utime(root / "test/hole/001.png", ns=(1, 1))
    assert load_folder(root, "test").images[-1, 0, 0, 0] == 7 and calls


def test_truncated_cache_file_is_decoded_again(tmp_path, isolated_cache):
    root = write_plain(tmp_path / "mine")
    first = load_folder(root, "test")
    (cached,) = (isolated_cache / "decoded").glob("folder-*.pt")
    cached.write_bytes(cached.read_bytes()[:50])
    assert torch.equal(load_folder(root, "test").images, first.images)


# --------------------------------------------------------------------------- load_dataset

def test_load_dataset_takes_a_folder_path(tmp_path, monkeypatch):
    root = write_mvtec(tmp_path / "bottle")
    by_str, by_path = load_dataset(str(root), "test"), load_dataset(root, "test")
    assert torch.equal(by_str.images, by_path.images) and by_str.classes == by_path.classes
    monkeypatch.chdir(tmp_path)
    for name in ("bottle", "./bottle", "bottle/"):  # an existing folder, or a path-like name
        assert load_dataset(name, "train").labels.tolist() == [0] * 5
    assert load_dataset("bottle", "test", size=4).images.shape[-1] == 4
    monkeypatch.setenv("HOME", str(tmp_path))
    assert len(load_dataset("~/bottle", "train")) == 5


def test_load_dataset_names_folder_paths_in_its_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="unknown dataset 'mydata'.*mnist.*folder"):
        load_dataset("mydata")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("./mydata")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("some/where/mydata")
    with pytest.raises(DataError, match="size=32 applies to image folders only"):
        load_dataset("mnist", size=32)


def test_one_class_on_a_folder_marks_defects_as_anomalies(tmp_path):
    root = write_mvtec(tmp_path / "bottle", n_train=10)
    split = one_class(str(root), 0, seed=0)
    assert split.classes == ["good", "crack", "hole"]
    assert split.y_test.tolist() == [0, 0, 1, 1, 1]
    assert split.test_classes.tolist() == [0, 0, 1, 1, 2]
    assert len(split.X_train) + len(split.X_val) == 10 and len(split.X_val) == 1
    plain = one_class(str(write_plain(tmp_path / "mine")), 0, seed=1)
    assert plain.y_test.tolist() == [0, 0, 1, 1, 1]


def test_registered_image_sets_have_no_masks():
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    assert ImageSet(images, torch.zeros(2, dtype=torch.int64), ["0"]).masks is None
