"""The one-class, contaminated and outlier-ratio protocols on in-memory image sets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from adlib.data import DataError
from adlib.protocols import (Preprocess, contaminated, development_split, one_class,
                             outlier_ratio_test,
                             resolve_classes)
from conftest import decode_index, encoded_image_set

N_TRAIN, N_TEST = 200, 200  # 20 images per class in each split


@pytest.fixture
def sets():
    train = encoded_image_set(N_TRAIN)
    test = encoded_image_set(N_TEST, offset=1000)  # indices 1000.. never clash with train
    return train, test


def split_of(sets, k=3, seed=0, **kwargs):
    train, test = sets
    kwargs.setdefault("val_size", 5)
    return one_class("custom", k, seed, train_set=train, test_set=test, **kwargs)


# --------------------------------------------------------------------------- one_class

def test_one_class_train_holds_only_the_normal_class(sets):
    train, _ = sets
    s = split_of(sets, k=3)
    idx_train = decode_index(s.X_train)
    assert (train.labels.numpy()[idx_train] == 3).all()
    assert len(idx_train) == 20 - 5
    assert (s.y_train == 0).all() and len(s.y_train) == len(s.X_train)


def test_one_class_validation_is_disjoint_and_clean(sets):
    train, _ = sets
    s = split_of(sets, k=3)
    idx_train, idx_val = decode_index(s.X_train), decode_index(s.X_val)
    assert len(idx_val) == 5
    assert not set(idx_train) & set(idx_val)
    assert (train.labels.numpy()[idx_val] == 3).all()  # no anomaly in validation
    # together they are exactly the training normals
    assert sorted(set(idx_train) | set(idx_val)) == list(np.flatnonzero(train.labels.numpy() == 3))


def test_one_class_test_is_whole_test_split(sets):
    _, test = sets
    s = split_of(sets, k=7)
    idx_test = decode_index(s.X_test) - 1000
    np.testing.assert_array_equal(np.sort(idx_test), np.arange(N_TEST))
    labels = test.labels.numpy()[idx_test]
    np.testing.assert_array_equal(s.y_test, (labels != 7).astype(int))
    np.testing.assert_array_equal(s.test_classes, labels)
    assert s.y_test.sum() == 180
    assert s.normal_class == 7
    assert s.info["n_test"] == N_TEST and s.info["n_test_anomalies"] == 180


def test_val_size_as_share(sets):
    s = split_of(sets, val_size=0.25)
    assert len(s.X_val) == 5 and len(s.X_train) == 15


def test_same_seed_same_split_other_seed_other_validation(sets):
    a, b, c = split_of(sets, seed=11), split_of(sets, seed=11), split_of(sets, seed=12)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.X_val, b.X_val)
    assert torch.equal(a.X_test, b.X_test)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert set(decode_index(a.X_val)) != set(decode_index(c.X_val))


def test_max_train_subsamples_training_normals(sets):
    s = split_of(sets, max_train=4)
    assert len(s.X_train) == 4
    assert not set(decode_index(s.X_train)) & set(decode_index(s.X_val))


@pytest.mark.parametrize("max_test", [5, 10, 40])
def test_max_test_keeps_both_labels(sets, max_test):
    s = split_of(sets, k=2, max_test=max_test)
    assert set(np.unique(s.y_test)) == {0, 1}
    assert len(s.X_test) == len(s.y_test) == max_test
    # labels still match the images
    _, test = sets
    labels = test.labels.numpy()[decode_index(s.X_test) - 1000]
    np.testing.assert_array_equal(s.y_test, (labels != 2).astype(int))


@pytest.mark.parametrize("max_test", [2, 3])
def test_max_test_is_an_upper_bound(sets, max_test):
    s = split_of(sets, k=2, max_test=max_test)
    assert len(s.X_test) <= max_test
    assert set(np.unique(s.y_test)) == {0, 1}


@pytest.mark.parametrize("k", [10, -1])
def test_unknown_class_raises(sets, k):
    with pytest.raises(DataError, match="unknown class"):
        split_of(sets, k=k)


def test_class_without_training_images_raises():
    labels = np.arange(N_TRAIN) % 10
    labels[labels == 4] = 5
    train = encoded_image_set(N_TRAIN, labels=labels)
    test = encoded_image_set(50, offset=1000)
    with pytest.raises(DataError, match="empty training set"):
        one_class("custom", 4, train_set=train, test_set=test)


def test_val_size_leaving_no_training_image_raises(sets):
    with pytest.raises(DataError, match="val_size"):
        split_of(sets, val_size=20)


def test_resolve_classes():
    assert resolve_classes("all") == list(range(10))
    assert resolve_classes(3) == [3]
    assert resolve_classes([1, np.int64(2)]) == [1, 2]
    with pytest.raises(DataError):
        resolve_classes([0, 12])


# --------------------------------------------------------------------------- Preprocess

def test_preprocess_size_channels_pm1():
    images = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    images[1] = 255
    x = Preprocess(size=16, channels=3, scale="pm1")(images)
    assert x.dtype == torch.float32 and tuple(x.shape) == (2, 3, 16, 16)
    assert (x[0] == -1).all() and (x[1] == 1).all()
    assert x.min() >= -1 and x.max() <= 1


def test_preprocess_default_is_01_and_keeps_shape():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(1, 1, 1, 3)
    x = Preprocess()(images)
    assert tuple(x.shape) == (1, 1, 1, 3)
    torch.testing.assert_close(x.flatten(), torch.tensor([0.0, 0.2, 1.0]))


def test_preprocess_rgb_to_grey_averages():
    images = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    images[0, 0], images[0, 1], images[0, 2] = 30, 60, 90
    x = Preprocess(channels=1)(images)
    assert tuple(x.shape) == (1, 1, 4, 4)
    torch.testing.assert_close(x, torch.full((1, 1, 4, 4), 60 / 255))


def test_preprocess_resize_stays_in_range():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (3, 1, 28, 28), dtype=np.uint8))
    x = Preprocess(size=32)(images)
    assert tuple(x.shape) == (3, 1, 32, 32)
    assert x.min() >= 0 and x.max() <= 1


def test_preprocess_errors():
    images = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="scale"):
        Preprocess(scale="0255")(images)
    with pytest.raises(ValueError, match="channels"):
        Preprocess(channels=2)(images)


def test_one_class_applies_preprocess(sets):
    s = split_of(sets, preprocess=Preprocess(size=16, channels=3, scale="pm1"))
    for X in (s.X_train, s.X_val, s.X_test):
        assert tuple(X.shape[1:]) == (3, 16, 16)
        assert X.min() >= -1 and X.max() <= 1
    assert s.X_train.min() < 0  # pm1: dark pixels are negative
    assert s.info["preprocess"] == {"size": 16, "channels": 3, "scale": "pm1"}


# --------------------------------------------------------------------------- contaminated

@pytest.mark.parametrize("ratio", [0.2, 0.5])
def test_contaminated_outlier_ratio_and_labels(sets, ratio):
    train, test = sets
    s = contaminated("custom", 3, ratio, seed=0, val_size=4, train_set=train, test_set=test)
    n_normal = 20 - 4
    assert len(s.X_train) == len(s.y_train)
    assert s.y_train.mean() == pytest.approx(ratio)
    assert (s.y_train == 1).sum() == round(ratio * n_normal / (1 - ratio))
    labels = train.labels.numpy()[decode_index(s.X_train)]
    np.testing.assert_array_equal(s.y_train, (labels != 3).astype(int))
    # validation stays clean and disjoint from the training set
    idx_val = decode_index(s.X_val)
    assert (train.labels.numpy()[idx_val] == 3).all()
    assert not set(idx_val) & set(decode_index(s.X_train))
    assert s.info["protocol"] == "contaminated"
    assert s.info["n_train_anomalies"] == (s.y_train == 1).sum()


def test_contaminated_zero_ratio_is_one_class(sets):
    train, test = sets
    s = contaminated("custom", 3, 0.0, train_set=train, test_set=test, val_size=4)
    assert (s.y_train == 0).all() and len(s.X_train) == 16


def test_contaminated_rejects_bad_ratio(sets):
    train, test = sets
    with pytest.raises(ValueError):
        contaminated("custom", 3, 1.0, train_set=train, test_set=test)


def test_contaminated_is_seeded(sets):
    train, test = sets
    a = contaminated("custom", 3, 0.2, seed=5, train_set=train, test_set=test)
    b = contaminated("custom", 3, 0.2, seed=5, train_set=train, test_set=test)
    assert torch.equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)


# --------------------------------------------------------------------------- outlier_ratio_test

@pytest.mark.parametrize("ratio", [0.2, 0.5, 0.75])
def test_outlier_ratio_test(sets, ratio):
    _, test = sets
    s = split_of(sets, k=1)
    r = outlier_ratio_test(s, ratio, seed=0)
    assert r.y_test.mean() == pytest.approx(ratio)
    assert (r.y_test == 0).sum() == 20  # every test normal kept
    labels = test.labels.numpy()[decode_index(r.X_test) - 1000]
    np.testing.assert_array_equal(r.y_test, (labels != 1).astype(int))
    np.testing.assert_array_equal(r.test_classes, labels)
    assert r.info["n_test"] == len(r.y_test)
    assert torch.equal(r.X_train, s.X_train)


def test_outlier_ratio_test_errors(sets):
    s = split_of(sets, k=1)
    with pytest.raises(ValueError):
        outlier_ratio_test(s, 0.0)
    with pytest.raises(DataError, match="only 180 test anomalies"):
        outlier_ratio_test(s, 0.95)


def test_development_split_uses_training_images_only(sets):
    train, _ = sets
    s = split_of(sets, k=3)
    dev = development_split(s, train, n_anomalies=50, seed=0)
    idx = decode_index(dev.X_test)
    assert (idx < 1000).all()  # no test image (those are encoded from 1000 on)
    assert dev.y_test.tolist() == [0] * 5 + [1] * 50
    np.testing.assert_array_equal(idx[:5], decode_index(s.X_val))
    assert (train.labels.numpy()[idx[5:]] != 3).all()
    assert torch.equal(dev.X_train, s.X_train)  # training is unchanged
    again = development_split(s, train, n_anomalies=50, seed=0)
    assert torch.equal(again.X_test, dev.X_test)
    assert "development" in dev.info["evaluated_on"]
