"""G2D: the WGAN-GP pieces, the generator-selection rule, and one tiny end-to-end fit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ramp_images

from adlib.methods.g2d import (G2D, Critic, DetectorNet, IrregularityGenerator,
                               REGIMES, generator_curve, gradient_penalty, loss_drops,
                               select_generators)


@pytest.mark.parametrize("side", [16, 28, 30, 32])
def test_generator_critic_and_detector_shapes(side):
    g = IrregularityGenerator(1, (side, side), z_dim=8, width=4)
    x = g(torch.randn(5, 8))
    assert x.shape == (5, 1, side, side) and x.min() >= -1 and x.max() <= 1
    assert Critic(1, (side, side), width=4)(x).shape == (5,)
    assert DetectorNet(1)(x).shape == (5, 2)
    rgb = IrregularityGenerator(3, (side, side), z_dim=8, width=4)(torch.randn(2, 8))
    assert rgb.shape == (2, 3, side, side) and Critic(3, (side, side), width=4)(rgb).shape == (2,)


def test_the_critic_refuses_sides_below_16():
    with pytest.raises(ValueError, match="at least 16"):
        Critic(1, (12, 12), width=4)


def test_the_authors_widths_at_32():
    """Width 256 gives the authors' 1024-512-256 generator and 256-512-1024 critic with
    instance norm, a 4 x 4 map before the critic's output."""
    g, c = IrregularityGenerator(1, (32, 32), width=256), Critic(1, (32, 32), width=256)
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(1024, 512), (512, 256), (256, 1)]
    assert g.start == (4, 4)
    convs = [m.out_channels for m in c.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in c.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert convs == [256, 512, 1024] and len(norms) == 3 and all(n.affine for n in norms)
    assert c.out.in_features == 1024 * 4 * 4


class LinearCritic(torch.nn.Module):
    """C(x) = <w, x>: its gradient is w for every input."""

    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


def test_gradient_penalty_uses_the_norm_over_all_dimensions():
    w = torch.zeros(1, 2, 3, 3)
    w[0, 0, 0, 0], w[0, 1, 2, 2] = 3.0, 4.0  # ||w|| over all dims = 5
    real, fake = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    gp = gradient_penalty(LinearCritic(w), real, fake)
    assert gp.item() == pytest.approx((5.0 - 1.0) ** 2)
    # the channel-only norm of the widely copied version would give a different number
    channel_only = ((w.norm(2, dim=1) - 1) ** 2).mean().item()
    assert channel_only != pytest.approx(gp.item())


def test_gradient_penalty_is_zero_for_a_unit_gradient_and_differentiable():
    w = torch.zeros(1, 1, 2, 2)
    w[0, 0, 1, 1] = 1.0
    w.requires_grad_(True)
    gp = gradient_penalty(LinearCritic(w), torch.rand(3, 1, 2, 2), torch.rand(3, 1, 2, 2))
    assert gp.item() == pytest.approx(0.0, abs=1e-10)
    gp.backward()  # create_graph=True lets the penalty train the critic
    assert w.grad is not None


def test_loss_drops_compare_iteration_i_with_i_plus_h():
    np.testing.assert_allclose(loss_drops([10, 8, 7, 6.5, 6.4], h=2), [3, 1.5, 0.6])
    np.testing.assert_allclose(loss_drops([10, 8, 7, 6.5, 6.4], h=2, at=[0, 2]), [3, 0.6])
    with pytest.raises(ValueError, match="too few"):
        loss_drops([1, 2, 3], h=5)
    with pytest.raises(ValueError, match="h=2 later"):
        loss_drops([10, 8, 7, 6.5, 6.4], h=2, at=[3])


def test_generator_curve_is_the_authors_trailing_average_of_max_minus_loss():
    g = np.array([1.0, 3.0, 2.0, 0.0, 4.0, 2.0])
    # max 4: lifted 3, 1, 2, 4, 0, 2; the mean of the two points *before* t, NaN for t < 2
    curve = generator_curve(g, window=2)
    assert np.isnan(curve[:2]).all()
    np.testing.assert_allclose(curve[2:], [2.0, 1.5, 3.0, 2.0])
    np.testing.assert_allclose(generator_curve(g, window=1)[1:], [3, 1, 2, 4, 0])
    with pytest.raises(ValueError, match="window"):
        generator_curve(g, window=0)


def test_selection_reads_snapshots_only_and_counts_undefined_points_as_far():
    curve = np.r_[np.nan, np.nan, 9, 7, 5, 3, 1.6, 1.45, 1.3, 1.2, 1.1, 1.05, 1.03, 1.02, 1.02]
    sel = select_generators(curve, h=2, at=[0, 3, 6, 9, 12])
    assert sel["iterations"] == [0, 3, 6, 9, 12]
    assert sel["regimes"][0] == "far" and sel["drops"][0] is None  # before the curve exists
    assert sel["regimes"][1] == "far"  # 7 - 3 = 4, the largest drop
    assert sel["regimes"][-1] == "normal-looking"  # 1.03 - 1.02 = 0.01: relative 0.0025
    assert sel["selected"] == [j for j, r in enumerate(sel["regimes"]) if r != "normal-looking"]


def test_selection_rule_finds_the_three_regimes():
    # rising while the critic learns (epochs 0-1), steep fall, slow fall, then flat
    losses = [1, 4, 9, 7, 5, 3, 1.6, 1.45, 1.3, 1.2, 1.1, 1.05, 1.03, 1.02, 1.02, 1.02, 1.02]
    sel = select_generators(losses, h=2, eps=(1.0, 0.1, 0.01))
    drops = np.asarray(sel["drops"])
    np.testing.assert_allclose(drops[:3], [1 - 9, 4 - 7, 9 - 5])
    assert sel["regimes"][0] == "far" and sel["regimes"][1] == "far"  # before the peak
    assert sel["regimes"][2] == "far"  # the largest drop
    assert "boundary" in sel["regimes"] and sel["regimes"][-1] == "normal-looking"
    assert sel["selected"] == [i for i, r in enumerate(sel["regimes"]) if r != "normal-looking"]
    capped = select_generators(losses, h=2, k=3)["selected"]
    assert len(capped) == 3 and capped[0] == 0 and capped[-1] == sel["selected"][-1]
    with pytest.raises(ValueError, match="eps1 > eps2 > eps3"):
        select_generators(losses, eps=(0.1, 1.0, 0.01))


def test_ordered_selection_ends_at_the_first_normal_looking_snapshot():
    curve = [10, 6, 6, 6, 5.8, 5.4, 5.4]  # drops 4, 0, 0, .2, .4, 0: relative 1, 0, 0, .05, .1, 0
    loose = select_generators(curve, h=1)
    assert loose["regimes"] == ["far", "normal-looking", "normal-looking", "boundary",
                                "boundary", "normal-looking"]
    assert loose["selected"] == [0, 3, 4]
    ordered = select_generators(curve, h=1, ordered=True)
    assert ordered["regimes"] == ["far"] + ["normal-looking"] * 5
    assert ordered["selected"] == [0]
    # already in order: unchanged
    in_order = [1, 4, 9, 7, 5, 3, 1.6, 1.45, 1.3, 1.2, 1.1, 1.05, 1.03, 1.02, 1.02, 1.02, 1.02]
    assert (select_generators(in_order, h=2, ordered=True)["regimes"]
            == select_generators(in_order, h=2)["regimes"])


def test_ordered_regimes_reach_the_fitted_selection(monkeypatch):
    from adlib.methods import g2d
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("ordered"))
        return select_generators(*args, **kwargs)

    monkeypatch.setattr(g2d, "select_generators", spy)
    X = ramp_images(48, side=16) * 2 - 1
    model = tiny(ordered_regimes=True).fit(X[:40], X[40:])
    assert seen == [True]
    order = [REGIMES.index(r) for r in model.selection_["regimes"]]
    assert order == sorted(order)


def tiny(**kwargs):
    params = dict(gan_iterations=30, snapshot_every=3, h=2, window=3, gan_width=4, num_epochs=2,
                  batch_size=16, gan_batch_size=16, z_dim=8, verbose=False, device="cpu", seed=0)
    params.update(kwargs)
    return G2D(**params)


def test_tiny_fit_keeps_snapshots_selects_and_thresholds_at_alpha():
    X = ramp_images(48, side=16) * 2 - 1
    det = tiny().fit(X[:40], X[40:])
    assert len(det.generator_losses_) == 30 and np.isfinite(det.generator_losses_).all()
    assert len(det.snapshots_) == len(det.gan_history_) == 10
    assert [r["iteration"] for r in det.gan_history_] == list(range(2, 30, 3))
    assert all(np.isfinite(r["wasserstein"]) and r["gp"] >= 0 for r in det.gan_history_)
    # the curve needs `window` earlier iterations; a snapshot needs an iteration h later
    assert det.gan_history_[0]["curve"] is None and det.gan_history_[1]["curve"] is not None
    assert det.selection_["iterations"] == list(range(2, 28, 3))
    assert det.selection_["selected"]
    assert det.irregular_.shape[1:] == (1, 16, 16) and len(det.irregular_) >= 40
    assert det.generate(0, 5).shape == (5, 1, 16, 16)
    assert all(p.requires_grad for p in det.critic_.parameters())
    scores = det.score(X)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert det.threshold_ == 0.5
    np.testing.assert_array_equal(det.predict(X), (scores >= 0.5).astype(int))
    assert all("val_metric" in r for r in det.history_)


def test_alpha_none_thresholds_on_the_held_out_normals():
    X = ramp_images(48, side=16) * 2 - 1
    det = tiny(gan_iterations=12, alpha=None, contamination=0.25).fit(X[:40], X[40:])
    assert det.threshold_rule == "quantile" and det.threshold_source_ == "validation"
    assert det.threshold_ == pytest.approx(np.quantile(det.score(X[40:]), 0.75))
    assert tiny(alpha=0.3).threshold_rule == "fixed"


def test_augment_normals_adds_normal_looking_samples_to_the_normal_class():
    X = ramp_images(48, side=16) * 2 - 1
    det = tiny(augment_normals=0.5).fit(X[:40], X[40:])
    regimes = det.selection_["regimes"]
    late = [j for j, r in enumerate(regimes) if r == "normal-looking"] or [len(det.snapshots_) - 1]
    assert det.augment_snapshots_ == late and len(det.augmented_) == 20
    assert not set(late) & set(det.selection_["selected"]) or late == [len(det.snapshots_) - 1]
    assert tiny().fit(X[:40]).augmented_ is None


def test_the_wgan_is_reproducible_with_a_seed():
    X = ramp_images(32, side=16) * 2 - 1
    a, b = tiny(gan_iterations=9).fit(X), tiny(gan_iterations=9).fit(X)
    np.testing.assert_array_equal(a.generator_losses_, b.generator_losses_)
    np.testing.assert_array_equal(a.score(X), b.score(X))


def test_samples_per_generator_and_k_set_the_pool_size():
    X = ramp_images(40, side=16)
    det = tiny(k=2, samples_per_generator=5).fit(X)
    assert len(det.irregular_) == 10 and len(det.selection_["selected"]) <= 2


@pytest.mark.parametrize("params, match", [
    ({"gan_iterations": 6, "h": 5}, "fewer than two snapshots"),
    ({"snapshot_every": 0}, "snapshot_every"),
    ({"alpha": 1.5}, "alpha"),
    ({"alpha": 0.0}, "or be None"),
    ({"augment_normals": 1.5}, "augment_normals"),
    ({"k": 0}, "k=0"),
])
def test_bad_parameters_raise(params, match):
    with pytest.raises(ValueError, match=match):
        tiny(**params).fit(ramp_images(20, side=16))


def test_quick_mode_caps_the_gan_iterations():
    det = tiny(gan_iterations=3000, quick=True, quick_gan_iterations=20).fit(
        ramp_images(24, side=16))
    assert len(det.generator_losses_) == 20 and len(det.snapshots_) == 10
    assert det.epochs_run_ <= G2D.quick_epochs
