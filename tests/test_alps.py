"""ALPS: shapes, the perturbation bound, the two players' steps, the distorter's schedule, the
three scores and their selection, the comparison modes, seeding and parameter checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ramp_images
from torch.nn import functional as F

import adlib
from adlib.methods.alps import (ALPS, MODES, SCORES, ALPSNet, ConvDecoder, ConvEncoder,
                                latent_rms)


def tiny_data(n=32, side=16, seed=0):
    return ramp_images(n, side, seed)


def tiny(**kwargs):
    kwargs = {"num_epochs": 1, "batch_size": 16, "verbose": False, "device": "cpu",
              "widths": (8, 8, 16), "latent_dim": 8, **kwargs}
    return ALPS(**kwargs)


def params_of(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


# --------------------------------------------------------------------------- the network

@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 16, 16), (1, 15, 15)])
def test_shapes_of_encoder_decoder_and_distorter(shape):
    torch.manual_seed(0)
    net = ALPSNet(shape[0], shape[1:], latent_dim=24).eval()
    x = torch.rand(3, *shape)
    with torch.no_grad():
        z = net.encoder(x)
        p = net.perturbation(x, z)
        assert z.shape == (3, 24)
        assert net.distorter(x).shape == (3, 24)
        assert p.shape == z.shape
        assert net(x).shape == x.shape
        out = net.decoder(z + p)
    assert out.shape == x.shape and (out >= 0).all() and (out <= 1).all()


def test_building_blocks_alone():
    enc = ConvEncoder(3, 16, (8, 8, 8)).eval()
    dec = ConvDecoder(3, (32, 32), 16, (8, 8, 8)).eval()
    with torch.no_grad():
        assert enc(torch.rand(2, 3, 32, 32)).shape == (2, 16)
        assert dec(torch.rand(2, 16)).shape == (2, 3, 32, 32)
    # four convolutions in the encoder, a dense layer and six transposed convolutions after it
    assert sum(isinstance(m, torch.nn.Conv2d) for m in enc.modules()) == 4
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in dec.modules()) == 6
    assert sum(isinstance(m, torch.nn.Linear) for m in dec.modules()) == 1


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 15, 15)])
def test_lab_capacity_five_by_five_kernels_keep_the_shapes(shape):
    """The lab's layout (REFERENCES.md: 5 x 5 kernels) changes the kernels, not the shapes."""
    net = ALPSNet(shape[0], shape[1:], latent_dim=12, widths=(8, 12, 16), kernel_size=5).eval()
    convs = [m for m in net.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5)] * 4
    ups = [m.kernel_size for m in net.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert ups == [(5, 5), (4, 4), (5, 5), (4, 4), (5, 5), (5, 5)]
    with torch.no_grad():
        x = torch.rand(2, *shape)
        assert net(x).shape == x.shape and net.distorter(x).shape == (2, 12)


def test_betas_reach_both_optimisers():
    det = tiny(betas=(0.5, 0.9), lr=5e-4).fit(tiny_data(32))
    for opt in (det.optimizer_, det.distorter_optimizer_):
        assert opt.param_groups[0]["betas"] == (0.5, 0.9)
        assert opt.param_groups[0]["lr"] == 5e-4


def test_only_alps_mode_has_a_distorter():
    assert ALPSNet(1, (16, 16), mode="alps").distorter is not None
    for mode in ("noise", "vanilla"):
        net = ALPSNet(1, (16, 16), mode=mode)
        assert net.distorter is None
        # same autoencoder as ALPS: the same parameter count without the distorter
        alps = ALPSNet(1, (16, 16), mode="alps")
        n = sum(p.numel() for p in net.parameters())
        assert n == sum(p.numel() for p in alps.parameters()) - sum(
            p.numel() for p in alps.distorter.parameters())


@pytest.mark.parametrize("bound", [0.1, 0.5, 2.0])
def test_perturbation_bound_holds(bound):
    torch.manual_seed(0)
    net = ALPSNet(1, (16, 16), latent_dim=12, perturbation_bound=bound).eval()
    x = torch.randn(8, 1, 16, 16) * 100  # wild inputs drive the distorter into saturation
    with torch.no_grad():
        z = net.encoder(x)
        p = net.perturbation(x, z)
    limit = bound * latent_rms(z)
    assert (p.abs() <= limit + 1e-6).all()
    assert (p.abs() > 0.5 * limit).any()  # the bound is reached, not trivially zero


def test_bound_holds_during_training():
    X = tiny_data(48)
    det = tiny(num_epochs=2, perturbation_bound=0.3).fit(X[:32], X[32:])
    # ||p|| / ||z|| <= b when every coordinate obeys |p_j| <= b * rms(z)
    assert all(0 < row["perturbation_ratio"] <= 0.3 + 1e-6 for row in det.step_history_)


@pytest.mark.parametrize("std", [0.5, 2.0])
def test_noise_is_gaussian_relative_to_the_latent(std):
    torch.manual_seed(0)
    net = ALPSNet(1, (16, 16), latent_dim=64, mode="noise", noise_std=std).eval()
    x = torch.rand(200, 1, 16, 16)
    with torch.no_grad():
        z = net.encoder(x)
        p = net.perturbation(x, z, torch.Generator().manual_seed(0))
        again = net.perturbation(x, z, torch.Generator().manual_seed(0))
    torch.testing.assert_close(p, again)  # drawn from the given generator only
    e = p / latent_rms(z)
    assert abs(float(e.mean())) < 0.05 * std
    assert float(e.std()) == pytest.approx(std, rel=0.05)


def test_unbounded_perturbation_is_the_raw_distorter_output():
    torch.manual_seed(0)
    net = ALPSNet(1, (16, 16), latent_dim=12, perturbation_bound=None).eval()
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net.perturbation(x, net.encoder(x)), net.distorter(x))


def test_vanilla_network_has_no_perturbation():
    net = ALPSNet(1, (16, 16), mode="vanilla")
    with pytest.raises(RuntimeError, match="vanilla"):
        net.perturbation(torch.rand(1, 1, 16, 16), torch.rand(1, 64))


# --------------------------------------------------------------------------- the two players

def perturbed_loss(det, batch) -> float:
    """The perturbed reconstruction MSE of eq. 3.2 on ``batch`` (train mode, no update)."""
    net = det.network_
    with torch.no_grad():
        z = net.encoder(batch)
        return float(F.mse_loss(net.decoder(z + net.perturbation(batch, z)), batch))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distorter_step_raises_and_autoencoder_step_lowers_the_perturbed_loss(seed):
    X = tiny_data(48, seed=seed)
    # recon_weight=0: the autoencoder minimises exactly the perturbed loss of eq. 3.2
    det = tiny(seed=seed, recon_weight=0.0).fit(X[:32])
    det.network_.train()
    det.set_params(lr=1e-4)
    det.optimizer_, _ = det.configure_optimizers(1)  # fresh Adam states: first steps follow -g
    batch = X[32:]
    before = perturbed_loss(det, batch)
    det.distorter_step(batch)
    after_distorter = perturbed_loss(det, batch)
    assert after_distorter > before
    loss, _ = det.autoencoder_loss(batch)
    det.optimizer_.zero_grad()
    loss.backward()
    det.optimizer_.step()
    after_autoencoder = perturbed_loss(det, batch)
    assert after_autoencoder < after_distorter


def test_distorter_step_leaves_the_autoencoder_unchanged():
    X = tiny_data(32)
    det = tiny().fit(X)
    det.network_.train()
    enc, dec = params_of(det.network_.encoder), params_of(det.network_.decoder)
    dist = params_of(det.network_.distorter)
    det.distorter_step(X[:16])
    assert torch.equal(params_of(det.network_.encoder), enc)
    assert torch.equal(params_of(det.network_.decoder), dec)
    assert not torch.equal(params_of(det.network_.distorter), dist)


class Snapshots(ALPS):
    """Records the distorter's and the encoder's weights before training and after every epoch."""

    def setup(self, X_train, X_val):
        super().setup(X_train, X_val)
        self.snapshots = [(params_of(self.network_.distorter), params_of(self.network_.encoder))]

    def on_epoch_end(self, epoch):
        self.snapshots.append((params_of(self.network_.distorter),
                               params_of(self.network_.encoder)))


@pytest.mark.parametrize("every", [2, 3])
def test_distorter_is_updated_only_every_k_epochs(every):
    X = tiny_data(48)
    epochs = 6
    det = Snapshots(num_epochs=epochs, batch_size=16, verbose=False, device="cpu",
                    widths=(8, 8, 16), latent_dim=8, distorter_every=every).fit(X[:32], X[32:])
    assert len(det.snapshots) == epochs + 1
    for epoch in range(epochs):
        (d0, e0), (d1, e1) = det.snapshots[epoch], det.snapshots[epoch + 1]
        assert det.distorter_updates_in(epoch) == (epoch % every == 0)
        assert torch.equal(d0, d1) != (epoch % every == 0), f"epoch {epoch}"
        assert not torch.equal(e0, e1)  # the autoencoder trains every epoch
        assert ("distorter_mse" in det.history_[epoch]) == (epoch % every == 0)


# --------------------------------------------------------------------------- scores

def test_scores_are_min_max_scaled_with_validation_statistics():
    X = tiny_data(64)
    X_train, X_val, X_test = X[:32], X[32:48], torch.rot90(X[48:], 1, dims=(2, 3))
    det = tiny(num_epochs=2).fit(X_train, X_val)
    raw_val = det.raw_scores(X_val)
    assert set(raw_val) == set(SCORES)
    np.testing.assert_allclose(raw_val["average"], (raw_val["plain"] + raw_val["perturbed"]) / 2)
    scaled_val = det.score_all(X_val)
    for name in SCORES:
        assert scaled_val[name].min() == pytest.approx(0.0, abs=1e-9)
        assert scaled_val[name].max() == pytest.approx(1.0, abs=1e-9)
        i = SCORES.index(name)
        assert float(det.network_.score_min[i]) == pytest.approx(raw_val[name].min())
        assert float(det.network_.score_max[i]) == pytest.approx(raw_val[name].max())
    # the test batch does not rescale itself: the same affine map as for the validation set
    raw_test, scaled_test = det.raw_scores(X_test), det.score_all(X_test)
    for name in SCORES:
        lo, hi = raw_val[name].min(), raw_val[name].max()
        np.testing.assert_allclose(scaled_test[name], (raw_test[name] - lo) / (hi - lo),
                                   rtol=1e-6, atol=1e-9)
    assert det.selected_score_ in SCORES
    np.testing.assert_array_equal(det.score(X_test), scaled_test[det.selected_score_])


def test_without_validation_the_training_images_fix_the_scaling():
    X = tiny_data(32)
    det = tiny().fit(X)
    for values in det.score_all(X).values():
        assert values.min() == pytest.approx(0.0, abs=1e-9)
        assert values.max() == pytest.approx(1.0, abs=1e-9)


def test_auto_selection_uses_no_test_label():
    X = tiny_data(64)
    det = tiny(num_epochs=2).fit(X[:32], X[32:48])
    # chosen during fit, from the held-out normals and made anomalies of them only
    assert set(det.selection_) == set(SCORES)
    assert all(0.0 <= v <= 1.0 for v in det.selection_.values())
    best = max(det.selection_.values())
    assert det.selection_[det.selected_score_] == best
    chosen = det.selected_score_
    for test in (X[48:], torch.rot90(X[48:], 2, dims=(2, 3))):
        det.score(test)
        assert det.selected_score_ == chosen  # scoring never changes the choice


@pytest.mark.parametrize("name", SCORES)
def test_fixed_anomaly_score(name):
    X = tiny_data(48)
    det = tiny(anomaly_score=name).fit(X[:32], X[32:])
    assert det.selected_score_ == name and det.selection_ == {}
    np.testing.assert_array_equal(det.score(X), det.score_all(X)[name])


def count_perturbations(monkeypatch):
    calls = []
    original = ALPSNet.perturbation

    def spy(self, *args, **kwargs):
        calls.append(self.mode)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ALPSNet, "perturbation", spy)
    return calls


def test_vanilla_mode_never_calls_the_distorter(monkeypatch):
    calls = count_perturbations(monkeypatch)
    X = tiny_data(48)
    det = tiny(mode="vanilla", num_epochs=2).fit(X[:32], X[32:])
    scores = det.score_all(X)
    assert calls == []
    assert det.network_.distorter is None and det.distorter_optimizer_ is None
    assert list(scores) == ["plain"] and det.selected_score_ == "plain"
    assert all("perturbed_mse" not in row and "distorter_mse" not in row for row in det.history_)
    tiny(mode="alps").fit(X[:32], X[32:])
    assert calls and set(calls) == {"alps"}


def test_noise_mode_draws_random_perturbations_and_scores_repeatably(monkeypatch):
    calls = count_perturbations(monkeypatch)
    X = tiny_data(48)
    det = tiny(mode="noise").fit(X[:32], X[32:])
    assert calls and set(calls) == {"noise"}
    assert det.network_.distorter is None
    assert "distorter_mse" not in det.history_[0]
    first, second = det.score_all(X), det.score_all(X)
    for name in SCORES:
        np.testing.assert_array_equal(first[name], second[name])


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_scores(mode):
    X = tiny_data(48)
    a = tiny(mode=mode, seed=3, num_epochs=2).fit(X[:32], X[32:]).score_all(X)
    b = tiny(mode=mode, seed=3, num_epochs=2).fit(X[:32], X[32:]).score_all(X)
    c = tiny(mode=mode, seed=4, num_epochs=2).fit(X[:32], X[32:]).score_all(X)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-9)
    assert not np.allclose(a["plain"], c["plain"])


def test_checkpoint_keeps_scaling_and_selection(tmp_path):
    X = tiny_data(48)
    path = tmp_path / "alps.pt"
    det = tiny(num_epochs=2, checkpoint=str(path), anomaly_score="average").fit(X[:32], X[32:])
    loaded = ALPS(device="cpu").load(path)
    assert loaded.selected_score_ == "average" and loaded.widths == (8, 8, 16)
    np.testing.assert_allclose(loaded.score(X), det.score(X), rtol=1e-5, atol=1e-7)
    assert loaded.threshold_ == pytest.approx(det.threshold_)


def test_history_records_both_players_and_the_perturbation_size():
    X = tiny_data(48)
    det = tiny(num_epochs=2).fit(X[:32], X[32:])
    first, second = det.history_
    for key in ("loss", "perturbed_mse", "plain_mse", "perturbation_norm",
                "perturbation_ratio", "val_metric", "distorter_mse"):
        assert np.isfinite(first[key]), key
    assert "distorter_mse" not in second  # distorter_every=2
    assert first["perturbation_ratio"] > 0 and first["perturbation_norm"] > 0
    assert len(det.step_history_) == 2 * 2  # 32 images in batches of 16, two epochs
    assert [row["epoch"] for row in det.step_history_] == [0, 0, 1, 1]
    assert "distorter_mse" in det.step_history_[0] and "distorter_mse" not in det.step_history_[2]


def test_registered_once_with_modes_and_defaults():
    assert adlib.get_detector("alps").__class__ is ALPS
    assert "alps_vanilla_ae" not in adlib.available_detectors()
    det = adlib.get_detector("alps", mode="noise")
    assert det.mode == "noise" and det.get_params()["mode"] == "noise"
    default = ALPS()
    assert default.mode == "alps" and default.anomaly_score == "auto"
    assert default.perturbation_bound is None  # eq. 3.2 as published
    assert default.distorter_every >= 2 and default.recon_weight >= 1
    assert default.validation_mode == "min"  # "max" (an AUROC) only under the paper selection


# --------------------------------------------------------------------------- parameter checks

@pytest.mark.parametrize("params, match", [
    ({"mode": "adversarial"}, "mode='adversarial'.*alps, noise, vanilla"),
    ({"anomaly_score": "best"}, "anomaly_score='best'"),
    ({"mode": "vanilla", "anomaly_score": "perturbed"}, "only the 'plain' score"),
    ({"distorter_every": 0}, "distorter_every=0"),
    ({"distorter_every": 1.5}, "distorter_every=1.5"),
    ({"recon_weight": -1.0}, "recon_weight=-1.0"),
    ({"perturbation_bound": 0.0}, "perturbation_bound=0.0"),
    ({"perturbation_bound": -0.5}, "perturbation_bound=-0.5"),
    ({"mode": "noise", "noise_std": 0.0}, "noise_std=0.0"),
    ({"latent_dim": 0}, "latent_dim=0"),
    ({"widths": (8, 8)}, "three positive integers"),
    ({"distorter_lr": 0.0}, "distorter_lr=0.0"),
    ({"kernel_size": 4}, "kernel_size=4.*odd"),
    ({"kernel_size": 0}, "kernel_size=0"),
    ({"betas": (0.5,)}, "betas=.*two numbers"),
    ({"betas": (0.5, 1.0)}, "betas=.*two numbers"),
])
def test_bad_parameters_raise(params, match):
    with pytest.raises(ValueError, match=match):
        tiny(**params).fit(tiny_data(16))


def test_too_small_images_raise():
    with pytest.raises(ValueError, match="too small"):
        tiny().fit(torch.rand(8, 1, 3, 3))


# --------------------------------------------------------------------------- paper selection

def test_paper_selection_chooses_epoch_and_score_on_real_anomalies():
    """``X_val_anomalies``: each epoch's AUROC per score is recorded, the kept epoch is the best
    one by AUROC, and the selected score is the best at that epoch."""
    torch.manual_seed(0)
    normals = torch.rand(40, 1, 8, 8) * 0.2
    anomalies = torch.rand(10, 1, 8, 8)
    det = ALPS(num_epochs=3, batch_size=16, latent_dim=4, widths=(4, 4, 8), verbose=False)
    det.fit(normals[:20], normals[20:], X_val_anomalies=anomalies)
    assert len(det.val_aurocs_) == 3 and set(det.val_aurocs_[0]) == set(SCORES)
    best = [max(a.values()) for a in det.val_aurocs_]
    assert det.best_epoch_ == int(np.argmax(best))
    at_best = det.val_aurocs_[det.best_epoch_]
    assert at_best[det.selected_score_] == max(at_best.values())
    assert det.selection_[det.selected_score_] == pytest.approx(max(at_best.values()))
    assert not hasattr(det, "val_anomalies_")  # the anomalies are not kept on the detector
    with pytest.raises(ValueError, match="give X_val too"):
        ALPS(num_epochs=1, verbose=False).fit(normals, None, X_val_anomalies=anomalies)
