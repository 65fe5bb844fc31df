"""Seeding, early stopping, atomic checkpoints and the NaN check."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from adlib.training import (EarlyStopping, NonFiniteLossError, check_finite, default_device,
                            load_checkpoint, save_checkpoint, seed_everything, to_builtin)


def test_seed_everything_reproduces_random_streams():
    seed_everything(123)
    a = (torch.rand(5), np.random.rand(3), random.random())
    seed_everything(123)
    b = (torch.rand(5), np.random.rand(3), random.random())
    seed_everything(124)
    c = torch.rand(5)
    assert torch.equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert not torch.equal(a[0], c)


def test_seed_everything_accepts_large_seeds():
    seed_everything(2**40 + 3)
    x = np.random.rand()
    seed_everything(2**40 + 3)
    assert np.random.rand() == x


def test_default_device():
    assert default_device("cpu") == torch.device("cpu")
    assert default_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def _module(value: float) -> torch.nn.Module:
    m = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(value)
    return m


def test_early_stopping_keeps_best_state_and_stops_after_patience():
    net = _module(0.0)
    stopper = EarlyStopping(patience=2, mode="max")
    stops = []
    for epoch, metric in enumerate([0.5, 0.9, 0.8, 0.7]):
        with torch.no_grad():
            net.weight.fill_(float(epoch))  # the weights of epoch e are all e
        stops.append(stopper.step(metric, epoch, net))
    # epoch 1 is best; epochs 2 and 3 bring nothing -> stop requested after epoch 3
    assert stops == [False, False, False, True]
    assert stopper.best == 0.9 and stopper.best_epoch == 1
    stopper.restore(net)
    assert float(net.weight.detach()) == 1.0


def test_early_stopping_best_state_is_a_copy():
    net = _module(3.0)
    stopper = EarlyStopping(patience=None)
    stopper.step(1.0, 0, net)
    with torch.no_grad():
        net.weight.fill_(-7.0)  # later training must not alter the remembered state
    stopper.restore(net)
    assert float(net.weight.detach()) == 3.0


def test_early_stopping_min_mode_and_min_delta():
    net = _module(0.0)
    stopper = EarlyStopping(patience=1, mode="min", min_delta=0.05)
    assert not stopper.step(1.0, 0, net)
    assert stopper.step(0.97, 1, net)  # better by less than min_delta: no improvement
    assert stopper.best == 1.0 and stopper.best_epoch == 0
    stopper = EarlyStopping(patience=1, mode="min")
    stopper.step(1.0, 0, net)
    assert not stopper.step(0.5, 1, net)
    assert stopper.best_epoch == 1


def test_early_stopping_without_patience_never_stops():
    net = _module(0.0)
    stopper = EarlyStopping(patience=None)
    assert not any(stopper.step(1.0 - 0.1 * e, e, net) for e in range(10))
    assert stopper.best_epoch == 0


def test_early_stopping_restore_without_steps_is_noop():
    net = _module(2.0)
    EarlyStopping().restore(net)
    assert float(net.weight.detach()) == 2.0


def test_early_stopping_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="best")


def test_checkpoint_round_trip_leaves_no_temp_file(tmp_path):
    net = torch.nn.Linear(3, 2)
    state = {"state_dict": net.state_dict(), "epoch": 4, "name": "x",
             "history": [{"loss": 0.5}], "shape": [1, 28, 28]}
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, state)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]
    back = load_checkpoint(path)
    assert back["epoch"] == 4 and back["name"] == "x" and back["history"] == [{"loss": 0.5}]
    assert back["shape"] == [1, 28, 28]
    for key, value in net.state_dict().items():
        assert torch.equal(back["state_dict"][key], value)
    # overwriting is atomic too
    save_checkpoint(path, {"epoch": 5})
    assert load_checkpoint(path) == {"epoch": 5}
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]


def test_checkpoint_round_trips_numpy_values(tmp_path):
    """numpy scalars (and arrays) anywhere in the state come back as plain Python values."""
    net = torch.nn.BatchNorm1d(2)
    state = {"state_dict": net.state_dict(), "lr": np.float64(1e-3), "w": np.float32(0.25),
             "n": np.int64(7), "flag": np.bool_(False), "name": np.str_("adam"),
             "betas": (np.float64(0.5), np.float64(0.999)), "widths": [np.int32(8), 16],
             "nested": {"k": np.int16(3), "inner": {"t": (np.bool_(True), np.str_("x"))}},
             "shape": np.array([1, 28, 28])}
    path = tmp_path / "np.pt"
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    expected = {"lr": 1e-3, "w": 0.25, "n": 7, "flag": False, "name": "adam",
                "betas": (0.5, 0.999), "widths": [8, 16],
                "nested": {"k": 3, "inner": {"t": (True, "x")}}, "shape": [1, 28, 28]}
    for key, value in expected.items():
        assert back[key] == value
    assert type(back["n"]) is int and type(back["flag"]) is bool and type(back["name"]) is str
    assert type(back["betas"]) is tuple and type(back["nested"]["inner"]["t"][1]) is str
    assert back["state_dict"]._metadata == net.state_dict()._metadata  # a state_dict stays one
    net.load_state_dict(back["state_dict"])


def test_to_builtin_leaves_other_values_alone():
    t = torch.ones(2)
    assert to_builtin(t) is t
    assert to_builtin({"a": [1, "b", None]}) == {"a": [1, "b", None]}
    assert to_builtin(np.float64(2.5)) == 2.5 and type(to_builtin(np.float64(2.5))) is float


def test_load_corrupt_checkpoint_raises_runtime_error(tmp_path):
    path = tmp_path / "bad.pt"
    save_checkpoint(path, {"w": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(RuntimeError, match="corrupt"):
        load_checkpoint(path)


def test_load_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt")


def test_load_checkpoint_refuses_arbitrary_objects(tmp_path):
    import argparse

    path = tmp_path / "obj.pt"
    torch.save({"obj": argparse.Namespace(a=1)}, path)  # not a weights-only type
    with pytest.raises(RuntimeError):
        load_checkpoint(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), torch.tensor(float("-inf"))])
def test_check_finite_names_the_epoch(value):
    with pytest.raises(NonFiniteLossError, match="epoch 7"):
        check_finite(value, 7)


def test_check_finite_passes_finite_values():
    check_finite(torch.tensor(1.5), 0)
    check_finite(0.0, 3)
    assert issubclass(NonFiniteLossError, FloatingPointError)
