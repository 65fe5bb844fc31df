"""Classical baselines behind the detector contract, and a convolutional autoencoder.

* ``isolation_forest``, ``ocsvm``, ``kde``: scikit-learn estimators on flattened pixels; the score
  is the negated normality (``-score_samples`` / ``-decision_function`` / ``-log density``), so
  that higher means more anomalous.
* ``conv_ae``: a small convolutional autoencoder trained with the pixel MSE on normal images; the
  score is each image's reconstruction MSE. It is the "vanilla autoencoder" that ALPS, ADNL and
  OCLR improve on.

Notebook: ``notebooks/00_protocols_and_baselines.py``.
"""
from __future__ import annotations

import time

import numpy as np
from torch import nn
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import KernelDensity
from sklearn.svm import OneClassSVM

from ..detectors import BaseDeepDetector, BaseDetector, as_tensor
from ..registry import register

__all__ = ["IsolationForestDetector", "OCSVMDetector", "KDEDetector", "ConvAE",
           "ConvAEDetector"]


def _flatten(X) -> np.ndarray:
    return as_tensor(X).reshape(len(X), -1).numpy().astype(np.float64)


class _PixelDetector(BaseDetector):
    """Shared fit/score for the sklearn estimators on flattened pixels."""

    notebook = "00_protocols_and_baselines"

    def _make_estimator(self):
        raise NotImplementedError

    def _normality(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, X_train, X_val=None):
        """Fit the estimator on flattened training normals; the held-out normals ``X_val``
        only calibrate the threshold."""
        started = time.perf_counter()
        self._check_params()
        self.estimator_ = self._make_estimator().fit(_flatten(X_train))
        return self._finish_fit(X_train, started, X_val)

    def score(self, X) -> np.ndarray:
        """Negated normality of each flattened image."""
        return -np.asarray(self._normality(_flatten(X)), dtype=np.float64)


@register("isolation_forest")
class IsolationForestDetector(_PixelDetector):
    """Isolation Forest (Liu et al. 2008) on pixels, ``sklearn.ensemble.IsolationForest``."""

    def __init__(self, n_estimators: int = 100, seed: int = 0, contamination: float = 0.1):
        super().__init__(seed=seed, contamination=contamination)
        self.n_estimators = n_estimators

    def _make_estimator(self):
        return IsolationForest(n_estimators=self.n_estimators, random_state=self.seed)

    def _normality(self, X):
        return self.estimator_.score_samples(X)


@register("ocsvm")
class OCSVMDetector(_PixelDetector):
    """One-class SVM (Schoelkopf et al. 2001) with an RBF kernel on pixels.

    ``nu`` bounds the share of training outliers; ``gamma="scale"`` is sklearn's 1/(d var(X)).
    Deterministic, so the seed has no effect.
    """

    def __init__(self, nu: float = 0.1, gamma: str | float = "scale", seed: int = 0,
                 contamination: float = 0.1):
        super().__init__(seed=seed, contamination=contamination)
        self.nu = nu
        self.gamma = gamma

    def _make_estimator(self):
        return OneClassSVM(kernel="rbf", nu=self.nu, gamma=self.gamma)

    def _normality(self, X):
        return self.estimator_.decision_function(X)


@register("kde")
class KDEDetector(_PixelDetector):
    """Gaussian kernel density on pixels (optionally after PCA); score = -log density."""

    def __init__(self, bandwidth: str | float = "scott", pca_components: int | None = None,
                 seed: int = 0, contamination: float = 0.1):
        super().__init__(seed=seed, contamination=contamination)
        self.bandwidth = bandwidth
        self.pca_components = pca_components

    def _make_estimator(self):
        kde = KernelDensity(kernel="gaussian", bandwidth=self.bandwidth)
        if self.pca_components is None:
            return kde
        from sklearn.pipeline import make_pipeline
        return make_pipeline(PCA(self.pca_components, random_state=self.seed), kde)

    def _normality(self, X):
        return self.estimator_.score_samples(X)


class ConvAE(nn.Module):
    """Convolutional autoencoder for square images whose side is divisible by 4.

    Encoder: two stride-2 convolutions (32, 64 channels) and a dense layer to ``latent_dim``;
    decoder: the mirror image with transposed convolutions and a sigmoid output in [0, 1].
    """

    def __init__(self, in_channels: int = 1, side: int = 28, latent_dim: int = 32):
        super().__init__()
        if side % 4:
            raise ValueError(f"ConvAE needs an image side divisible by 4, got {side}")
        self.feat = side // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.LeakyReLU(0.1),
            nn.Conv2d(32, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.LeakyReLU(0.1),
            nn.Flatten(), nn.Linear(64 * self.feat ** 2, latent_dim))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 64 * self.feat ** 2), nn.LeakyReLU(0.1),
            nn.Unflatten(1, (64, self.feat, self.feat)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.LeakyReLU(0.1),
            nn.ConvTranspose2d(32, in_channels, 4, 2, 1), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


@register("conv_ae")
class ConvAEDetector(BaseDeepDetector):
    """Convolutional autoencoder scored by per-image reconstruction MSE (inputs in [0, 1]).

    The epoch is selected by the mean reconstruction MSE of the held-out normals (lower is
    better); no anomaly is seen before testing.
    """

    default_epochs = {None: 15}
    quick_epochs = 1
    validation_mode = "min"
    notebook = "00_protocols_and_baselines"

    def __init__(self, latent_dim: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim

    def build_network(self, input_shape):
        return ConvAE(input_shape[0], input_shape[-1], self.latent_dim)

    def training_loss(self, batch):
        return nn.functional.mse_loss(self.network_(batch), batch)

    def batch_scores(self, batch):
        return (self.network_(batch) - batch).pow(2).flatten(1).mean(1)

    def reconstruct_batch(self, batch):
        """The autoencoder's reconstruction."""
        return self.network_(batch)

    def validation_metric(self, X_val):
        return float(np.mean(self._scores_of(X_val)))
