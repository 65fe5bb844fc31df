"""OCLR: shapes, the centre's guard, every loss term, the ablation switches, one tiny fit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ramp_images

from adlib.methods.oclr import OCLR, OCLRNet, latent_center


@pytest.mark.parametrize("channels", [1, 3])
def test_network_shapes(channels):
    net = OCLRNet(channels, 8, (4, 8, 16), 32).eval()
    x = torch.rand(2, channels, 32, 32) * 2 - 1
    assert net.generator.encoder(x).shape == (2, 8)
    assert net(x).shape == x.shape and net.generator(x).shape == x.shape
    assert net.discriminator(x).shape == (2, 1)


def test_latent_center_is_the_mean_code_with_near_zero_coordinates_guarded():
    enc = torch.nn.Identity()
    codes = [torch.tensor([[1.0, 0.02, -0.05, -2.0]]), torch.tensor([[3.0, 0.0, 0.01, -4.0]])]
    c = latent_center(enc, codes, eps=0.1)
    assert c.tolist() == pytest.approx([2.0, 0.1, -0.1, -3.0])


def tiny(**kwargs):
    params = dict(num_epochs=2, batch_size=16, latent_dim=4, widths=(4, 8, 8), verbose=False,
                  device="cpu", seed=0)
    params.update(kwargs)
    return OCLR(**params)


def test_tiny_fit_logs_every_term_and_sets_the_center():
    X = ramp_images(48, side=16) * 2 - 1
    det = tiny().fit(X[:32], X[32:])
    row = det.history_[0]
    for key in ("d_loss", "dual", "g_loss", "L_irec", "L_c", "L_adv", "L_zrec", "L_dual_g"):
        assert key in row and np.isfinite(row[key]), key
    assert (det.network_.center.abs() >= 0.1 - 1e-7).all()
    scores = det.score(X)
    assert scores.shape == (48,) and (scores >= 0).all()
    assert det.latent(X).shape == (48, 4)


def test_k_follows_began_control_by_default_and_stays_fixed_without_it():
    X = ramp_images(32, side=16) * 2 - 1
    fixed = tiny(num_epochs=1, began_gamma=None).fit(X)
    assert {row["k"] for row in fixed.history_} == {0.4}
    # BEGAN control starts k at 0; with no rate it stays there, with a huge one it is clipped
    still = tiny(num_epochs=1, began_gamma=0.4, k_rate=0.0).fit(X)
    assert {row["k"] for row in still.history_} == {0.0}
    jumpy = tiny(num_epochs=1, began_gamma=1.0, k_rate=1e6).fit(X)
    assert jumpy.k_ in (0.0, 1.0)


@pytest.mark.parametrize("off, missing", [
    ({"w_adv": 0}, ["d_loss", "L_adv"]),
    ({"w_dual": 0, "w_zrec": 0}, ["dual", "L_dual_g", "L_zrec"]),
])
def test_ablation_switches_remove_terms(off, missing):
    det = tiny(num_epochs=1, **off).fit(ramp_images(16, side=16))
    for key in missing:
        assert key not in det.history_[0]


def test_bad_weights_and_sizes_raise():
    X = ramp_images(16, side=16)
    with pytest.raises(ValueError, match="must be >= 0"):
        tiny(w_c=-1).fit(X)
    with pytest.raises(ValueError, match="not all 0"):
        tiny(w_irec=0, w_adv=0, w_zrec=0, w_c=0, w_dual=0).fit(X)
    with pytest.raises(ValueError, match="divisible by 8"):
        tiny().fit(ramp_images(16, side=12))


def test_score_uses_the_generator_alone_when_the_auxiliary_autoencoder_is_not_trained():
    X = ramp_images(16, side=16) * 2 - 1
    plain = tiny(num_epochs=1, w_zrec=0, w_c=0, w_dual=0).fit(X)
    assert not plain.trains_auxiliary
    with torch.no_grad():
        plain.network_.eval()
        expected = (plain.network_.generator(X) - X).abs().flatten(1).mean(1).numpy()
    assert plain.score(X) == pytest.approx(expected, abs=1e-6)
    full = tiny(num_epochs=1).fit(X)
    with torch.no_grad():
        full.network_.eval()
        through_aux = (full.network_(X) - X).abs().flatten(1).mean(1).numpy()
    assert full.trains_auxiliary and full.score(X) == pytest.approx(through_aux, abs=1e-6)
