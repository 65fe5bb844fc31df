"""ADACL: the network, the augmentations that make anomalies, labels and a tiny training run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ramp_images

from adlib.methods.adacl import (ADACL, AUGMENTATIONS, ADACLNet, cut_paste, make_anomalies,
                                 mixup, puzzle, rotate90, rotate270, sample_labels)


def unique_image(channels: int = 2, side: int = 16) -> torch.Tensor:
    """C x H x W image whose pixels are all different (so every move can be traced)."""
    return torch.arange(channels * side * side, dtype=torch.float32).reshape(channels, side,
                                                                             side) / 1000.0


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- the network

@pytest.mark.parametrize("channels", [1, 3])
def test_adaclnet_is_small(channels):
    net = ADACLNet(channels)
    n = sum(p.numel() for p in net.parameters())
    assert 100_000 < n < 300_000


@pytest.mark.parametrize("side", [16, 28, 32])
def test_adaclnet_output_clipped_to_unit_interval(side):
    torch.manual_seed(0)
    net = ADACLNet(3).eval()
    x = torch.randn(6, 3, side, side) * 1000  # wild inputs
    with torch.no_grad():
        out = net(x)
    assert out.shape == (6,)
    assert (out >= 0).all() and (out <= 1).all()
    assert torch.isfinite(out).all()
    raw = ADACLNet(3, clip=False).eval()
    raw.load_state_dict(net.state_dict())
    with torch.no_grad():
        unclipped = raw(x)
    torch.testing.assert_close(out, unclipped.clamp(0, 1))


def test_adaclnet_embed_shape():
    net = ADACLNet(1, widths=(8, 8, 16, 24)).eval()
    with torch.no_grad():
        assert net.embed(torch.rand(2, 1, 16, 16)).shape == (2, 24)


# --------------------------------------------------------------------------- augmentations

def quarters(x):
    h2, w2 = x.shape[1] // 2, x.shape[2] // 2
    return [x[:, :h2, :w2], x[:, :h2, w2:], x[:, h2:, :w2], x[:, h2:, w2:]]


@pytest.mark.parametrize("seed", range(8))
def test_puzzle_permutes_the_four_quarters(seed):
    x = unique_image()
    out = puzzle(x, gen(seed))
    assert out.shape == x.shape
    qx, qo = quarters(x), quarters(out)
    perm = []
    for q in qo:
        matches = [i for i, p in enumerate(qx) if torch.equal(p, q)]
        assert len(matches) == 1  # every output quarter is exactly one input quarter
        perm.append(matches[0])
    assert sorted(perm) == [0, 1, 2, 3]  # a permutation
    assert perm != [0, 1, 2, 3]  # never the identity
    assert not torch.equal(out, x)


def test_puzzle_draws_several_permutations():
    x = unique_image()
    outs = {tuple(puzzle(x, gen(s)).flatten()[::37].tolist()) for s in range(30)}
    assert len(outs) > 3


def test_puzzle_odd_side_keeps_last_row_and_column():
    x = unique_image(1, 15)
    out = puzzle(x, gen(0))
    torch.testing.assert_close(out[:, 14, :], x[:, 14, :])
    torch.testing.assert_close(out[:, :, 14], x[:, :, 14])


def test_rotations_match_torch_rot90():
    x = unique_image(3, 8)
    torch.testing.assert_close(rotate90(x, gen(0)), torch.rot90(x, 1, dims=(1, 2)))
    torch.testing.assert_close(rotate270(x, gen(0)), torch.rot90(x, 3, dims=(1, 2)))
    torch.testing.assert_close(rotate90(rotate270(x)), x)
    assert not torch.equal(rotate90(x), x)


@pytest.mark.parametrize("seed", range(12))
def test_cut_paste_copies_one_rectangle(seed):
    x = unique_image(2, 20)
    out = cut_paste(x, gen(seed))
    assert out.shape == x.shape
    changed = (out != x).any(dim=0)
    if not changed.any():  # source and destination coincided: nothing moved
        return
    rows = torch.nonzero(changed.any(dim=1)).flatten()
    cols = torch.nonzero(changed.any(dim=0)).flatten()
    y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    assert changed[y0:y1, x0:x1].all()  # the changed pixels form one full rectangle
    ph, pw = y1 - y0, x1 - x0
    assert 2 <= ph <= 8 and 2 <= pw <= 8  # sides within [10%, 40%] of 20
    # its content is a rectangle of the original image, shifted
    patch = out[:, y0:y1, x0:x1]
    sources = [(sy, sx) for sy in range(20 - ph + 1) for sx in range(20 - pw + 1)
               if torch.equal(x[:, sy:sy + ph, sx:sx + pw], patch)]
    assert len(sources) == 1 and sources[0] != (y0, x0)


def test_cut_paste_moves_something_for_most_seeds():
    x = unique_image(1, 20)
    moved = sum(not torch.equal(cut_paste(x, gen(s)), x) for s in range(20))
    assert moved >= 15


@pytest.mark.parametrize("seed", range(8))
def test_mixup_is_convex_combination_with_rotation(seed):
    torch.manual_seed(100 + seed)
    x = torch.rand(2, 12, 12)
    out = mixup(x, gen(seed))
    fits = []
    for k in (1, 2, 3):
        r = torch.rot90(x, k, dims=(1, 2))
        d = (x - r).flatten().double()
        lam = float(((out - r).flatten().double() @ d) / (d @ d))
        if torch.allclose(out, lam * x + (1 - lam) * r, atol=1e-5):
            fits.append((k, lam))
    assert len(fits) == 1
    k, lam = fits[0]
    assert 0.5 - 1e-6 <= lam <= 0.8 + 1e-6
    assert k in (1, 3)  # section 4.3.4: 90 degrees once or three times, never 180


def test_mixup_never_rotates_by_180_and_draws_both_others():
    """A 180-degree copy leaves 0, 1 and 8 nearly unchanged, yet would be labelled anomalous."""
    x = torch.rand(1, 12, 12)
    seen = set()
    for s in range(60):
        out = mixup(x, gen(s))
        for k in (1, 2, 3):
            r = torch.rot90(x, k, dims=(1, 2))
            d = (x - r).flatten().double()
            lam = float(((out - r).flatten().double() @ d) / (d @ d))
            if torch.allclose(out, lam * x + (1 - lam) * r, atol=1e-5):
                seen.add(k)
    assert seen == {1, 3}


def test_mixup_draws_various_rotations_and_weights():
    torch.manual_seed(0)
    x = torch.rand(1, 8, 8)
    outs = [mixup(x, gen(s)) for s in range(20)]
    assert len({round(float(o.sum()), 5) for o in outs}) > 1
    assert len({round(float(o[0, 0, 0]), 5) for o in outs}) > 5


def test_augmentation_names():
    assert list(AUGMENTATIONS) == ["cut_paste", "puzzle", "rotate90", "rotate270", "mixup"]


def test_make_anomalies_one_per_image_with_requested_augmentations():
    X = torch.stack([unique_image(1, 16) + i for i in range(10)])
    out, kinds = make_anomalies(X, gen(0), ("rotate90",), return_kinds=True)
    assert out.shape == X.shape and (kinds == 0).all()
    torch.testing.assert_close(out, torch.rot90(X, 1, dims=(2, 3)))

    names = ("rotate90", "rotate270")
    out, kinds = make_anomalies(X, gen(1), names, return_kinds=True)
    assert out.shape == X.shape and len(kinds) == len(X)
    for x, o, k in zip(X, out, kinds.tolist()):
        torch.testing.assert_close(o, AUGMENTATIONS[names[k]](x))
    assert set(kinds.tolist()) == {0, 1}  # both drawn among ten images


def test_make_anomalies_default_uses_all_five():
    X = torch.rand(60, 1, 8, 8)
    out, kinds = make_anomalies(X, gen(0), return_kinds=True)
    assert out.shape == X.shape
    assert set(kinds.tolist()) == set(range(5))
    assert isinstance(make_anomalies(X[:3], gen(0)), torch.Tensor)


def test_make_anomalies_unknown_name():
    with pytest.raises(KeyError):
        make_anomalies(torch.rand(2, 1, 8, 8), gen(0), ("flip",))


# --------------------------------------------------------------------------- labels

def test_sample_labels_continuous_within_interval():
    y = sample_labels(500, (0.7, 1.0), gen(0))
    assert y.shape == (500,)
    assert (y >= 0.7).all() and (y <= 1.0).all()
    assert y.std() > 0.05  # spread over the interval, not a constant
    n = sample_labels(500, (0.0, 0.3), gen(0))
    assert (n >= 0).all() and (n <= 0.3).all()


def test_sample_labels_discrete():
    assert torch.equal(sample_labels(4, (0.0, 0.3), gen(0), discrete=True), torch.zeros(4))
    assert torch.equal(sample_labels(4, (0.7, 1.0), gen(0), discrete=True), torch.ones(4))


def test_sample_labels_seeded():
    assert torch.equal(sample_labels(10, (0, 0.3), gen(5)), sample_labels(10, (0, 0.3), gen(5)))


# --------------------------------------------------------------------------- the detector

def tiny_data(n=32, side=8, seed=0):
    return ramp_images(n, side, seed)


def tiny(**kwargs):
    kwargs = {"num_epochs": 1, "batch_size": 16, "verbose": False, "device": "cpu",
              "widths": (8, 8, 16, 16), "hidden": 8, **kwargs}
    return ADACL(**kwargs)


@pytest.mark.parametrize("params", [
    {"normal_interval": (0.0, 1.2)},
    {"anomaly_interval": (-0.1, 1.0)},
    {"normal_interval": (0.3, 0.1)},
    {"normal_interval": (0.6, 0.8), "anomaly_interval": (0.5, 0.7)},  # normal above anomaly
    {"normal_interval": (0.0, 0.7), "anomaly_interval": (0.7, 1.0)},  # touching
])
def test_invalid_intervals_raise_on_fit(params):
    with pytest.raises(ValueError, match="interval"):
        tiny(**params).fit(tiny_data())


@pytest.mark.parametrize("params, match", [
    ({"augmentations": ("rotate90", "flip")}, "flip"),
    ({"augmentations": ()}, "none given"),
    ({"labels": "binary"}, "labels"),
    ({"loss": "l1"}, "loss"),
    ({"loss": "bce", "clip_in_training": False}, "clip_in_training=True"),
])
def test_invalid_options_raise_on_fit(params, match):
    with pytest.raises(ValueError, match=match):
        tiny(**params).fit(tiny_data())


def test_tiny_training_run_with_validation():
    X = tiny_data(48)
    det = tiny(num_epochs=2, patience=None, n_val=8).fit(X[:32], X[32:])
    assert len(det.history_) == 2
    for row in det.history_:
        assert np.isfinite(row["loss"])
        assert 0.0 <= row["val_metric"] <= 1.0
    x_val, y_val = det.val_set_
    assert len(x_val) == 16 and y_val.tolist() == [0] * 8 + [1] * 8
    scores = det.score(X)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_training_without_validation_has_no_val_metric():
    det = tiny().fit(tiny_data(16))
    assert det.val_set_ is None
    assert "val_metric" not in det.history_[0] and np.isfinite(det.history_[0]["loss"])


@pytest.mark.parametrize("params", [{"loss": "bce"}, {"labels": "discrete"},
                                    {"loss": "bce", "labels": "discrete"}])
def test_bce_and_discrete_labels_train(params):
    X = tiny_data(32)
    det = tiny(**params).fit(X[:24], X[24:])
    assert len(det.history_) == 1 and np.isfinite(det.history_[0]["loss"])
    assert np.isfinite(det.score(X)).all()


def test_training_batch_pairs_normals_with_made_anomalies():
    X = tiny_data(16)
    det = tiny(augmentations=("rotate90",)).fit(X)
    batch = X[:5]
    x, y = det.training_batch(batch)
    assert x.shape == (10, 1, 8, 8)
    torch.testing.assert_close(x[:5], batch)
    torch.testing.assert_close(x[5:], torch.rot90(batch, 1, dims=(2, 3)))
    assert (y[:5] <= 0.3).all() and (y[5:] >= 0.7).all()


def test_cyclic_learning_rate_within_bounds():
    det = tiny(lr=1e-2).fit(tiny_data(32))
    lr = det.optimizer_.param_groups[0]["lr"]
    assert 1e-3 - 1e-12 <= lr <= 1e-2 + 1e-12


def test_default_parameters_follow_the_thesis():
    det = ADACL()
    assert det.normal_interval == (0.0, 0.3) and det.anomaly_interval == (0.7, 1.0)
    assert det.labels == "continuous" and det.loss == "mse" and det.n_val == 150
    assert tuple(det.augmentations) == tuple(AUGMENTATIONS)


def test_sample_labels_discrete_normal_interval_reaching_past_half():
    labels = sample_labels(3, (0.0, 0.6), gen(0), discrete=True)
    assert torch.equal(labels, torch.zeros(3))


def test_cut_paste_does_not_leave_a_sparse_image_unchanged():
    # a digit-like image: black background with one small bright stroke
    x = torch.zeros(1, 28, 28)
    x[0, 10:18, 13:15] = 1.0
    g = gen(0)
    changed = [not torch.equal(cut_paste(x, g), x) for _ in range(50)]
    assert all(changed)


def test_unclipped_scores_keep_the_order_and_break_the_ties():
    X = ramp_images(16, side=12)
    det = ADACL(num_epochs=1, batch_size=8, seed=0, verbose=False).fit(X)
    clipped = det.score(X)
    raw = det.set_params(clip_scores=False).score(X)
    np.testing.assert_allclose(np.clip(raw, 0, 1), clipped, atol=1e-6)
    inside = (raw > 0) & (raw < 1)
    np.testing.assert_allclose(raw[inside], clipped[inside], atol=1e-6)


@pytest.mark.parametrize("clip_in_training, loss, has_gradient", [
    (True, "mse", False), (False, "mse", True),
    (None, "mse", True),   # the default (revision 3): MSE regresses the raw output
    (None, "bce", False),  # BCE needs an output in (0, 1), so the default clips for it
])
def test_an_output_past_the_bounds_gets_a_gradient_only_when_trained_unclipped(
        clip_in_training, loss, has_gradient):
    X = ramp_images(16, side=12)
    det = ADACL(num_epochs=1, batch_size=8, seed=0, verbose=False, loss=loss,
                clip_in_training=clip_in_training).fit(X)
    with torch.no_grad():  # every output at 2: clipped, all sit at the upper bound
        det.network_.head[-1].weight.zero_()
        det.network_.head[-1].bias.fill_(2.0)
    det.network_.train()
    det.network_.zero_grad(set_to_none=True)  # no gradient left over from fit
    det.training_loss(torch.as_tensor(X[:8])).backward()
    grad = det.network_.head[-1].bias.grad
    assert (grad is not None and float(grad.abs().sum()) > 0) == has_gradient
    # the score is clipped either way
    assert det.score(X).max() <= 1.0
