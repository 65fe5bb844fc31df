"""Loaders decode generated files in the real on-disk formats; digests, verification, errors."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import adlib.data as data
from adlib.data import (CIFAR10_CLASSES, DataError, load_cifar10, load_dataset,
                        load_fashion_mnist, load_mnist, load_usps, tree_digest, verify_tree)
from conftest import idx_bytes, real_data_root, write_idx_dataset


def assert_image_set(ds, images: np.ndarray, labels: np.ndarray):
    assert ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64
    assert tuple(ds.images.shape) == images.shape
    np.testing.assert_array_equal(ds.images.numpy(), images)
    np.testing.assert_array_equal(ds.labels.numpy(), labels)
    assert len(ds) == len(labels)


# --------------------------------------------------------------------------- decoding

@pytest.mark.parametrize("split", ["train", "test"])
def test_load_mnist_decodes_idx_files(mnist_root, split):
    ds = load_mnist(split, root=mnist_root.root, verify=False)
    assert_image_set(ds, mnist_root.images[split], mnist_root.labels[split])
    assert ds.images.shape[1:] == (1, 28, 28)
    assert ds.classes == [str(d) for d in range(10)]


def test_load_fashion_mnist_decodes_idx_files(fashion_root):
    ds = load_fashion_mnist("test", root=fashion_root.root, verify=False)
    assert_image_set(ds, fashion_root.images["test"], fashion_root.labels["test"])
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_cifar10_pickled_batches(cifar_pickle_root, split):
    ds = load_cifar10(split, root=cifar_pickle_root.root, verify=False)
    assert_image_set(ds, cifar_pickle_root.images[split], cifar_pickle_root.labels[split])
    assert ds.images.shape[1:] == (3, 32, 32)
    assert len(ds) == (15 if split == "train" else 4)
    assert ds.classes == CIFAR10_CLASSES
    assert ds.info["lossy"] is False


def test_load_cifar10_pickle_channel_layout(cifar_pickle_root):
    """Row layout is 1024 red, then 1024 green, then 1024 blue values, each row-major."""
    ds = load_cifar10("test", root=cifar_pickle_root.root, verify=False)
    flat = cifar_pickle_root.images["test"].reshape(-1, 3072)
    assert int(ds.images[0, 1, 0, 0]) == int(flat[0, 1024])
    assert int(ds.images[0, 2, 31, 31]) == int(flat[0, 3071])
    assert int(ds.images[0, 0, 1, 2]) == int(flat[0, 32 + 2])


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_cifar10_jpeg_image_folder(cifar_jpeg_root, split):
    ds = load_cifar10(split, root=cifar_jpeg_root.root, verify=False)
    want = cifar_jpeg_root.images[split]
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert tuple(ds.images.shape) == want.shape == (len(want), 3, 32, 32)
    np.testing.assert_array_equal(ds.labels.numpy(), cifar_jpeg_root.labels[split])
    # JPEG is lossy, but flat colours survive within a few grey levels
    diff = np.abs(ds.images.numpy().astype(int) - want.astype(int))
    assert diff.max() <= 4
    assert ds.info["lossy"] is True
    assert "JPEG" in ds.source


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_usps_bz2(usps_bz2_root, split):
    ds = load_usps(split, root=usps_bz2_root.root, verify=False)
    assert_image_set(ds, usps_bz2_root.images[split], usps_bz2_root.labels[split])
    assert ds.images.shape[1:] == (1, 16, 16)
    # value -1 -> 0, value 1 -> 255; label 1 -> digit 0
    assert (ds.images[0] == 0).all()
    assert (ds.images[1] == 255).all()
    assert int(ds.labels[0]) == 0
    assert set(ds.labels.tolist()) <= set(range(10))


def test_load_usps_bz2_label_10_is_digit_9(usps_bz2_root):
    ds = load_usps("train", root=usps_bz2_root.root, verify=False)
    # labels written were i % 10 + 1 for i = 0..11: the file's label 10 sits at i = 9
    assert int(ds.labels[9]) == 9
    assert ds.labels.min() >= 0 and ds.labels.max() <= 9


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_usps_h5(usps_h5_root, split):
    ds = load_usps(split, root=usps_h5_root.root, verify=False)
    assert_image_set(ds, usps_h5_root.images[split], usps_h5_root.labels[split])
    assert "HDF5" in ds.source


def test_load_dataset_by_name(mnist_root):
    ds = load_dataset("mnist", "test", root=mnist_root.root, verify=False)
    np.testing.assert_array_equal(ds.labels.numpy(), mnist_root.labels["test"])
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("svhn", root=mnist_root.root, verify=False)


# --------------------------------------------------------------------------- decoded cache

def test_decoded_cache_is_written_and_reused(mnist_root, isolated_cache, monkeypatch):
    first = load_mnist("train", root=mnist_root.root, verify=False)
    cached = list((isolated_cache / "decoded").glob("MNIST-train-*.pt"))
    assert len(cached) == 1
    assert cached[0].name == f"MNIST-train-{first.info['digest'][:16]}.pt"

    def no_decoding(path):
        raise AssertionError(f"{path} decoded again although the cache holds it")

    monkeypatch.setattr(data, "read_idx", no_decoding)
    second = load_mnist("train", root=mnist_root.root, verify=False)
    assert torch.equal(first.images, second.images)
    assert torch.equal(first.labels, second.labels)


def test_truncated_cache_file_is_decoded_again(mnist_root, isolated_cache):
    load_mnist("test", root=mnist_root.root, verify=False)
    (cached,) = (isolated_cache / "decoded").glob("MNIST-test-*.pt")
    cached.write_bytes(cached.read_bytes()[:50])
    again = load_mnist("test", root=mnist_root.root, verify=False)
    np.testing.assert_array_equal(again.images.numpy(), mnist_root.images["test"])


def test_nothing_written_into_data_folder(mnist_root):
    before = sorted(p.relative_to(mnist_root.root) for p in mnist_root.root.rglob("*"))
    load_mnist("train", root=mnist_root.root, verify=False)
    load_mnist("test", root=mnist_root.root, verify=False)
    after = sorted(p.relative_to(mnist_root.root) for p in mnist_root.root.rglob("*"))
    assert before == after


# --------------------------------------------------------------------------- tree digests

def hand_tree_digest(folder):
    """The README's definition: sha256 of "<sha256>  <folder>/<relpath>\\n" lines sorted
    bytewise by path."""
    entries = []
    for p in folder.rglob("*"):
        if p.is_file():
            rel = p.relative_to(folder.parent).as_posix()
            entries.append((rel.encode(), f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {rel}\n"))
    text = "".join(line for _, line in sorted(entries))
    return hashlib.sha256(text.encode()).hexdigest()


def test_tree_digest_matches_readme_definition(mnist_root):
    folder = mnist_root.root / "MNIST"
    assert tree_digest(folder) == hand_tree_digest(folder)


def test_tree_digest_sorts_bytewise_by_path(tmp_path):
    """'a-b.txt' sorts before 'a/b.txt' bytewise ('-' < '/'), unlike a per-part sort."""
    folder = tmp_path / "T"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "b.txt").write_text("one")
    (folder / "a-b.txt").write_text("two")
    (folder / "B.txt").write_text("three")
    sha = {name: hashlib.sha256(text.encode()).hexdigest()
           for name, text in (("a/b.txt", "one"), ("a-b.txt", "two"), ("B.txt", "three"))}
    listing = (f"{sha['B.txt']}  T/B.txt\n{sha['a-b.txt']}  T/a-b.txt\n"
               f"{sha['a/b.txt']}  T/a/b.txt\n")
    assert tree_digest(folder) == hashlib.sha256(listing.encode()).hexdigest()


def test_tree_digest_of_single_file_names_its_folder(usps_bz2_root):
    path = usps_bz2_root.root / "USPS" / "usps.bz2"
    line = f"{hashlib.sha256(path.read_bytes()).hexdigest()}  USPS/usps.bz2\n"
    assert tree_digest(path) == hashlib.sha256(line.encode()).hexdigest()


def test_tree_digest_follows_a_changed_file(tmp_path):
    folder = tmp_path / "D"
    folder.mkdir()
    (folder / "x.bin").write_bytes(b"abc")
    first = tree_digest(folder)
    assert tree_digest(folder) == first  # remembered
    (folder / "x.bin").write_bytes(b"abcd")
    assert tree_digest(folder) != first
    assert tree_digest(folder) == hand_tree_digest(folder)


def test_tree_digest_of_missing_or_empty_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        tree_digest(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        tree_digest(tmp_path / "empty")


def test_verify_tree_names_first_differing_file(mnist_root):
    root = mnist_root.root
    files = sorted((p for p in (root / "MNIST").rglob("*") if p.is_file()),
                   key=lambda p: p.relative_to(root).as_posix().encode())
    lines = []
    for p in files:
        rel = p.relative_to(root).as_posix()
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        if rel == "MNIST/raw/train-images-idx3-ubyte.gz":
            digest = "0" * 64  # the third file in bytewise order differs
        lines.append(f"{digest}  {rel}\n")
    (root / "SHA256SUMS").mkdir()
    (root / "SHA256SUMS" / "MNIST.sha256").write_text("".join(lines))
    with pytest.raises(DataError) as err:
        verify_tree(root / "MNIST", "MNIST")
    message = str(err.value)
    assert "MNIST/raw/train-images-idx3-ubyte.gz" in message
    assert "t10k" not in message
    assert "MNIST" in message and "published tree digest" in message


def test_verify_tree_names_missing_file(mnist_root):
    root = mnist_root.root
    listing = "".join(f"{'1' * 64}  MNIST/raw/{name}\n" for name in ["a-extra.gz"])
    (root / "SHA256SUMS").mkdir()
    (root / "SHA256SUMS" / "MNIST.sha256").write_text(listing)
    with pytest.raises(DataError, match="MNIST/raw/a-extra.gz is missing"):
        verify_tree(root / "MNIST", "MNIST")


def test_verify_tree_without_published_digest_returns_digest(tmp_path):
    folder = tmp_path / "Other"
    folder.mkdir()
    (folder / "f").write_bytes(b"x")
    assert verify_tree(folder, "Other") == hand_tree_digest(folder)


def test_load_with_verify_rejects_generated_copy(mnist_root):
    with pytest.raises(DataError, match="does not match the published tree digest of MNIST"):
        load_mnist("test", root=mnist_root.root, verify=True)


# --------------------------------------------------------------------------- which check applies

def test_torchvision_mnist_layout_loads_verified(tmp_path, monkeypatch):
    """torchvision's layout (the .gz files and their extracted copies) is not the published copy:
    it is structure-checked, loads with verify=True and decodes as the .gz files alone."""
    monkeypatch.setitem(data.OFFICIAL_COUNTS, "MNIST", {"train": 30, "test": 20})  # generated
    tv = write_idx_dataset(tmp_path / "tv", "MNIST", seed=1, extracted=True)
    gz_only = write_idx_dataset(tmp_path / "gz", "MNIST", seed=1)
    for split in ("train", "test"):
        ds = load_mnist(split, root=tv.root, verify=True)
        assert_image_set(ds, tv.images[split], tv.labels[split])
        assert ds.info["check"] == "structure"
        alone = load_mnist(split, root=gz_only.root, verify=False)
        assert torch.equal(ds.images, alone.images) and torch.equal(ds.labels, alone.labels)


def test_torchvision_fashion_mnist_layout_with_processed_files_loads_verified(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setitem(data.OFFICIAL_COUNTS, "FashionMNIST", {"train": 30, "test": 20})
    gen = write_idx_dataset(tmp_path, "FashionMNIST", seed=2, extracted=True)
    processed = tmp_path / "FashionMNIST" / "processed"
    processed.mkdir()
    for name in ("training.pt", "test.pt"):  # older torchvision writes these; never read
        (processed / name).write_bytes(b"torch tensors")
    ds = load_fashion_mnist("test", root=gen.root, verify=True)
    assert_image_set(ds, gen.images["test"], gen.labels["test"])
    assert ds.info["check"] == "structure"


def test_extracted_idx_files_alone_load(tmp_path, monkeypatch):
    monkeypatch.setitem(data.OFFICIAL_COUNTS, "MNIST", {"train": 30, "test": 20})
    gen = write_idx_dataset(tmp_path, "MNIST", seed=3, extracted=True, gz=False)
    ds = load_dataset("mnist", "train", root=gen.root, verify=True)
    assert_image_set(ds, gen.images["train"], gen.labels["train"])


def test_other_idx_layout_names_a_missing_or_unreadable_file(tmp_path):
    gen = write_idx_dataset(tmp_path, "MNIST", seed=1, extracted=True)
    raw = gen.root / "MNIST" / "raw"
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b cut")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is not a readable IDX"):
        load_mnist("train", root=gen.root, verify=True)
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz not found.*under raw/"):
        load_mnist("test", root=gen.root, verify=True)


def test_other_image_folder_and_hdf5_copies_load_verified_and_name_bad_files(
        cifar_jpeg_root, usps_h5_root, monkeypatch):
    # the official counts set to the generated ones; a README makes each folder another copy
    monkeypatch.setattr(data, "CIFAR_JPEG_PER_CLASS", {"train": 2, "test": 1})
    monkeypatch.setitem(data.OFFICIAL_COUNTS, "USPS", {"train": 15, "test": 7})
    (cifar_jpeg_root.root / "CIFAR10-JPEG" / "README.txt").write_text("where it comes from")
    ds = load_cifar10("test", root=cifar_jpeg_root.root, verify=True)  # 1 image a class
    assert len(ds) == 10 and ds.info["check"] == "structure"
    bad = cifar_jpeg_root.root / "CIFAR10-JPEG" / "test" / "cat" / "0000.jpg"
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(DataError, match="cat/0000.jpg is not a readable image"):
        load_cifar10("test", root=cifar_jpeg_root.root, verify=True)
    bad.unlink()
    with pytest.raises(DataError, match="test/cat holds no image"):
        load_cifar10("test", root=cifar_jpeg_root.root, verify=True)

    folder = usps_h5_root.root / "USPS"
    (folder / "README.txt").write_text("where this copy comes from")  # not the published list
    ds = load_usps("test", root=usps_h5_root.root, verify=True)
    assert_image_set(ds, usps_h5_root.images["test"], usps_h5_root.labels["test"])
    assert ds.info["check"] == "structure"
    (folder / "usps.h5").write_bytes((folder / "usps.h5").read_bytes()[:500])
    with pytest.raises(DataError, match="usps.h5 is not a USPS HDF5 file"):
        load_usps("train", root=usps_h5_root.root, verify=True)


@pytest.mark.parametrize("name, fixture", [("mnist", "mnist_root"),
                                           ("fashion_mnist", "fashion_root"),
                                           ("usps", "usps_h5_root"),
                                           ("cifar10", "cifar_jpeg_root")])
def test_published_layout_is_digest_checked_unless_verify_is_off(name, fixture, request,
                                                                 monkeypatch):
    """A generated folder with exactly a published copy's file list is taken for the published
    copy: its digest differs, so verify=True calls it corrupt; verify=False loads it."""
    gen = request.getfixturevalue(fixture)
    monkeypatch.setattr(data, "CIFAR_JPEG_PER_CLASS", {"train": 2, "test": 1})  # the generated
    with pytest.raises(DataError, match="does not match the published tree digest.*corrupt"):
        load_dataset(name, "test", root=gen.root, verify=True)
    ds = load_dataset(name, "test", root=gen.root, verify=False)
    assert len(ds) == len(gen.labels["test"]) and ds.info["check"] == "none"


def test_published_file_lists_match_the_checksum_lists():
    sums = real_data_root() / "SHA256SUMS"
    if not sums.is_dir():
        pytest.skip(f"offline data not found at {real_data_root()}")
    for name in data.TREE_DIGESTS:
        listed = {line.split("  ", 1)[1].split("/", 1)[1]
                  for line in (sums / f"{name}.sha256").read_text().splitlines() if line}
        assert data.published_files(name) == listed, name


def test_real_mnist_copy_verified_and_one_altered_file_named(tmp_path):
    import shutil
    real = real_data_root()
    if not (real / "MNIST").is_dir():
        pytest.skip(f"offline data not found at {real}")
    shutil.copytree(real / "MNIST", tmp_path / "MNIST")
    (tmp_path / "SHA256SUMS").mkdir()
    shutil.copy(real / "SHA256SUMS" / "MNIST.sha256", tmp_path / "SHA256SUMS")
    ds = load_mnist("test", root=tmp_path, verify=True)
    assert len(ds) == 10000 and ds.info["check"] == "tree digest"
    altered = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(altered.read_bytes())
    raw[-9] ^= 1  # one bit of the gzip trailer
    altered.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz has another checksum.*corrupt"):
        load_mnist("test", root=tmp_path, verify=True)


# --------------------------------------------------------------------------- partial copies

#: the end of every partial-copy error: the fix
PARTIAL_FIX = (r"restore the missing files from the official release, or run with verify=False "
               r"/ --no-verify to use a partial copy on purpose")


def test_image_folder_missing_one_image_is_refused(cifar_jpeg_root, monkeypatch):
    """CIFAR10-JPEG with one image deleted is no longer the published copy (here the generated
    copy, its counts set as the official ones): the structure check counts every class folder
    and refuses it, naming the folder, the found and the expected count and the fix."""
    monkeypatch.setattr(data, "CIFAR_JPEG_PER_CLASS", {"train": 2, "test": 1})
    folder = cifar_jpeg_root.root / "CIFAR10-JPEG"
    (folder / "train" / "cat" / "0001.jpg").unlink()
    with pytest.raises(DataError, match=r"CIFAR10-JPEG/train/cat holds 1 images; the official "
                                        r"release has 2\..*" + PARTIAL_FIX):
        load_cifar10("train", root=cifar_jpeg_root.root, verify=True)
    test = load_cifar10("test", root=cifar_jpeg_root.root, verify=True)  # that split is whole
    assert len(test) == 10 and test.info["check"] == "structure"


def test_image_folder_missing_one_image_loads_with_verify_off(cifar_jpeg_root, monkeypatch):
    monkeypatch.setattr(data, "CIFAR_JPEG_PER_CLASS", {"train": 2, "test": 1})
    (cifar_jpeg_root.root / "CIFAR10-JPEG" / "train" / "cat" / "0001.jpg").unlink()
    ds = load_cifar10("train", root=cifar_jpeg_root.root, verify=False)
    assert len(ds) == 19 and ds.info["check"] == "none"
    assert np.bincount(ds.labels.numpy()).tolist() == [2, 2, 2, 1, 2, 2, 2, 2, 2, 2]
    with pytest.raises(DataError, match="train/cat holds 1 images"):  # cached, still counted
        load_cifar10("train", root=cifar_jpeg_root.root, verify=True)


def test_tiny_image_folder_is_checked_against_the_real_counts(cifar_jpeg_root):
    (cifar_jpeg_root.root / "CIFAR10-JPEG" / "README.txt").write_text("another copy")
    with pytest.raises(DataError, match=r"train/airplane holds 2 images; the official release "
                                        r"has 5000"):
        load_cifar10("train", root=cifar_jpeg_root.root)
    with pytest.raises(DataError, match=r"test/airplane holds 1 images; .* has 1000"):
        load_cifar10("test", root=cifar_jpeg_root.root)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_partial_idx_copy_is_refused(tmp_path, name, folder):
    """torchvision's layout with IDX files of 30 and 20 images: their headers give the counts,
    which must be the official 60000 and 10000."""
    gen = write_idx_dataset(tmp_path, folder, n_train=30, n_test=20, extracted=True)
    with pytest.raises(DataError, match=rf"{folder}/raw/train-images-idx3-ubyte.gz holds 30 "
                                        rf"images; the official release has 60000\..*"
                                        + PARTIAL_FIX):
        load_dataset(name, "train", root=gen.root, verify=True)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz holds 20 images; the "
                                        r"official release has 10000"):
        load_dataset(name, "test", root=gen.root)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_partial_idx_copy_loads_with_verify_off(tmp_path, name, folder):
    gen = write_idx_dataset(tmp_path, folder, n_train=30, n_test=20, extracted=True)
    ds = load_dataset(name, "train", root=gen.root, verify=False)
    assert_image_set(ds, gen.images["train"], gen.labels["train"])
    assert ds.info["check"] == "none"
    with pytest.raises(DataError, match="holds 30 images"):  # cached, still counted
        load_dataset(name, "train", root=gen.root, verify=True)


def test_idx_counts_are_checked_against_the_official_ones(tmp_path, monkeypatch):
    """One image short of the official count (here set to the generated 30) is refused."""
    monkeypatch.setitem(data.OFFICIAL_COUNTS, "MNIST", {"train": 30, "test": 20})
    gen = write_idx_dataset(tmp_path, "MNIST", n_train=29, n_test=21, extracted=True)
    with pytest.raises(DataError, match="holds 29 images; the official release has 30"):
        load_mnist("train", root=gen.root)
    with pytest.raises(DataError, match="holds 21 images; the official release has 20.*remove "
                                        "the files the official release does not have"):
        load_mnist("test", root=gen.root)


@pytest.mark.parametrize("fixture, where", [("usps_h5_root", r"usps.h5 \(train/data\)"),
                                            ("usps_bz2_root", r"USPS/usps.bz2")])
def test_partial_usps_copy_is_refused(fixture, where, request):
    gen = request.getfixturevalue(fixture)
    (gen.root / "USPS" / "README.txt").write_text("another copy")  # not the published usps.h5
    n = len(gen.labels["train"])
    with pytest.raises(DataError, match=rf"{where} holds {n} images; the official release has "
                                        rf"7291\..*" + PARTIAL_FIX):
        load_usps("train", root=gen.root, verify=True)
    with pytest.raises(DataError, match=r"holds \d+ images; the official release has 2007"):
        load_usps("test", root=gen.root)


@pytest.mark.parametrize("fixture", ["usps_h5_root", "usps_bz2_root"])
def test_partial_usps_copy_loads_with_verify_off(fixture, request):
    gen = request.getfixturevalue(fixture)
    (gen.root / "USPS" / "README.txt").write_text("another copy")
    ds = load_usps("train", root=gen.root, verify=False)
    assert_image_set(ds, gen.images["train"], gen.labels["train"])
    assert ds.info["check"] == "none"


def test_pickled_batches_are_counted(cifar_pickle_root, monkeypatch):
    with pytest.raises(DataError, match=r"cifar-10-batches-py holds 15 train images in "
                                        r"data_batch_1..5 \(10000 a batch\); the official "
                                        r"release has 50000\..*" + PARTIAL_FIX):
        load_cifar10("train", root=cifar_pickle_root.root, verify=True)
    assert load_cifar10("test", root=cifar_pickle_root.root, verify=False).info["check"] == "none"
    monkeypatch.setitem(data.OFFICIAL_COUNTS, "CIFAR-10", {"train": 15, "test": 4})
    assert load_cifar10("train", root=cifar_pickle_root.root).info["check"] == "structure"


def test_pickled_batch_with_fewer_labels_than_images(cifar_pickle_root):
    import pickle
    path = cifar_pickle_root.root / "cifar-10-batches-py" / "test_batch"
    with open(path, "rb") as f:
        entry = pickle.load(f)
    entry["labels"] = entry["labels"][:-1]
    with open(path, "wb") as f:
        pickle.dump(entry, f)
    with pytest.raises(DataError, match="test_batch holds 4 images but 3 labels"):
        load_cifar10("test", root=cifar_pickle_root.root, verify=False)


# --------------------------------------------------------------------------- download

@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"),
                                          ("cifar10", "CIFAR-10"), ("usps", "USPS"),
                                          ("gtsrb", "gtsrb")])
def test_download_is_passed_to_every_image_dataset(name, folder, monkeypatch):
    monkeypatch.delenv("ADLIB_DATA", raising=False)
    calls = []

    def offline(what, target, split="train", fetch=None):
        calls.append((what, target))
        raise DataError("offline")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(DataError, match="offline"):
        load_dataset(name, "test", download=True)
    assert calls and calls[0][0] == folder
    assert data.download_dir() in (calls[0][1], calls[0][1].parent)


def test_failed_download_is_a_clear_data_error(monkeypatch):
    import urllib.error

    import torchvision.datasets as tvd

    class NoNetwork:
        def __init__(self, *args, **kwargs):
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.delenv("ADLIB_DATA", raising=False)
    monkeypatch.setattr(tvd, "MNIST", NoNetwork)
    with pytest.raises(DataError, match="downloading MNIST .* failed.*needs internet access"):
        load_dataset("mnist", "test", download=True)


def test_downloaded_mnist_in_torchvisions_layout_loads_verified(monkeypatch):
    import torchvision.datasets as tvd
    written = {}
    monkeypatch.setitem(data.OFFICIAL_COUNTS, "MNIST", {"train": 30, "test": 20})  # generated

    class FakeMNIST:  # writes what torchvision's download leaves: .gz files and extractions
        def __init__(self, root, train=True, download=False):
            written["gen"] = write_idx_dataset(Path(root), "MNIST", seed=4, extracted=True)

    monkeypatch.delenv("ADLIB_DATA", raising=False)
    monkeypatch.setattr(tvd, "MNIST", FakeMNIST)
    ds = load_dataset("mnist", "test", download=True, verify=True)
    assert_image_set(ds, written["gen"].images["test"], written["gen"].labels["test"])


# --------------------------------------------------------------------------- errors

def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist.*ADLIB_DATA"):
        load_mnist("train", root=tmp_path / "no-such-folder", verify=False)


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="MNIST is not in"):
        load_mnist("train", root=tmp_path, verify=False)


def test_no_data_root_configured(monkeypatch):
    monkeypatch.delenv("ADLIB_DATA", raising=False)
    with pytest.raises(DataError, match="set ADLIB_DATA"):
        load_mnist("train")
    with pytest.raises(DataError, match="set ADLIB_DATA"):
        load_cifar10("train")


def test_data_root_from_environment(mnist_root, monkeypatch):
    monkeypatch.setenv("ADLIB_DATA", str(mnist_root.root))
    ds = load_mnist("test", verify=False)
    np.testing.assert_array_equal(ds.labels.numpy(), mnist_root.labels["test"])


def test_missing_idx_file(mnist_root):
    (mnist_root.root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz not found"):
        load_mnist("test", root=mnist_root.root, verify=False)


def test_truncated_idx_file(mnist_root):
    path = mnist_root.root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    raw = idx_bytes(mnist_root.images["train"][:, 0])
    with gzip.open(path, "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_mnist("train", root=mnist_root.root, verify=False)


def test_idx_file_with_trailing_bytes(mnist_root):
    path = mnist_root.root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(idx_bytes(mnist_root.labels["test"].astype(np.uint8)) + b"\x00\x01")
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_mnist("test", root=mnist_root.root, verify=False)


def test_cut_gzip_stream(mnist_root):
    path = mnist_root.root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="not a readable IDX file"):
        load_mnist("train", root=mnist_root.root, verify=False)


def test_not_gzip_at_all(mnist_root):
    (mnist_root.root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").write_bytes(b"hello" * 20)
    with pytest.raises(DataError):
        load_mnist("test", root=mnist_root.root, verify=False)


def test_wrong_idx_magic(mnist_root):
    path = mnist_root.root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write((2052).to_bytes(4, "big") + bytes(20))
    with pytest.raises(DataError, match="magic number"):
        load_mnist("test", root=mnist_root.root, verify=False)


def test_image_label_count_mismatch(mnist_root):
    path = mnist_root.root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(idx_bytes(mnist_root.labels["test"][:-1].astype(np.uint8)))
    with pytest.raises(DataError, match="labels"):
        load_mnist("test", root=mnist_root.root, verify=False)


def test_corrupt_cifar_pickle(cifar_pickle_root):
    (cifar_pickle_root.root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"junk")
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10("train", root=cifar_pickle_root.root, verify=False)


def test_missing_jpeg_class_folder(cifar_jpeg_root):
    import shutil
    shutil.rmtree(cifar_jpeg_root.root / "CIFAR10-JPEG" / "test" / "frog")
    with pytest.raises(DataError, match="frog"):
        load_cifar10("test", root=cifar_jpeg_root.root, verify=False)


def test_usps_folder_without_files(tmp_path):
    (tmp_path / "USPS").mkdir()
    (tmp_path / "USPS" / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match="no USPS files"):
        load_usps("train", root=tmp_path, verify=False)


@pytest.mark.parametrize("loader", [load_mnist, load_fashion_mnist, load_cifar10, load_usps])
def test_unknown_split(loader, tmp_path):
    with pytest.raises(DataError, match="unknown split"):
        loader("validation", root=tmp_path, verify=False)


# --------------------------------------------------------------------------- real offline data

def test_real_mnist_test_split_verified():
    root = real_data_root()
    if not (root / "MNIST").is_dir():
        pytest.skip(f"offline data not found at {root}")
    ds = load_mnist("test", root=root, verify=True)
    assert tuple(ds.images.shape) == (10000, 1, 28, 28)
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    counts = np.bincount(ds.labels.numpy(), minlength=10)
    assert len(counts) == 10 and (counts > 0).all()
    assert counts.sum() == 10000
    assert ds.info["digest"] == data.TREE_DIGESTS["MNIST"]


# --------------------------------------------------------------------------- GTSRB

def write_gtsrb(root, per_class: int = 1, n_test: int = 6, seed: int = 0):
    """torchvision's GTSRB layout: 43 training folders of .ppm photos of various sizes, the test
    images in one folder with their classes in ``GT-final_test.csv``."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    base = root / "gtsrb"
    train_labels, test_labels = [], []
    for c in range(43):
        d = base / "GTSRB" / "Training" / f"{c:05d}"
        d.mkdir(parents=True)
        for i in range(per_class):
            side = int(rng.integers(20, 60))
            img = np.full((side, side + 3, 3), 6 * c, dtype=np.uint8)
            Image.fromarray(img).save(d / f"{i:05d}_00000.ppm")
            train_labels.append(c)
    test_dir = base / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i in range(n_test):
        c = [14, 3, 14, 42, 0, 14][i % 6]
        Image.fromarray(np.full((31, 29, 3), 6 * c, dtype=np.uint8)).save(test_dir / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;29;31;1;1;28;30;{c}")
        test_labels.append(c)
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    return train_labels, test_labels


def test_gtsrb_loader_reads_torchvisions_layout_and_resizes(tmp_path):
    train_labels, test_labels = write_gtsrb(tmp_path)
    train = data.load_gtsrb("train", root=tmp_path)
    test = data.load_gtsrb("test", root=tmp_path)
    assert train.images.shape == (43, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == train_labels and len(train.classes) == 43
    assert test.labels.tolist() == test_labels
    # constant photos stay constant through the resize: the value encodes the class
    assert (train.images[data.GTSRB_STOP] == 6 * 14).all()
    stop = test.images[test.labels == data.GTSRB_STOP]
    assert len(stop) == 3 and (stop == 84).all()
    assert data.load_dataset("gtsrb", "test", root=tmp_path).labels.tolist() == test_labels


def test_gtsrb_missing_or_corrupt(tmp_path):
    with pytest.raises(data.DataError, match="gtsrb not found"):
        data.load_gtsrb("train", root=tmp_path)
    write_gtsrb(tmp_path)
    (tmp_path / "gtsrb" / "GTSRB" / "Final_Test" / "Images" / "00002.ppm").write_bytes(b"bad")
    with pytest.raises(data.DataError, match="00002.ppm is not a readable image"):
        data.load_gtsrb("test", root=tmp_path)


# --------------------------------------------------------------------------- Caltech-256

CALTECH_NAMES = ["001.ak47", "002.american-flag", "003.backpack", "004.baseball-bat",
                 "005.baseball-glove", "257.clutter"]


def write_caltech256(root, per_category=(160, 4, 30, 20, 12, 40), grey=(1,)):
    """torchvision's Caltech-256 layout: ``caltech256/256_ObjectCategories/NNN.name/NNN_XXXX.jpg``
    numbered from 1, photos of various sizes (some grey). Pixel value = 40 * category + 1 for
    images within the first 150 of their category, 250 beyond (to check the cut)."""
    from PIL import Image
    base = root / "caltech256" / "256_ObjectCategories"
    for c, (name, n) in enumerate(zip(CALTECH_NAMES, per_category)):
        d = base / name
        d.mkdir(parents=True)
        for i in range(1, n + 1):
            value = 40 * c + 1 if i <= 150 else 250
            shape = (30 + i % 7, 41) if c in grey else (30 + i % 7, 41, 3)
            Image.fromarray(np.full(shape, value, np.uint8)).save(d / f"{c + 1:03d}_{i:04d}.jpg",
                                                                 quality=100)
    return base


def test_caltech256_loader_takes_the_first_images_of_each_category(tmp_path):
    write_caltech256(tmp_path)
    assert data.caltech256_categories(tmp_path) == CALTECH_NAMES
    ds = data.load_caltech256([0, 1], per_category=150, root=tmp_path, side=16)
    assert ds.images.shape == (154, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0] * 150 + [1] * 4
    # only the first 150 of category 0 (value 1; the rest are 250); grey category 1 became RGB
    assert abs(ds.images[ds.labels == 0].float().mean().item() - 1) < 2
    assert abs(ds.images[ds.labels == 1].float().mean().item() - 41) < 2
    everything = data.load_caltech256([0], per_category=None, root=tmp_path, side=16)
    assert len(everything.labels) == 160


def test_caltech256_errors_name_the_problem(tmp_path):
    with pytest.raises(data.DataError, match="caltech256 not found|not found"):
        data.load_caltech256([0], root=tmp_path)
    base = write_caltech256(tmp_path)
    with pytest.raises(data.DataError, match="unknown Caltech-256 categories"):
        data.load_caltech256([6], root=tmp_path)
    (base / "002.american-flag" / "002_0003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(data.DataError, match="002_0003.jpg is missing or unreadable"):
        data.load_caltech256([1], root=tmp_path, side=8)


def test_caltech_protocol_has_half_clutter_outliers_and_is_seeded(tmp_path):
    from adlib.protocols import caltech_outliers
    write_caltech256(tmp_path)
    split = caltech_outliers(1, seed=0, root=tmp_path, side=16)
    again = caltech_outliers(1, seed=0, root=tmp_path, side=16)
    assert torch.equal(split.X_train, again.X_train) and (split.y_test == again.y_test).all()
    inlier = CALTECH_NAMES.index(split.info["inliers"][0])
    assert split.y_test.mean() == 0.5                     # outliers make half the test set
    assert (split.test_classes[split.y_test == 1] == 5).all()   # all from 257.clutter
    assert (split.test_classes[split.y_test == 0] == inlier).all()
    n_inliers = min(150, (160, 4, 30, 20, 12)[inlier])
    assert len(split.X_train) + len(split.X_val) + (split.y_test == 0).sum() == n_inliers
    three = caltech_outliers(3, seed=1, root=tmp_path, side=16, per_category=10)
    assert len(three.info["inliers"]) == 3 and "257.clutter" not in three.info["inliers"]
    with pytest.raises(ValueError, match="object categories"):
        caltech_outliers(6, root=tmp_path, side=16)
