"""OCLR: shapes, the centre's guard, every loss term, the ablation switches, one tiny fit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ramp_images

from adlib.methods.oclr import OCLR, OCLRNet, _l1, latent_center
from adlib.training import seed_everything


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
    for key in ("d_loss", "aux_loss", "g_loss", "L_irec", "L_c", "L_adv", "L_zrec", "L_dual_g",
                "L_girec", "L_direc"):
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
    still = tiny(num_epochs=1, k_rate=0.0).fit(X)
    assert {row["k"] for row in still.history_} == {0.0}
    jumpy = tiny(num_epochs=1, began_gamma=1.0, k_rate=1e6).fit(X)
    assert jumpy.k_ in (0.0, 1.0)


def test_image_terms_are_l1_norms_per_image():
    a = torch.zeros(2, 1, 4, 4)
    b = torch.zeros(2, 1, 4, 4)
    b[0, 0, 0, :2] = 0.5          # image 0: two pixels off by 0.5 -> 1.0
    b[1] = -0.25                  # image 1: 16 pixels off by 0.25 -> 4.0
    assert _l1(a, b).tolist() == pytest.approx([1.0, 4.0])


def discs(n, side=16, seed=0):
    """A bright disc of radius 3 at a random place on a dark ground, in [-1, 1]: a mean image
    is a blur, so only an autoencoder that reconstructs gets a small error."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    centres = rng.uniform(4, side - 4, (n, 2))
    x = np.stack([((yy - cy) ** 2 + (xx - cx) ** 2 <= 9) for cy, cx in centres])
    return torch.from_numpy(x[:, None].astype(np.float32) * 2 - 1)


def test_the_generator_reconstructs_held_out_normals_far_better_than_a_mean_image():
    """Issue 21: with every term per sample, the image terms lead and G is an autoencoder (with
    means over pixels beside per-sample latent terms, it stayed near a mean image)."""
    X, X_val = discs(256), discs(64, seed=1)
    det = tiny(num_epochs=8, latent_dim=8, widths=(8, 16, 16), lr=2e-3).fit(X, X_val)
    mean_image_error = float(_l1(X_val, X.mean(0, keepdim=True)).mean())
    assert det.reconstruction_error(X_val) < 0.5 * mean_image_error
    # every epoch logs it; the kept epoch's value is the restored network's
    assert det.history_[det.best_epoch_]["val_irec"] == pytest.approx(
        det.reconstruction_error(X_val), rel=1e-4)


def test_the_centre_is_taken_after_pretraining_the_autoencoder():
    X = ramp_images(64, side=16) * 2 - 1
    det = tiny(num_epochs=1, pretrain_epochs=3, lr=2e-3).fit(X)
    losses = [row["L_irec"] for row in det.pretrain_history_]
    assert len(losses) == 3 and losses[-1] < losses[0]
    untrained = tiny(num_epochs=1, pretrain_epochs=0).fit(X)
    assert untrained.pretrain_history_ == []
    assert not torch.allclose(det.network_.center, untrained.network_.center)
    with pytest.raises(ValueError, match="pretrain_epochs"):
        tiny(pretrain_epochs=-1).fit(X)


@pytest.mark.parametrize("weights, encoder_moves, decoder_moves", [
    ({"w_dual": 0}, True, False),               # L_zrec alone trains D''s encoder only
    ({"w_zrec": 0}, True, True),                # the dual loss trains the whole of D'
    ({"w_zrec": 0, "w_dual": 0}, False, False),  # no D' at all
])
def test_latent_term_trains_the_auxiliary_encoder(weights, encoder_moves, decoder_moves):
    X = ramp_images(32, side=16) * 2 - 1
    seed_everything(0)  # the initial network fit builds (same seed, before any step)
    initial = tiny(**weights).build_network(tuple(X.shape[1:]))
    init = {k: v.clone() for k, v in initial.auxiliary.state_dict().items()}
    after = tiny(num_epochs=1, **weights).fit(X)
    state = after.network_.auxiliary.state_dict()
    moved = {part: any(not torch.equal(init[k], state[k]) for k in init
                       if k.startswith(part) and "running" not in k and "num_batches" not in k)
             for part in ("encoder", "decoder")}
    assert moved == {"encoder": encoder_moves, "decoder": decoder_moves}


@pytest.mark.parametrize("off, missing", [
    ({"w_adv": 0}, ["d_loss", "L_adv"]),
    ({"w_dual": 0, "w_zrec": 0}, ["aux_loss", "L_dual_g", "L_zrec", "k"]),
    ({"w_dual": 0}, ["L_dual_g", "L_girec", "k"]),
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


def test_score_reads_the_auxiliary_autoencoder_only_with_the_dual_loss():
    X = ramp_images(16, side=16) * 2 - 1

    def l1_of(det, through_aux):
        with torch.no_grad():
            det.network_.eval()
            net = det.network_
            recon = net(X) if through_aux else net.generator(X)
            return (recon - X).abs().flatten(1).sum(1).numpy()

    for off in ({"w_zrec": 0, "w_c": 0, "w_dual": 0}, {"w_dual": 0}):
        plain = tiny(num_epochs=1, **off).fit(X)
        assert not plain.scores_through_auxiliary
        assert plain.score(X) == pytest.approx(l1_of(plain, False), rel=1e-5)
    full = tiny(num_epochs=1).fit(X)
    assert full.scores_through_auxiliary
    assert full.score(X) == pytest.approx(l1_of(full, True), rel=1e-5)
    # the alternatives, named, in one pass; the selected one is score()'s
    for det, names in ((full, {"dual", "irec", "center"}), (plain, {"irec", "center"})):
        every = det.score_all(X)
        assert set(every) == names and det.selected_score_ in every
        assert every[det.selected_score_] == pytest.approx(det.score(X), rel=1e-6)
    assert full.score_all(X)["irec"] == pytest.approx(l1_of(full, False), rel=1e-5)
    with torch.no_grad():
        codes = full.network_.generator.encoder(X)
    assert full.score_all(X)["center"] == pytest.approx(
        (codes - full.network_.center).pow(2).sum(1).numpy(), rel=1e-5)
