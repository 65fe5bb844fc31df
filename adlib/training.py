"""Training utilities: seeding, device choice, early stopping, checkpoints, loss checks."""
from __future__ import annotations

import copy
import math
import os
import random
from pathlib import Path

import numpy as np
import torch

__all__ = ["seed_everything", "default_device", "count_parameters", "EarlyStopping",
           "save_checkpoint", "load_checkpoint", "check_finite", "NonFiniteLossError",
           "to_builtin"]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (CPU and CUDA); optionally ask torch for deterministic kernels.

    On the CPU the same seed gives the same scores; on CUDA, deterministic mode
    (``torch.use_deterministic_algorithms(True, warn_only=True)``) removes most variation.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def default_device(device: str | None = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to torch."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def count_parameters(*modules: torch.nn.Module) -> int:
    """Trainable parameters of ``modules``, each parameter counted once (modules may share)."""
    seen = {id(p): p.numel() for m in modules for p in m.parameters() if p.requires_grad}
    return sum(seen.values())


def check_finite(loss: torch.Tensor | float, epoch: int, where: str = "training loss") -> None:
    """Stop training with a clear message when ``loss`` is NaN or infinite."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        raise NonFiniteLossError(f"{where} became {value} in epoch {epoch}: lower the learning "
                                 "rate or check the input scaling")


class EarlyStopping:
    """Keep the best state by a validation metric; say when ``patience`` epochs brought nothing.

    Args:
        patience: epochs without improvement before stopping (``None``: never stop early).
        mode: ``"max"`` when higher is better (AUROC), ``"min"`` for a loss.
        min_delta: the smallest change that counts as an improvement.
    """

    def __init__(self, patience: int | None = 5, mode: str = "max", min_delta: float = 0.0):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best, self.best_epoch, self.best_state, self.bad_epochs = None, -1, None, 0

    def step(self, value: float, epoch: int, module: torch.nn.Module) -> bool:
        """Record ``value`` for ``epoch``; return True when training should stop."""
        sign = 1 if self.mode == "max" else -1
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_state = copy.deepcopy(module.state_dict())
        else:
            self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience

    def restore(self, module: torch.nn.Module) -> None:
        """Load the best state seen into ``module`` (no-op if none was recorded)."""
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


def to_builtin(value):
    """``value`` with every numpy scalar (``np.float64``, ``np.int64``, ``np.bool_``, ``np.str_``
    ...) and array turned into plain Python numbers, strings and lists, inside any nesting of
    lists, tuples and dicts (tuples stay tuples); tensors and other objects are returned as
    they are. A weights-only ``torch.load`` refuses numpy types, so checkpoints hold only these.
    """
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, dict):  # a copy keeps the type and a state_dict's ``_metadata``
        out = copy.copy(value)
        out.clear()
        out.update((to_builtin(k), to_builtin(v)) for k, v in value.items())
        return out
    if isinstance(value, (list, tuple)):
        items = [to_builtin(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, tuples, dicts) atomically: temp file,
    then rename. numpy scalars and arrays in it are stored as plain Python values
    (:func:`to_builtin`), so that :func:`load_checkpoint` can read them back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(to_builtin(state), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises:
        FileNotFoundError: no file at ``path``.
        RuntimeError: the file is truncated, corrupt or holds objects other than tensors and
            plain Python values.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise RuntimeError(f"checkpoint {path} is corrupt or not a weights-only file: "
                           f"{err}") from err
