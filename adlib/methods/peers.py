"""Peers: other libraries' detectors behind the book's contract, for the leaderboard.

The code that trains and scores is the other library's; these wrappers only turn images into
its input, fix the epochs and the seed, and return its scores (higher = more anomalous).

* ``pyod_autoencoder``: PyOD 3.6.7's ``pyod.models.auto_encoder.AutoEncoder``, a dense
  autoencoder (784-64-32-64-784, batch norm, dropout 0.2, standardised input) scored by the
  reconstruction distance.
* ``pyod_deepsvdd``: PyOD 3.6.7's ``pyod.models.deep_svdd.DeepSVDD`` (Ruff et al. 2018), a dense
  bias-free network pulled towards a centre; scored by the squared distance to it.
* ``anomalib_ganomaly``: anomalib 2.7.0's ``Ganomaly`` (Akcay et al. 2018), an encoder-decoder-
  encoder GAN trained from scratch; scored by its raw latent distance (``pred_score`` before
  anomalib's min-max normalisation).

What we set: the PyOD pair runs on flattened pixels in [0, 1] with PyOD's defaults but 20
epochs and the seed (``random_state`` and torch/numpy seeding), scores = ``decision_function``;
the AutoEncoder's batch shrinks to the training-set size below 32 (PyOD drops the incomplete
last batch). Ganomaly: 15 epochs, batch 64, 32 x 32 RGB input (the protocol resizes 28 -> 32
and repeats grey; anomalib's default pre-processor resizes other sides to a power of 2 of at
least 32, the only sides its encoders agree on, and normalises with ImageNet statistics),
trained by a Lightning ``Trainer`` on the arrays in memory; no validation, post-processing or
evaluator; ``n_params_`` counts its generator and discriminator.

Reference figures (``PEERS.md``, one-class, seed 0): MNIST mean AUROC over the 10 classes
AutoEncoder 91.58, DeepSVDD 89.87 (Isolation Forest 85.77); CIFAR-10 57.10, 56.78 (59.69).
Ganomaly, classes 0, 1, 2: MNIST 99.12, 99.91, 54.85; CIFAR-10 63.62, 43.15, 63.58; 280 to 380 s
of fit per class on 2 CPU cores.

The libraries are imported inside ``fit`` (``pip install -e ".[peers]"``), so ``import adlib``
works without them. Notebook: ``notebooks/08_leaderboard.py``.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import math
import tempfile
import time
import warnings

import numpy as np
import torch

from ..detectors import BaseDetector, as_tensor
from ..protocols import Preprocess
from ..registry import register
from ..training import count_parameters, default_device, seed_everything
from .baselines import _flatten

__all__ = ["PyODAutoEncoder", "PyODDeepSVDD", "AnomalibGanomaly"]


def _import(module: str):
    """Import a peer library's module, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        raise ImportError(f"the peer detectors need {package}, which is not installed: "
                          f'pip install -e ".[peers]"') from err


class _Peer(BaseDetector):
    """What the wrappers share: the epoch budget, the seed and the missing-library message."""

    notebook = "08_leaderboard"
    quick_epochs = 1
    #: the module ``fit`` imports (tests skip the detector where it is missing)
    requires = ""

    def __init__(self, num_epochs: int | None = None, seed: int = 0,
                 contamination: float = 0.1):
        super().__init__(seed=seed, contamination=contamination)
        self.num_epochs = num_epochs

    def _epochs(self) -> int:
        epochs = self.num_epochs if self.num_epochs is not None else self.epochs_for(None)
        if epochs < 1:
            raise ValueError(f"num_epochs={epochs} must be at least 1")
        return epochs


class _PyODPeer(_Peer):
    """A PyOD detector on flattened pixels; ``X_val`` only calibrates the threshold."""

    default_epochs = {None: 20}

    def _make(self, module, n_features: int, n_samples: int, epochs: int):
        """The PyOD estimator, built from the imported ``module``."""
        raise NotImplementedError

    def _network(self) -> torch.nn.Module | None:
        """The torch model the fitted estimator holds."""
        raise NotImplementedError

    def fit(self, X_train, X_val=None):
        """Fit the PyOD estimator on the flattened training normals; the held-out normals
        ``X_val`` only calibrate the threshold."""
        started = time.perf_counter()
        self._check_params()
        X = _flatten(X_train)
        epochs = self._epochs()
        module = _import(self.requires)
        seed_everything(self.seed)
        self.estimator_ = self._make(module, X.shape[1], len(X), epochs)
        seed_everything(self.seed)  # PyOD shuffles with the global torch and numpy generators
        self.estimator_.fit(X)
        network = self._network()
        if network is not None:
            self.n_params_ = count_parameters(network)
        return self._finish_fit(X_train, started, X_val)

    def score(self, X) -> np.ndarray:
        """PyOD's ``decision_function`` of each flattened image."""
        return np.asarray(self.estimator_.decision_function(_flatten(X)), dtype=np.float64)


@register("pyod_autoencoder")
class PyODAutoEncoder(_PyODPeer):
    """PyOD's AutoEncoder on pixels (see the module docstring)."""

    requires = "pyod.models.auto_encoder"

    def _make(self, module, n_features, n_samples, epochs):
        return module.AutoEncoder(contamination=self.contamination, epoch_num=epochs,
                                  batch_size=min(32, n_samples), random_state=self.seed,
                                  verbose=0)

    def _network(self):
        return getattr(self.estimator_, "model", None)


@register("pyod_deepsvdd")
class PyODDeepSVDD(_PyODPeer):
    """PyOD's DeepSVDD on pixels (see the module docstring)."""

    requires = "pyod.models.deep_svdd"

    def _make(self, module, n_features, n_samples, epochs):
        return module.DeepSVDD(n_features=n_features, contamination=self.contamination,
                               epochs=epochs, random_state=self.seed, verbose=0)

    def _network(self):
        return getattr(self.estimator_, "model_", None)


def _rgb(X) -> torch.Tensor:
    X = as_tensor(X)
    if X.ndim != 4 or X.shape[1] not in (1, 3):
        raise ValueError(f"Ganomaly takes grey or RGB images N x C x H x W, got {tuple(X.shape)}")
    return X.repeat(1, 3, 1, 1) if X.shape[1] == 1 else X


@contextlib.contextmanager
def _quiet():
    """Silence Lightning's banners and the warnings of anomalib's imports."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@register("anomalib_ganomaly")
class AnomalibGanomaly(_Peer):
    """anomalib's GANomaly on 32 x 32 RGB images (see the module docstring).

    Args:
        num_epochs: epochs (``None``: 15); batch_size: 64 as measured in ``PEERS.md``.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        verbose: Lightning's progress bar.
    """

    default_epochs = {None: 15}
    preprocess = Preprocess(size=32, channels=3)
    requires = "anomalib.models"

    def __init__(self, num_epochs: int | None = None, batch_size: int = 64,
                 device: str = "auto", verbose: bool = False, seed: int = 0,
                 contamination: float = 0.1):
        super().__init__(num_epochs=num_epochs, seed=seed, contamination=contamination)
        self.batch_size = batch_size
        self.device = device
        self.verbose = verbose

    def fit(self, X_train, X_val=None):
        """Train GANomaly on the training normals; the held-out normals ``X_val`` only
        calibrate the threshold."""
        started = time.perf_counter()
        self._check_params()
        X = _rgb(X_train)
        epochs = self._epochs()
        with _quiet():
            models = _import(self.requires)
            from anomalib.data import ImageBatch
            from lightning.pytorch import Trainer
        # GANomaly's encoders agree on the latent shape only for sides 32, 64, 128, ...
        side = max(32, 2 ** math.ceil(math.log2(max(X.shape[-2:]))))
        seed_everything(self.seed)
        self.model_ = models.Ganomaly(
            batch_size=self.batch_size,
            pre_processor=models.Ganomaly.configure_pre_processor((side, side)),
            post_processor=False, evaluator=False, visualizer=False)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(X), batch_size=self.batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=lambda items: ImageBatch(image=torch.stack([x for (x,) in items])))
        self.device_ = default_device(self.device)
        with tempfile.TemporaryDirectory() as root, _quiet():
            trainer = Trainer(max_epochs=epochs, accelerator=self.device_.type, devices=1,
                              logger=False, enable_checkpointing=False,
                              enable_model_summary=False, enable_progress_bar=self.verbose,
                              default_root_dir=root, **self.model_.trainer_arguments)
            trainer.fit(self.model_, train_dataloaders=loader)
        self.model_.to(self.device_).eval()
        self.n_params_ = count_parameters(self.model_.model)  # generator and discriminator
        return self._finish_fit(X_train, started, X_val)

    @torch.no_grad()
    def score(self, X) -> np.ndarray:
        """GANomaly's raw ``pred_score`` (latent distance) of each image, batch by batch."""
        X = _rgb(X)
        self.model_.eval()
        out = [self.model_(X[i:i + self.batch_size].to(self.device_)).pred_score.reshape(-1)
               for i in range(0, len(X), self.batch_size)]
        return torch.cat(out).double().cpu().numpy()
