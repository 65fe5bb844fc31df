"""MemAE: layer shapes, the memory's addressing and shrinkage, the loss, a tiny fit, fine-tuning,
seeding and parameter checks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import ramp_images

from adlib.detectors import NotFittedError
from adlib.methods.memae import (MemAE, MemoryModule, attention_entropy, code_side, conv_decoder,
                                 conv_encoder, hard_shrink)
from adlib.metrics import auroc
from adlib.registry import get_detector


def tiny(**kwargs):
    kwargs = {"num_epochs": 1, "batch_size": 16, "num_slots": 10, "verbose": False,
              "device": "cpu", "seed": 0, **kwargs}
    return MemAE(**kwargs)


def tiny_data(n=32, seed=0):
    return ramp_images(n, side=16, seed=seed) * 2 - 1


def params_of(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


# --------------------------------------------------------------------------- layers

@pytest.mark.parametrize("channels", [3, 1])
def test_encoder_and_decoder_map_28x28_to_72_features_and_back(channels):
    enc, dec = conv_encoder(channels).eval(), conv_decoder(channels).eval()
    x = torch.rand(2, channels, 28, 28)
    with torch.no_grad():
        z = enc(x)
        assert z.shape == (2, 8, 3, 3) and z.flatten(1).shape == (2, 72)
        assert dec(z).shape == x.shape
    assert code_side(28) == (3, 28) and code_side(16) == (2, 16) and code_side(32)[1] != 32


def test_the_last_decoder_layer_has_no_batch_norm_or_activation():
    layers = list(conv_decoder(3))
    assert isinstance(layers[-1], torch.nn.ConvTranspose2d)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in conv_encoder(3)) == 3
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in layers) == 2


# --------------------------------------------------------------------------- memory

def test_shrinkage_zeroes_small_weights_and_renormalises_the_rest():
    torch.manual_seed(0)
    mem = MemoryModule(10, 6, shrink_threshold=0.1)
    z = torch.randn(5, 6) * 3
    plain = torch.softmax(z @ mem.memory.t(), dim=1)
    _, w = mem(z)
    assert torch.allclose(w.sum(1), torch.ones(5))
    small = plain < 0.1
    assert small.any() and (w[small] == 0).all()
    kept = plain * ~small
    assert torch.allclose(w, kept / kept.sum(1, keepdim=True), atol=1e-6)


def test_zero_threshold_is_the_plain_softmax():
    torch.manual_seed(0)
    mem = MemoryModule(5, 4, shrink_threshold=0.0)
    z = torch.randn(3, 4)
    _, w = mem(z)
    assert torch.equal(w, torch.softmax(z @ mem.memory.t(), dim=1))
    assert torch.equal(hard_shrink(w, 0.0), w)


def test_output_is_a_combination_of_memory_rows():
    mem = MemoryModule(4, 4, shrink_threshold=0.2)
    with torch.no_grad():
        mem.memory.copy_(torch.eye(4) * 5)
    z_hat, w = mem(torch.tensor([[1.0, 0.2, 0.0, -1.0], [0.0, 0.0, 0.1, 0.0]]))
    assert torch.allclose(z_hat, 5 * w)
    # three slots in eight dimensions: every output lies in their span, the inputs do not
    torch.manual_seed(1)
    mem = MemoryModule(3, 8, shrink_threshold=0.0)
    z = torch.randn(6, 8)
    z_hat, _ = mem(z)
    M = mem.memory.detach()

    def residual(v):
        coef = torch.linalg.lstsq(M.t(), v.detach().t()).solution
        return (M.t() @ coef - v.detach().t()).norm()
    assert residual(z_hat) < 1e-4 and residual(z) > 0.1


def test_cosine_addressing_ignores_the_query_norm():
    torch.manual_seed(0)
    mem = MemoryModule(6, 4, shrink_threshold=0.0, cosine=True)
    z = torch.randn(2, 4)
    assert torch.allclose(mem(z)[1], mem(3 * z)[1])
    mem.cosine = False
    assert not torch.allclose(mem(z)[1], mem(3 * z)[1])


def test_attention_entropy_of_uniform_and_one_hot_weights():
    assert float(attention_entropy(torch.full((2, 8), 1 / 8))) == pytest.approx(math.log(8))
    assert float(attention_entropy(torch.eye(3))) == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------- the detector

def test_registered_with_the_iwad_input_and_paper_defaults():
    det = get_detector("memae")
    assert isinstance(det, MemAE)
    assert (det.preprocess.size, det.preprocess.channels, det.preprocess.scale) == (28, 3, "pm1")
    assert (det.num_slots, det.shrink_lambda, det.entropy_weight, det.lr) == (100, 0.01, 2e-4,
                                                                               0.01)


def test_tiny_fit_logs_finite_losses_and_scores_the_reconstruction_error():
    X = tiny_data(48)
    det = tiny(num_epochs=2).fit(X[:32], X[32:])
    for row in det.history_:
        for key in ("loss", "mse", "entropy", "val_metric"):
            assert np.isfinite(row[key]), key
        assert row["loss"] == pytest.approx(row["mse"] + 2e-4 * row["entropy"], rel=1e-5)
    scores = det.score(X)
    assert scores.shape == (48,) and (scores >= 0).all()
    with torch.no_grad():
        recon = det.network_(X)[0]
    assert scores == pytest.approx(((recon - X) ** 2).flatten(1).mean(1).numpy(), rel=1e-5)


def test_learns_to_tell_ramps_from_transposed_ramps():
    det = tiny(num_epochs=12, num_slots=100).fit(ramp_images(96, side=16))
    test = torch.cat([ramp_images(32, side=16, seed=1),
                      ramp_images(32, side=16, seed=2).transpose(-1, -2)])
    assert auroc(np.r_[np.zeros(32), np.ones(32)], det.score(test)) > 0.95


def test_fine_tune_needs_a_fitted_model_and_changes_weights_but_not_the_architecture():
    X, target = tiny_data(32), tiny_data(32, seed=1).flip(-2)
    with pytest.raises(NotFittedError):
        tiny().fine_tune(target)
    det = tiny().fit(X)
    net, before = det.network_, params_of(det.network_)
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    det.fine_tune(target, num_epochs=2)
    assert det.network_ is net and not torch.equal(before, params_of(net))
    assert {k: v.shape for k, v in net.state_dict().items()} == shapes
    assert len(det.history_) == 2 and len(det.pretrain_history_) == 1
    assert det.num_epochs == 1 and det.train_scores_.shape == (32,)
    with pytest.raises(ValueError, match="fitted shape"):
        det.fine_tune(ramp_images(8, side=28))


def test_same_seed_gives_identical_scores_after_fit_and_fine_tune():
    X, target = tiny_data(32), tiny_data(16, seed=2)
    a, b = tiny().fit(X), tiny().fit(X)
    assert np.array_equal(a.score(X), b.score(X))
    a.fine_tune(target)
    b.fine_tune(target)
    assert np.array_equal(a.score(X), b.score(X))
    assert not np.array_equal(a.score(X), tiny(seed=1).fit(X).score(X))


def test_lr_decay_lowers_the_learning_rate_per_epoch():
    det = tiny(num_epochs=2, lr_decay=0.5).fit(tiny_data(32))
    assert det.optimizer_.param_groups[0]["lr"] == pytest.approx(0.01 * 0.25)


@pytest.mark.parametrize("params, match", [
    ({"num_slots": 0}, "num_slots"),
    ({"num_slots": 2.5}, "num_slots"),
    ({"shrink_threshold": 1.0}, "shrink_threshold"),
    ({"shrink_threshold": -0.1}, "shrink_threshold"),
    ({"entropy_weight": -1.0}, "entropy_weight"),
    ({"lr_decay": 0.0}, "lr_decay"),
])
def test_bad_parameters_raise(params, match):
    with pytest.raises(ValueError, match=match):
        tiny(**params).fit(tiny_data(16))


def test_sides_the_decoder_cannot_reconstruct_raise():
    with pytest.raises(ValueError, match="preprocess to 28 x 28"):
        tiny().fit(ramp_images(16, side=20))
