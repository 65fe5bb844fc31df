"""The one detector contract of the book, and the shared training loop of the deep methods.

:class:`BaseDetector` (after PyOD and scikit-learn): ``fit(X_train, X_val=None) -> self`` and
``score(X) -> ndarray`` where **higher means more anomalous**. ``__init__`` only stores keyword
arguments; ``fit`` validates, resolves the seed and ends in :meth:`BaseDetector._finish_fit`, which
sets ``input_shape_``, ``train_scores_`` and ``threshold_`` (calibrated on the held-out normals
``X_val`` when given). Thresholding (``predict``) lives only here, and so does the input check:
every ``score``, ``score_all`` and ``predict`` of a subclass first checks that the images have
the shape the detector was fitted on.

:class:`BaseDeepDetector` owns the device, seeding, optimizer, epoch loop with a ``tqdm`` bar,
quick-mode epoch cap, early stopping on a validation metric, NaN checks and checkpoints. A deep
method implements hooks, not loops:

* ``build_network(input_shape) -> nn.Module``
* ``training_loss(batch) -> Tensor`` (or override ``training_step`` for several players)
* ``batch_scores(batch) -> Tensor`` (higher = more anomalous)
* optional ``setup(X_train, X_val)``, ``validation_metric(X_val)``, ``on_epoch_end(epoch)``,
  ``on_fit_end(X_train, X_val)`` (after the kept epoch is restored, before the training scores),
  ``configure_optimizers(steps_per_epoch)``.

Class attributes declare what a method needs (``learning_type``, ``inputs``, ``default_epochs``,
``quick_epochs``, ``needs_gpu``, ``pretrained_weights``); the bench command and the notebooks read
them instead of branching on the method's name.
"""
from __future__ import annotations

import functools
import inspect
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .metrics import auroc
from .protocols import Preprocess
from .training import (EarlyStopping, check_finite, default_device, load_checkpoint,
                       save_checkpoint, seed_everything, to_builtin)

__all__ = ["BaseDetector", "BaseDeepDetector", "NotFittedError", "as_tensor"]


class NotFittedError(RuntimeError):
    """``score`` or ``predict`` was called before ``fit``."""


def _plain(value) -> bool:
    """Whether a weights-only checkpoint can hold ``value`` (after :func:`to_builtin`)."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    return isinstance(value, (int, float, str, bool, type(None)))


def as_tensor(X) -> torch.Tensor:
    """Validate model input: a float ``N x C x H x W`` tensor, or ``N x C x T x H x W`` video
    cuboids for the methods with 3-D layers (numpy arrays are converted)."""
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(X)
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"expected a tensor or array of images, got {type(X).__name__}")
    if X.ndim not in (4, 5):
        raise ValueError(f"expected images of shape N x C x H x W (or video cuboids N x C x T x "
                         f"H x W), got shape {tuple(X.shape)}")
    if len(X) == 0:
        raise ValueError("empty input: the training set holds no image")
    if not torch.isfinite(X).all():
        raise ValueError("input images contain NaN or inf")
    return X.float()


def _fmt(shape: tuple) -> str:
    return " x ".join(str(s) for s in shape)


def _checks_input(method):
    """Wrap a ``score``-like method ``(self, X, ...)`` so that it first calls
    :meth:`BaseDetector._check_input` on ``X``."""
    if getattr(method, "_checks_input", False):
        return method

    @functools.wraps(method)
    def checked(self, X, *args, **kwargs):
        self._check_input(X)
        return method(self, X, *args, **kwargs)

    checked._checks_input = True
    return checked


class BaseDetector:
    """A fitted anomaly detector: ``fit`` on normal images, ``score`` any images.

    Attributes set by ``fit``:

    * ``input_shape_``: the shape of one training image, ``C x H x W`` (``C x T x H x W`` for
      video cuboids); ``score``, ``score_all`` and ``predict`` raise a ``ValueError`` on images
      of another shape.
    * ``train_scores_``: the scores of the training images, shape ``N``.
    * ``threshold_``: the decision threshold of ``predict``, in the units of the scores. With
      ``threshold_rule = "quantile"`` it is the ``1 - contamination`` quantile of the scores of
      the held-out normals ``X_val`` when ``fit`` is given some, else of ``train_scores_``
      (training images score lower than unseen normals when a method fits them closely: a
      kernel density, an overfitted autoencoder, so their quantile flags far more than
      ``contamination`` of new normals). ``threshold_rule = "fixed"``: the method's own value.
    * ``threshold_source_``: which images set ``threshold_``: ``"validation"``,
      ``"training"`` or ``"fixed"``.
    * ``fit_seconds_``: wall-clock seconds of ``fit`` before the final scores.
    """

    #: short registry name, set by :func:`adlib.registry.register`
    name: str = ""
    #: raised when a change of the method's code changes its results: part of a results row's
    #: configuration (:func:`adlib.results.run_config`), so rows of an older revision are never
    #: resumed as if current (``bench`` names the difference; ``--replace`` redoes them)
    revision: int = 1
    #: the selection protocols ``fit`` supports (:data:`adlib.protocols.SELECTIONS`): "paper"
    #: where it takes ``X_val_anomalies`` to choose its epoch on real anomalies
    selections: tuple = ("clean",)
    #: "one_class" (normal data only), "few_shot" (a few labelled anomalies), "transfer"
    learning_type: str = "one_class"
    #: what it scores: images (video is scored as frame patches)
    inputs: tuple = ("image",)
    #: epochs by dataset name (key None is the fallback); None for non-iterative methods
    default_epochs: dict | None = None
    quick_epochs: int | None = None
    needs_gpu: bool = False
    pretrained_weights: bool = False
    #: the chapter that explains the method
    notebook: str = ""
    #: how the protocol turns images into this method's input
    preprocess = Preprocess()
    #: how ``fit`` sets ``threshold_``: "quantile" (``1 - contamination``) of the held-out
    #: normals' scores (else the training scores'), or "fixed" by the method
    #: (:meth:`fixed_threshold`, G2D's alpha = 0.5 on a probability)
    threshold_rule: str = "quantile"

    def __init_subclass__(cls, **kwargs):
        """Every ``score``, ``score_all``, ``predict`` and ``anomaly_map`` a subclass defines
        checks its input
        first (:meth:`_check_input`), so no method has to."""
        super().__init_subclass__(**kwargs)
        for name in ("score", "score_all", "predict", "anomaly_map"):
            if name in vars(cls):
                setattr(cls, name, _checks_input(vars(cls)[name]))

    def __init__(self, seed: int = 0, contamination: float = 0.1):
        self.seed = seed
        self.contamination = contamination

    # -- parameters (scikit-learn style) ------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        names = []
        for klass in cls.__mro__:
            if "__init__" not in vars(klass) or klass is object:
                continue
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in names:
                    names.append(p.name)
        return names

    def get_params(self) -> dict:
        """The constructor's keyword arguments and their current values."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "BaseDetector":
        """Set constructor arguments; unknown names raise a ``ValueError`` listing valid ones."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}; "
                                 f"valid: {', '.join(valid)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- the contract ----------------------------------------------------------------------
    def fit(self, X_train, X_val=None) -> "BaseDetector":
        """Fit on normal training images (``N x C x H x W``); ``X_val`` holds held-out normals
        only (the threshold is calibrated on them, see the class docstring)."""
        raise NotImplementedError

    def score(self, X) -> np.ndarray:
        """Anomaly scores of images ``X`` (``N x C x H x W``, the fitted ``C x H x W``), shape
        ``N``, higher = more anomalous."""
        raise NotImplementedError

    @_checks_input
    def predict(self, X) -> np.ndarray:
        """1 (anomaly) where ``score(X) >= threshold_``, else 0; int64 array of shape ``N``.

        ``threshold_`` is the ``1 - contamination`` quantile of the held-out normals' scores
        (the training scores' when ``fit`` had no ``X_val``; see ``threshold_source_``), or the
        method's fixed threshold. Raises :class:`NotFittedError` before ``fit`` and
        ``ValueError`` for images of another shape than the fitted ``input_shape_``.
        """
        return (self.score(X) >= self.threshold_).astype(np.int64)

    def fixed_threshold(self) -> float:
        """The threshold of a method with ``threshold_rule = "fixed"`` (override it there)."""
        raise NotImplementedError(f"{type(self).__name__} declares a fixed threshold rule but "
                                  "does not define fixed_threshold()")

    # -- shared helpers --------------------------------------------------------------------
    def _check_is_fitted(self) -> None:
        if not hasattr(self, "train_scores_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(X_train) first")

    def _check_input(self, X) -> None:
        """Raise :class:`NotFittedError` before ``fit``, and ``ValueError`` when the images
        ``X`` (``N x ...``) differ in shape from the fitted ``input_shape_``."""
        self._check_is_fitted()
        fitted = getattr(self, "input_shape_", None)
        given = tuple(X.shape[1:]) if hasattr(X, "shape") else None
        if fitted is None or given is None or given == tuple(fitted):
            return
        fix = (f"Preprocess(size={fitted[-1]}, channels={fitted[0]}) from adlib.protocols"
               if len(fitted) == 3 and fitted[1] == fitted[2] else "the preprocessing of fit")
        raise ValueError(f"{self.name or type(self).__name__} was fitted on images of shape "
                         f"{_fmt(fitted)} but was given {_fmt(given)}: prepare them with {fix}, "
                         "or refit on images of this shape")

    def _check_params(self) -> None:
        """Validate the shared parameters; called first thing in ``fit``."""
        if not 0 < self.contamination < 0.5 + 1e-12:
            raise ValueError(f"contamination={self.contamination} must lie in (0, 0.5]")

    def _finish_fit(self, X_train, started: float, X_val=None) -> "BaseDetector":
        """The end of every ``fit``: record ``input_shape_``, ``train_scores_`` and the
        threshold (see the class docstring); ``X_val``: the held-out normals or ``None``."""
        self.fit_seconds_ = time.perf_counter() - started
        self.input_shape_ = tuple(int(s) for s in X_train.shape[1:])
        self.train_scores_ = np.zeros(0)  # mark fitted so that score() may run
        self.train_scores_ = self.score(X_train)
        if self.threshold_rule == "fixed":
            self.threshold_, self.threshold_source_ = float(self.fixed_threshold()), "fixed"
        elif X_val is not None and len(X_val):
            self.threshold_source_ = "validation"
            self.threshold_ = float(np.quantile(self.score(X_val), 1 - self.contamination))
        else:
            self.threshold_source_ = "training"
            self.threshold_ = float(np.quantile(self.train_scores_, 1 - self.contamination))
        return self

    @classmethod
    def epochs_for(cls, dataset: str | None, quick: bool = False) -> int | None:
        """The method's epoch budget for ``dataset`` (``quick_epochs`` in quick mode)."""
        if cls.default_epochs is None:
            return None
        if quick and cls.quick_epochs is not None:
            return cls.quick_epochs
        return cls.default_epochs.get(dataset, cls.default_epochs.get(None))


class BaseDeepDetector(BaseDetector):
    """Shared loop for the torch methods; subclasses implement the hooks listed above.

    Args:
        num_epochs: epoch budget (``None``: the class's ``default_epochs[None]``).
        batch_size, lr: the loader's batch size and the optimizer's learning rate.
        patience: early-stopping patience in epochs on ``validation_metric`` (``None``: keep the
            best epoch but never stop early). Without ``X_val`` the last epoch is kept.
        quick: cap the epochs at ``quick_epochs`` (CI and notebooks' quick mode).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        checkpoint: path of a checkpoint written atomically after every epoch (optional).
        verbose: show progress bars.
    """

    default_epochs = {None: 10}
    quick_epochs = 1
    #: "max" when a higher validation metric is better, "min" for a loss
    validation_mode = "max"

    def __init__(self, num_epochs: int | None = None, batch_size: int = 64, lr: float = 1e-3,
                 patience: int | None = None, quick: bool = False, device: str = "auto",
                 checkpoint: str | None = None, verbose: bool = True, seed: int = 0,
                 contamination: float = 0.1):
        super().__init__(seed=seed, contamination=contamination)
        self.num_epochs = num_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.quick = quick
        self.device = device
        self.checkpoint = checkpoint
        self.verbose = verbose

    # -- hooks -------------------------------------------------------------------------------
    def build_network(self, input_shape: tuple) -> torch.nn.Module:
        """Return the method's network for inputs of shape ``C x H x W``."""
        raise NotImplementedError

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """The loss of one batch of normal images (single-optimizer methods)."""
        raise NotImplementedError

    def batch_scores(self, batch: torch.Tensor) -> torch.Tensor:
        """Anomaly scores of one batch, in eval mode and without gradients."""
        raise NotImplementedError

    def setup(self, X_train: torch.Tensor, X_val: torch.Tensor | None) -> None:
        """Called once after the network is built, before the first epoch."""

    def validation_metric(self, X_val: torch.Tensor) -> float | None:
        """A number to select the epoch by (see ``validation_mode``); ``None`` disables it."""
        return None

    def on_epoch_end(self, epoch: int) -> None:
        """Called after every epoch (snapshots, schedules)."""

    def on_fit_end(self, X_train: torch.Tensor, X_val: torch.Tensor | None) -> None:
        """Called once the kept epoch is restored, before the training scores are computed
        (score calibration, score selection)."""

    def configure_optimizers(self, steps_per_epoch: int):
        """Return ``(optimizer, scheduler_or_None)``; the scheduler is stepped every batch."""
        return torch.optim.Adam(self.network_.parameters(), lr=self.lr), None

    def optimizer_step(self, optimizer, loss: torch.Tensor, epoch: int,
                       what: str = "training loss") -> float:
        """Check ``loss`` is finite, then one step of ``optimizer`` on it; return it as a float
        (for methods with several players, each with its own optimizer)."""
        check_finite(loss, epoch, what)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def training_step(self, batch: torch.Tensor, epoch: int) -> dict:
        """One optimisation step; override for several players. Returns losses as floats."""
        loss = self.optimizer_step(self.optimizer_, self.training_loss(batch), epoch)
        if self.scheduler_ is not None:
            self.scheduler_.step()
        return {"loss": loss}

    # -- the loop ------------------------------------------------------------------------------
    def _num_epochs(self) -> int:
        epochs = self.num_epochs if self.num_epochs is not None else self.epochs_for(None)
        if self.quick and self.quick_epochs is not None:
            epochs = min(epochs, self.quick_epochs)
        if epochs < 1:
            raise ValueError(f"num_epochs={epochs} must be at least 1")
        return epochs

    def _batches(self, X: torch.Tensor, shuffle: bool):
        n = len(X)
        order = torch.randperm(n, generator=self.generator_) if shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            yield X[order[start:start + self.batch_size]].to(self.device_)

    def fit(self, X_train, X_val=None) -> "BaseDeepDetector":
        """Train for the epoch budget, keep the epoch with the best validation metric on the
        held-out normals ``X_val`` (which also calibrate the threshold)."""
        started = time.perf_counter()
        self._check_params()
        X_train = as_tensor(X_train)
        X_val = as_tensor(X_val) if X_val is not None and len(X_val) else None
        seed_everything(self.seed)
        self.generator_ = torch.Generator().manual_seed(self.seed)
        self.device_ = default_device(self.device)
        self.input_shape_ = tuple(X_train.shape[1:])
        self.network_ = self.build_network(self.input_shape_).to(self.device_)
        steps = (len(X_train) + self.batch_size - 1) // self.batch_size
        self.optimizer_, self.scheduler_ = self.configure_optimizers(steps)
        self.setup(X_train, X_val)
        stopper = EarlyStopping(self.patience, mode=self.validation_mode)
        self.history_ = []
        epochs = self._num_epochs()
        bar = tqdm(range(epochs), desc=f"{self.name or type(self).__name__}", unit="epoch",
                   disable=not self.verbose, leave=False)
        for epoch in bar:
            self.network_.train()
            sums, count = {}, 0
            for batch in self._batches(X_train, shuffle=True):
                for key, value in self.training_step(batch, epoch).items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
            row = {"epoch": epoch, **{k: v / count for k, v in sums.items()}}
            if X_val is not None:
                self.network_.eval()
                with torch.no_grad():
                    val = self.validation_metric(X_val)
                if val is not None:
                    row["val_metric"] = float(val)
            if getattr(self, "tracked_", None) is not None:
                self.network_.eval()
                with torch.no_grad():
                    row["track_auroc"] = auroc(self.tracked_[1], self._scores_of(self.tracked_[0]))
            self.history_.append(row)
            bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k != "epoch"})
            self.on_epoch_end(epoch)
            if self.checkpoint:
                self.save(self.checkpoint)
            if "val_metric" in row and stopper.step(row["val_metric"], epoch, self.network_):
                break
        stopper.restore(self.network_)
        self.best_epoch_ = stopper.best_epoch if stopper.best is not None else epoch
        self.epochs_run_ = epoch + 1
        self.network_.eval()
        self.on_fit_end(X_train, X_val)
        self._finish_fit(X_train, started, X_val)
        if self.checkpoint:  # the final file holds the kept epoch and the fitted threshold
            self.save(self.checkpoint)
        return self

    def track(self, X, y) -> "BaseDeepDetector":
        """Record, after every epoch of every later ``fit``, the AUROC of the current weights
        on ``X`` (``N x C x H x W``) with labels ``y`` (1 = anomaly) as ``track_auroc`` in
        ``history_``; ``track(None, None)`` turns it off and lets ``X`` go.

        It only watches: the kept epoch, the threshold and every choice ignore it (its scoring
        time counts in ``fit_seconds_``). The score is ``batch_scores`` as it stands during
        training: for a detector that picks its score after training (ALPS), the default one
        (ALPS' plain score). Meant for a development split (training images only,
        :func:`adlib.protocols.development_split`), to see what the epoch budget does to real
        anomalies beside the validation metric; ``bench --dev`` sets it.

        Raises:
            ValueError: ``y`` is not one 0/1 label per image, or lacks one of the two labels.
        """
        if X is None:
            self.tracked_ = None
            return self
        y = np.asarray(y)
        if len(y) != len(X) or set(np.unique(y)) != {0, 1}:
            raise ValueError(f"track needs one 0/1 label per image and both labels, got "
                             f"{len(X)} images and labels {sorted(set(np.unique(y).tolist()))}")
        self.tracked_ = (as_tensor(X), y)
        return self

    def _scores_of(self, X: torch.Tensor) -> np.ndarray:
        """``batch_scores`` over every batch of ``X`` in order, as one float64 array (no mode
        change, no checks: for ``score`` and validation metrics)."""
        out = [self.batch_scores(b).detach().float().cpu().reshape(-1)
               for b in self._batches(X, shuffle=False)]
        return torch.cat(out).double().numpy()

    @torch.no_grad()
    def score(self, X) -> np.ndarray:
        """Scores of ``X`` by ``batch_scores`` in eval mode, batch by batch."""
        X = as_tensor(X)
        self.network_.eval()
        return self._scores_of(X)

    def reconstruct_batch(self, batch: torch.Tensor) -> torch.Tensor | None:
        """The reconstruction of ``batch`` (same shape) for a method that reconstructs its
        input (override it there); ``None`` for the others."""
        return None

    @property
    def reconstructs(self) -> bool:
        """Whether the method reconstructs its input (defines :meth:`reconstruct_batch`), so
        that :meth:`anomaly_map` has a map to give."""
        return type(self).reconstruct_batch is not BaseDeepDetector.reconstruct_batch

    @_checks_input
    @torch.no_grad()
    def anomaly_map(self, X) -> np.ndarray:
        """Where each image of ``X`` (``N x C x H x W``, as for ``score``) is anomalous: the
        absolute reconstruction error ``|x - x_hat|`` averaged over channels, in the input's
        units (float32 ``N x H x W``; 0 is a perfect reconstruction), eval mode.

        Raises:
            NotFittedError: before ``fit``.
            ValueError: images of another shape than the fitted one.
            TypeError: the method does not reconstruct its input (``reconstructs`` is False).
        """
        if not self.reconstructs:
            raise TypeError(f"{self.name or type(self).__name__} does not reconstruct its "
                            "input, so it has no anomaly map; use score() for image scores")
        self.network_.eval()
        out = [(self.reconstruct_batch(b) - b).abs().mean(1).float().cpu()
               for b in self._batches(as_tensor(X), shuffle=False)]
        return torch.cat(out).numpy()

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path, extra: dict | None = None) -> None:
        """Write the network's weights, the parameters and the threshold atomically, with
        ``extra`` (plain values: what else rebuilds the detector, such as its preprocessing).

        Parameters are stored as plain Python values (numpy scalars such as ``np.float64(1e-3)``
        become ``float``, see :func:`adlib.training.to_builtin`); a parameter that is not a
        number, string, ``None`` or a list, tuple or dict of them is left out.
        """
        params = {k: v for k, v in to_builtin(self.get_params()).items() if _plain(v)}
        save_checkpoint(path, {"state_dict": self.network_.state_dict(), "params": params,
                               "input_shape": list(self.input_shape_),
                               "history": getattr(self, "history_", []),
                               "threshold": getattr(self, "threshold_", None),
                               "threshold_source": getattr(self, "threshold_source_", None),
                               **(extra or {})})

    def load(self, path) -> "BaseDeepDetector":
        """Restore weights, parameters and threshold saved by :meth:`save` (read with
        ``weights_only=True``).

        Raises:
            FileNotFoundError: no file at ``path``.
            RuntimeError: the file is corrupt or not a weights-only file, or it is an epoch
                checkpoint written before ``fit`` finished (no threshold yet).
        """
        state = load_checkpoint(path)
        self.set_params(**{k: v for k, v in state["params"].items() if k in self._param_names()})
        self.device_ = default_device(self.device)
        self.generator_ = torch.Generator().manual_seed(self.seed)
        self.input_shape_ = tuple(state["input_shape"])
        self.network_ = self.build_network(self.input_shape_).to(self.device_)
        self.network_.load_state_dict(state["state_dict"])
        self.history_ = state.get("history", [])
        self.train_scores_ = np.zeros(0)
        if state.get("threshold") is None:
            raise RuntimeError(f"{path} was saved before fit finished (an epoch checkpoint): "
                               "it has no threshold; refit or load the final checkpoint")
        self.threshold_ = float(state["threshold"])
        self.threshold_source_ = state.get("threshold_source") or (  # older files: training
            "fixed" if self.threshold_rule == "fixed" else "training")
        return self
