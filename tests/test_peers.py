"""The peers (PyOD, anomalib) behind the detector contract, on a toy problem."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import adlib
from adlib import bench
from adlib.metrics import auroc
from adlib.registry import detector_class, get_detector

from helpers import ramp_images

#: Small budgets, CPU. GANomaly's adversarial training needs more steps before it ranks the
#: toy anomalies above the normals: at 10 epochs its AUROC is 0.47 (seed 0) and 0.38 (seed 1)
#: on the horizontal ramps, at 20 epochs 1.0 for both.
PARAMS = {"pyod_autoencoder": {"num_epochs": 3},
          "pyod_deepsvdd": {"num_epochs": 3},
          "anomalib_ganomaly": {"num_epochs": 20, "batch_size": 16, "device": "cpu"}}
PEERS = sorted(PARAMS)


@pytest.fixture(scope="module")
def toy():
    """Normals: vertical ramps (16 x 16, grey). Anomalies: horizontal ramps."""
    X_train = ramp_images(64, seed=0)
    X_test = torch.cat([ramp_images(16, seed=1), ramp_images(16, seed=2).transpose(-1, -2)])
    return X_train, X_test, np.r_[np.zeros(16), np.ones(16)]


@pytest.fixture(scope="module", params=PEERS)
def fitted(request, toy):
    """Each peer fitted once with seed 0 (skipped where its library is missing)."""
    name = request.param
    pytest.importorskip(detector_class(name).requires)
    return name, get_detector(name, **PARAMS[name]).fit(toy[0])


def test_fit_and_score_shapes(fitted, toy):
    name, det = fitted
    X_train, X_test, _ = toy
    scores = det.score(X_test)
    assert scores.shape == (len(X_test),) and scores.dtype == np.float64
    assert np.isfinite(scores).all()
    assert det.train_scores_.shape == (len(X_train),) and np.isfinite(det.threshold_)
    assert det.predict(X_test).shape == (len(X_test),)
    assert isinstance(det.n_params_, int) and det.n_params_ > 0
    assert bench.n_params(det) == det.n_params_
    # numpy input is scored alike
    np.testing.assert_allclose(det.score(X_test.numpy()), scores, rtol=1e-6, atol=1e-9)


def test_obvious_anomalies_score_higher(fitted, toy):
    _, det = fitted
    _, X_test, y_test = toy
    assert auroc(y_test, det.score(X_test)) >= 0.9


@pytest.mark.parametrize("name", PEERS)
def test_seed_fixes_the_scores(name, toy):
    pytest.importorskip(detector_class(name).requires)
    X_train, X_test, _ = toy
    params = {**PARAMS[name], "num_epochs": 2}

    def scores(seed):
        return get_detector(name, **params, seed=seed).fit(X_train).score(X_test)

    first = scores(0)
    np.testing.assert_allclose(scores(0), first, rtol=1e-6, atol=1e-9)
    assert not np.allclose(scores(1), first)


@pytest.mark.parametrize("name", PEERS)
def test_empty_training_set_raises(name, toy):
    with pytest.raises(ValueError, match="empty"):
        get_detector(name, **PARAMS[name]).fit(toy[0][:0])


@pytest.mark.parametrize("name", PEERS)
def test_missing_library_says_how_to_install(name, toy, monkeypatch):
    monkeypatch.setitem(sys.modules, detector_class(name).requires, None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[peers\]"'):
        get_detector(name, **PARAMS[name]).fit(toy[0])


def test_import_adlib_without_the_peer_libraries():
    code = ("import sys; sys.modules.update(pyod=None, anomalib=None); import adlib; "
            "names = adlib.available_detectors(); "
            "assert {'pyod_autoencoder', 'pyod_deepsvdd', 'anomalib_ganomaly'} <= set(names)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("name, epochs", [("pyod_autoencoder", 20), ("pyod_deepsvdd", 20),
                                          ("anomalib_ganomaly", 15)])
def test_registry_lists_the_peers(name, epochs):
    assert name in adlib.available_detectors()
    cls = detector_class(name)
    assert cls.notebook == "08_leaderboard" and cls.learning_type == "one_class"
    assert {"num_epochs", "seed", "contamination"} <= set(cls._param_names())
    # the bench command fills num_epochs from default_epochs (quick_epochs in quick mode)
    assert bench._prepare(name, "mnist", None, False, None)[1]["num_epochs"] == epochs
    assert bench._prepare(name, "mnist", None, True, None)[1]["num_epochs"] == 1
