"""The detector contract for every registered method (issue 18): ``predict``'s threshold comes
from held-out normals, ``score`` refuses images of another shape than the fitted one, and a
checkpoint keeps parameters of numpy types.

Every detector here is fitted small (one epoch or quick mode, CPU): the tests check the
contract, not the methods' accuracy. The peers are included where their library is installed
(PyOD's and anomalib's detectors are skipped otherwise); GANomaly is the slowest (a Lightning
trainer), a few seconds at one epoch.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import adlib
from adlib.data import load_dataset
from adlib.protocols import one_class
from adlib.registry import detector_class, get_detector

from conftest import real_data_root

NAMES = adlib.available_detectors()

#: the smallest budgets: one epoch (quick mode), CPU, quiet; G2D's WGAN: 12 generator
#: iterations at width 8 (two snapshots with an iteration h = 5 after them)
SMALL = {"num_epochs": 1, "quick": True, "batch_size": 64, "verbose": False, "device": "cpu",
         "n_estimators": 100, "gan_iterations": 12, "quick_gan_iterations": 12,
         "snapshot_every": 2, "gan_width": 8, "pretrain_epochs": 0}
#: the image side each detector is fitted at in the shape tests (OCLR's networks need 8 | side)
SIDE = {"oclr": 32}


def _small(name: str, **extra):
    """``name`` built with the :data:`SMALL` budgets it accepts (skipped if a peer's library is
    missing)."""
    cls = detector_class(name)
    if getattr(cls, "requires", ""):
        pytest.importorskip(cls.requires)
    names = cls._param_names()
    return get_detector(name, **{k: v for k, v in {**SMALL, **extra}.items() if k in names})


def _fit(det, X_train, X_val, X_other):
    """Fit by the detector's learning type; ``X_other`` is the transfer method's unlabelled
    target mixture or the few-shot method's labelled anomalies."""
    if det.learning_type == "transfer":
        return det.fit(X_train, X_other, X_val)
    if det.learning_type == "few_shot":
        return det.fit(X_train, X_val, X_other)
    return det.fit(X_train, X_val)


# ----------------------------------------------------------------- fault 2: the threshold

@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """The real MNIST train and test sets (skipped without the offline data)."""
    root = real_data_root()
    if not (root / "MNIST").is_dir():
        pytest.skip(f"offline MNIST not found under {root}")
    with pytest.MonkeyPatch.context() as mp:  # decoded copies go to a temporary cache
        mp.setenv("ADLIB_CACHE", str(tmp_path_factory.mktemp("mnist-cache")))
        return load_dataset("mnist", "train", root=root), load_dataset("mnist", "test", root=root)


def _split(name, mnist, max_train=300, val_size=300):
    """MNIST digit 0 against the rest (about 490 test normals), prepared as the detector's
    protocol prepares it."""
    train, test = mnist
    return one_class("mnist", 0, seed=0, val_size=val_size, max_train=max_train, max_test=5000,
                     preprocess=detector_class(name).preprocess, train_set=train, test_set=test)


@pytest.mark.parametrize("name", NAMES)
def test_threshold_is_calibrated_on_held_out_normals(name, mnist):
    """Fitted with held-out normals, a detector flags about ``contamination`` of *other* unseen
    normals (the test split's), not all of them (the fault: KDE flagged 100 %)."""
    det = _small(name, contamination=0.1)
    split = _split(name, mnist)
    normals, anomalies = split.X_test[split.y_test == 0], split.X_test[split.y_test == 1]
    # a transfer method's target: an unlabelled mixture (25 % anomalies); a few-shot method's
    # labelled anomalies: 20. Neither touches the test normals scored below.
    other = (torch.cat([split.X_train[:150], anomalies[:50]]) if det.learning_type == "transfer"
             else anomalies[:20])
    _fit(det, split.X_train, split.X_val, other)
    assert det.train_scores_.shape == (len(split.X_train),)
    if det.threshold_rule == "fixed":  # G2D keeps alpha whatever the held-out normals say
        assert det.threshold_source_ == "fixed" and det.threshold_ == det.alpha
        return
    flagged = det.predict(normals).mean()
    assert 0.02 <= flagged <= 0.3, f"{name} flags {flagged:.0%} of unseen normals"
    assert det.threshold_source_ == "validation"
    assert det.threshold_ == pytest.approx(np.quantile(det.score(split.X_val), 0.9))


def test_kde_threshold_of_the_issue(mnist):
    """The issue's case: KDE on 500 training images of digit 0, contamination 0.1 (the
    protocol's default hold-out, 592 normals)."""
    split = _split("kde", mnist, max_train=500, val_size=0.1)
    normals = split.X_test[split.y_test == 0]
    det = get_detector("kde", contamination=0.1).fit(split.X_train, split.X_val)
    assert det.threshold_source_ == "validation"
    assert det.predict(split.X_val).mean() == pytest.approx(0.1, abs=0.02)
    assert det.predict(normals).mean() == pytest.approx(0.1, abs=0.06)  # not used for it
    # a kernel density fits its training images: their quantile flagged every unseen normal
    assert det.train_scores_.max() < det.threshold_
    # without held-out normals the training scores' quantile is the documented fallback
    det = get_detector("kde", contamination=0.1).fit(split.X_train)
    assert det.threshold_source_ == "training"
    assert det.threshold_ == pytest.approx(np.quantile(det.train_scores_, 0.9))
    assert det.predict(split.X_train).mean() == pytest.approx(0.1, abs=0.01)


# ----------------------------------------------------------------- fault 3: the input's shape

@pytest.mark.parametrize("name", NAMES)
def test_score_rejects_images_of_another_shape(name):
    """Fitted on 1 x 28 x 28 (OCLR: 1 x 32 x 32), every detector refuses another side and
    another channel count in ``score``, ``predict`` and ``score_all``, naming both shapes and
    the fix; images of the fitted shape are still scored."""
    side = SIDE.get(name, 28)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(48, 1, side, side, generator=g)
    det = _fit(_small(name), X[:32], X[32:40], X[40:])
    assert det.input_shape_ == (1, side, side)
    for c, s in ((1, side + 4), (3, side)):
        wrong = torch.rand(4, c, s, s, generator=g)
        calls = [det.score, det.predict] + ([det.score_all] if hasattr(det, "score_all") else [])
        for call in calls:
            with pytest.raises(ValueError) as err:
                call(wrong)
            message = str(err.value)
            assert f"1 x {side} x {side}" in message and f"{c} x {s} x {s}" in message
            assert f"Preprocess(size={side}, channels=1)" in message
    assert det.score(X[:4]).shape == (4,)


# ----------------------------------------------------------------- fault 4: numpy parameters

@pytest.mark.parametrize("param, value, plain", [
    ("lr", np.float64(1e-3), 1e-3),  # the issue's case
    ("lr", np.float32(0.5), 0.5),
    ("batch_size", np.int64(16), 16),
    ("latent_dim", np.int64(8), 8),  # dropped before: the loaded network had 32 units
    ("quick", np.bool_(True), True),
    ("device", np.str_("cpu"), "cpu"),
])
def test_checkpoint_keeps_numpy_parameters(param, value, plain, tmp_path):
    path = tmp_path / "ae.pt"
    X = torch.rand(24, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    params = {"num_epochs": 1, "verbose": False, "device": "cpu", param: value}
    det = get_detector("conv_ae", checkpoint=str(path), **params).fit(X[:16], X[16:])
    loaded = get_detector("conv_ae").load(path)
    back = loaded.get_params()[param]
    assert back == plain and type(back) is type(plain)
    np.testing.assert_allclose(loaded.score(X), det.score(X), rtol=1e-5, atol=1e-7)
    assert loaded.threshold_ == pytest.approx(det.threshold_)


def test_alps_checkpoint_keeps_numpy_tuples(tmp_path):
    """A method with a tuple parameter, through ALPS's own ``load``."""
    path = tmp_path / "alps.pt"
    X = torch.rand(24, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    det = get_detector("alps", num_epochs=1, verbose=False, device="cpu", batch_size=8,
                       widths=tuple(np.array([4, 8, 8])), latent_dim=np.int64(4),
                       recon_weight=np.float64(0.5), checkpoint=str(path)).fit(X[:16], X[16:])
    loaded = get_detector("alps").load(path)
    assert loaded.widths == (4, 8, 8) and type(loaded.widths[0]) is int
    assert loaded.latent_dim == 4 and loaded.recon_weight == 0.5
    assert loaded.selected_score_ == det.selected_score_
    np.testing.assert_allclose(loaded.score(X), det.score(X), rtol=1e-5, atol=1e-7)


def test_corrupt_detector_checkpoint_still_raises(tmp_path):
    path = tmp_path / "ae.pt"
    X = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    get_detector("conv_ae", num_epochs=1, verbose=False, device="cpu", lr=np.float64(1e-3),
                 checkpoint=str(path)).fit(X)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(RuntimeError, match="corrupt or not a weights-only file"):
        get_detector("conv_ae").load(path)
