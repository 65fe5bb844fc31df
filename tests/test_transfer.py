"""IWAD's transfer protocol, the IWAD detector and the transfer benchmark grid."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import ramp_images

from adlib import bench
from adlib.data import DataError
from adlib.methods.iwad import IWAD, IWADNet, cutoff_weights, importance_weight_rule
from adlib.protocols import transfer
from adlib.results import read_rows
from conftest import decode_index, encoded_image_set


@pytest.fixture
def domains():
    """Two 'datasets' of 400 training and 200 test images, 10 classes each; the target's images
    carry indices from 5000 on so that the two never clash."""
    return {("src", "train"): encoded_image_set(400), ("src", "test"): encoded_image_set(
                200, offset=1000),
            ("tgt", "train"): encoded_image_set(400, offset=5000),
            ("tgt", "test"): encoded_image_set(200, offset=6000)}


@pytest.mark.parametrize("rate", [0.05, 0.25, 0.45])
def test_transfer_split_sizes_rates_and_domains(domains, rate):
    split = transfer("src", "tgt", rate, 0, sets=domains)
    src_idx, tgt_idx = decode_index(split.X_source), decode_index(split.X_target)
    assert (src_idx < 1000).all() and (src_idx % 10 == 0).all()  # source: class-0 normals only
    assert (tgt_idx >= 5000).all() and (tgt_idx < 6000).all()    # target: training images
    assert ((tgt_idx % 10 != 0) == split.y_target.astype(bool)).all()
    assert split.y_target.mean() == pytest.approx(rate, abs=0.02)
    assert (split.y_target == 0).sum() == 40                      # every target normal
    test_idx = decode_index(split.X_test)
    assert (test_idx >= 6000).all() and ((test_idx % 10 != 0) == split.y_test.astype(bool)).all()
    assert split.y_test.mean() == pytest.approx(rate, abs=0.03)
    assert len(split.X_target_normals) == 40
    assert not set(decode_index(split.X_val)) & set(src_idx)
    assert split.info["n_target_anomalies"] == int(split.y_target.sum())


def test_transfer_is_seeded_and_checks_its_rate(domains):
    a, b = (transfer("src", "tgt", 0.25, 3, sets=domains) for _ in range(2))
    assert torch.equal(a.X_target, b.X_target) and torch.equal(a.X_test, b.X_test)
    c = transfer("src", "tgt", 0.25, 4, sets=domains)
    assert not torch.equal(a.X_target, c.X_target)
    for bad in (0, 1, -0.1):
        with pytest.raises(ValueError, match="anomaly_rate"):
            transfer("src", "tgt", bad, sets=domains)
    with pytest.raises(DataError, match="unknown class"):
        transfer("src", "tgt", 0.25, normal_class=12, sets=domains)


def test_transfer_caps_keep_the_rate(domains):
    split = transfer("src", "tgt", 0.25, 0, sets=domains, max_source=10, max_target=20,
                     max_test=16)
    assert len(split.X_source) == 10 and (split.y_target == 0).sum() == 20
    assert len(split.X_test) == 16 and split.y_test.sum() == 4  # from 20 normals, 7 anomalies


def test_importance_weight_rule_places_the_sigmoid():
    losses = np.linspace(0.0, 1.0, 101)
    eta, beta = importance_weight_rule(losses, quantile=0.95)
    w = lambda x: 1 / (1 + math.exp(-(eta * x + beta)))  # noqa: E731
    assert eta < 0 < beta
    assert w(0.5) == pytest.approx(0.9) and w(0.95) == pytest.approx(0.5)
    assert w(2.0) < 0.01
    with pytest.raises(ValueError, match="at least 2"):
        importance_weight_rule([0.1])


def test_network_shapes_and_gradient_reversal():
    net = IWADNet(3, (8, 3, 3))
    x = torch.randn(4, 3, 28, 28, requires_grad=True)
    recon, logit, estimate, address = net(x)
    assert recon.shape == x.shape and logit.shape == estimate.shape == (4,)
    assert address is None  # plain AE
    address = IWADNet(3, (8, 3, 3), num_slots=100)(x)[3]  # MemAE's backbone
    assert address.shape == (4, 100)
    assert torch.allclose(address.sum(1), torch.ones(4), atol=1e-5)
    code = net.autoencoder.encoder(x)
    assert code.shape == (4, 8, 3, 3)
    # the domain classifier's gradient reaches the encoder's output reversed
    code = code.detach().requires_grad_(True)
    net.eval()
    net.domain(net.reverse(code)).sum().backward()
    reversed_grad = code.grad.clone()
    code.grad = None
    net.domain(code).sum().backward()
    assert torch.allclose(reversed_grad, -code.grad)
    # the estimator sits behind a zero-gradient layer: it learns, the encoder does not move
    code.grad = None
    net.estimator(net.stop(code)).sum().backward()
    assert (code.grad == 0).all()
    assert all(p.grad is not None for p in net.estimator.parameters())


def test_cutoff_weights_follow_the_authors_rule():
    m = 0.008
    # at p = 0: their sigmoid(-1e5 L + 190) with m = 190 / 1e5, rescaled to any cut-off
    losses = torch.tensor([0.0, m * (1 - 1 / 190), m, m * (1 + 1 / 190), 2 * m])
    w = cutoff_weights(losses, m, 0.0)
    theirs = torch.sigmoid(-1e5 * losses * (0.0019 / m) + 190)
    assert torch.allclose(w, theirs, atol=1e-4)  # float32 rounding of 1e5 L
    assert w[2] == pytest.approx(0.5) and w[0] > 0.999 and w[-1] < 1e-6
    # beta rises 190 -> 199.2 over stage 2: the cut-off moves up by 4.9 % of m
    end = cutoff_weights(torch.tensor([m * (1 + 9.242 / 190)]), m, 1.0)
    assert end.item() == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError, match="cutoff"):
        cutoff_weights(losses, 0.0, 0.0)


def tiny(**kwargs):
    params = dict(num_epochs=4, pretrain_epochs=2, batch_size=8, verbose=False, device="cpu",
                  seed=0)
    params.update(kwargs)
    return IWAD(**params)


def pair(n=24):
    source = ramp_images(n, side=16).repeat(1, 3, 1, 1) * 2 - 1
    target = ramp_images(n, side=16, seed=1).repeat(1, 3, 1, 1).transpose(2, 3) * 2 - 1
    return source, target


def test_tiny_fit_runs_both_stages_and_monitors():
    source, target = pair()
    det = tiny().fit(source, target, source[:6], monitor={"target": target[:5]})
    assert "L_adv" not in det.history_[1] and "L_adv" in det.history_[2]
    assert "L_estimator" in det.history_[2]
    assert det.cutoff_ > 0 and det.eta_ is None  # the authors' recipe: a cut-off
    assert len(det.monitor_history_) == 4
    last = det.monitor_history_[-1]
    assert last["target"]["weight"].shape == (5,) and set(last) == {"epoch", "target",
                                                                    "source_val"}
    assert ((last["target"]["iwan_weight"] > 0) & (last["target"]["iwan_weight"] < 1)).all()
    assert (det.monitor_history_[0]["target"]["weight"] == 1).all()  # before the rule
    scores = det.score(target)
    assert scores.shape == (24,) and np.isfinite(scores).all()
    assert not hasattr(det, "X_target_")  # the training data are not kept


def test_iwad_is_deterministic_and_checks_its_input():
    source, target = pair()
    a = tiny().fit(source, target).score(target)
    b = tiny().fit(source, target).score(target)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="unlabelled target"):
        tiny().fit(source)
    with pytest.raises(ValueError, match="differ in shape"):
        tiny().fit(source, target[:, :1])
    for bad, match in [({"weight_quantile": 1.0}, "weight_quantile"),
                       ({"cutoff_quantile": 0.0}, "cutoff_quantile"),
                       ({"recipe": "iwan"}, "recipe"), ({"adv_weight": -1}, "adv_weight")]:
        with pytest.raises(ValueError, match=match):
            tiny(**bad).fit(source, target)


@pytest.mark.parametrize("recipe", ["authors", "dann"])
def test_without_importance_every_weight_is_one(recipe):
    source, target = pair()
    det = tiny(importance=False, recipe=recipe).fit(source, target)
    assert det.history_[-1]["mean_w_target"] == 1.0
    assert (det.importance_weights(torch.rand(5)) == 1).all()


def test_run_transfer_writes_a_row_per_rate_and_resumes(domains, monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "load_dataset", lambda name, part, **kw: domains[(name, part)])
    monkeypatch.setattr(bench, "TRANSFER_PREPROCESS", bench.Preprocess(16, 3, "pm1"))
    out = tmp_path / "t.jsonl"
    bench.run_transfer("memae", "src", "tgt", rates=(0.15, 0.35), seeds=(0,), mode="finetune",
                       quick=True, out=out, verbose=False)
    rows = read_rows(out)
    assert [r["anomaly_rate"] for r in rows] == [0.15, 0.35]
    assert {r["variant"] for r in rows} == {"finetune"} and rows[0]["dataset"] == "src2tgt"
    assert rows[0]["protocol"]["n_test_anomalies"] > 0
    bench.run_transfer("memae", "src", "tgt", rates=(0.15, 0.35), seeds=(0,), mode="finetune",
                       quick=True, out=out, verbose=False)
    assert len(read_rows(out)) == 2  # nothing run twice
    bench.run_transfer("iwad", "src", "tgt", rates=(0.15,), quick=True, out=out, verbose=False)
    assert read_rows(out)[-1]["cutoff"] > 0


def test_run_transfer_rejects_bad_modes():
    with pytest.raises(ValueError, match="give a mode"):
        bench.run_transfer("isolation_forest", "mnist", "usps")
    with pytest.raises(ValueError, match="takes no mode"):
        bench.run_transfer("iwad", "mnist", "usps", mode="source")
    with pytest.raises(ValueError, match="cannot be fine-tuned"):
        bench.run_transfer("isolation_forest", "mnist", "usps", mode="finetune")
    with pytest.raises(ValueError, match="transfer method"):
        bench.run_grid("iwad", "mnist")


@pytest.mark.parametrize("recipe, top", [("authors", 0.4621), ("dann", 1.0)])
def test_the_reversal_ramp_starts_at_zero_on_the_first_adversarial_step(monkeypatch, recipe,
                                                                         top):
    from adlib.methods import iwad as iwad_module

    used = []
    forward = iwad_module.GradientReversal.forward

    def recording(module, x):
        if module.training:
            used.append((module, module.coeff))
        return forward(module, x)

    monkeypatch.setattr(iwad_module.GradientReversal, "forward", recording)
    source, target = pair()
    net = tiny(num_epochs=2, pretrain_epochs=1, recipe=recipe).fit(source, target).network_
    used = [coeff for module, coeff in used if module is net.reverse]  # not the estimator's
    stage2 = used[len(used) // 2:]  # 3 steps an epoch: the second half is stage 2
    assert stage2[0] == 0.0 and stage2 == sorted(stage2) and 0 < stage2[-1] < top
    det = tiny(recipe=recipe)
    assert det._reversal(1.0) == pytest.approx(top, abs=1e-4)


def test_dann_weights_stay_fixed_and_the_authors_weights_follow_the_loss():
    source, target = pair()
    det = tiny(recipe="dann", num_epochs=5).fit(source, target, monitor={"target": target[:5]})
    weights = [row["target"]["weight"] for row in det.monitor_history_]
    assert (weights[0] == 1).all()  # before the rule is fixed
    np.testing.assert_array_equal(weights[1], weights[4])  # fixed at the end of stage 1
    assert det.eta_ < 0 < det.beta_ and det.cutoff_ is None
    current = tiny(num_epochs=5).fit(source, target, monitor={"target": target[:5]})
    rows = current.monitor_history_
    assert not np.array_equal(rows[1]["target"]["weight"], rows[4]["target"]["weight"])
    # each epoch's weights are the rule applied to that epoch's losses, at that progress
    for row, p in [(rows[1], 0.0), (rows[4], current._progress_now)]:
        expected = cutoff_weights(torch.from_numpy(row["target"]["loss"]), current.cutoff_, p)
        np.testing.assert_allclose(row["target"]["weight"], expected.numpy(), atol=1e-6)


def test_the_authors_schedule_counts_target_batches_and_restarts_adam():
    source, target = pair()
    det = tiny(num_epochs=3, pretrain_epochs=2)
    seen = []
    step = det.training_step

    def recording(batch, epoch):
        seen.append((epoch, id(det.optimizer_), det.optimizer_.param_groups[0]["lr"]))
        return step(batch, epoch)

    det.training_step = recording
    det.fit(source[:8], target)  # 1 source batch, 3 target batches: 3 steps an epoch
    assert [e for e, _, _ in seen] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len({o for e, o, _ in seen if e < 2}) == 1
    lrs = [lr for _, _, lr in seen]
    # recorded before each step sets its rate: stage 1 decays 0.95 ** (100 e / 2) ...
    assert lrs[4] == pytest.approx(0.01 * 0.95 ** 50)
    # ... and stage 2 restarts Adam at 0.01 x 0.95 ** 100
    assert det.optimizer_ is not None and det.optimizer_.param_groups[0]["lr"] == \
        pytest.approx(0.01 * 0.95 ** 100)
    dann = tiny(recipe="dann", num_epochs=3, pretrain_epochs=2)
    calls = []
    dann_step = dann.training_step
    dann.training_step = lambda b, e: calls.append(e) or dann_step(b, e)
    dann.fit(source[:8], target)
    assert calls == [0, 1, 2]  # one source batch an epoch
    assert not hasattr(det, "_fixed_w")


def test_memory_backbone_trains_with_its_entropy_term():
    source, target = pair()
    det = tiny(num_slots=10).fit(source, target)
    assert "entropy" in det.history_[-1] and det.network_.autoencoder.memory is not None
    assert np.isfinite(det.score(target)).all()
    assert "entropy" not in tiny().fit(source, target).history_[-1]
    with pytest.raises(ValueError, match="num_slots"):
        tiny(num_slots=-1).fit(source, target)


def test_the_dann_recipe_anneals_the_rate_over_stage_2():
    source, target = pair()
    det = tiny(recipe="dann").fit(source, target)
    steps = 2 * det.steps_per_epoch_  # 2 adversarial epochs
    p_last = (steps - 1) / steps
    assert det.optimizer_.param_groups[0]["lr"] == pytest.approx(
        det.lr / (1 + 10 * p_last) ** 0.75)


def test_pretrain_then_fit_from_it_runs_stage_2_alone():
    source, target = pair()
    state = tiny(pretrain_epochs=2).pretrain(source, target)
    det = tiny(num_epochs=5, pretrain_epochs=2)
    seen = []
    step = det.training_step
    det.training_step = lambda b, e: seen.append(e) or step(b, e)
    det.fit(source, target, init=state)
    # 5 - 2 = 3 epochs, every one adversarial, starting from the pretrained weights
    assert det.pretrain_epochs_ == 0 and len(det.history_) == 3
    assert all("L_adv" in row for row in det.history_) and det.cutoff_ > 0
    fresh = tiny(num_epochs=5, pretrain_epochs=2).fit(source, target, init=state)
    np.testing.assert_allclose(fresh.score(target), det.score(target), rtol=1e-6, atol=1e-9)
    stage1 = tiny(num_epochs=5, pretrain_epochs=2).fit(source, target)
    assert not np.allclose(stage1.score(target), det.score(target))  # another start
    with pytest.raises(ValueError, match="does not fit this network"):
        tiny(num_slots=10).fit(source, target, init=state)


def test_run_transfer_pretrains_once_on_the_named_task(domains, monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "load_dataset", lambda name, part, **kw: domains[(name, part)])
    monkeypatch.setattr(bench, "TRANSFER_PREPROCESS", bench.Preprocess(16, 3, "pm1"))
    calls = []
    pretrain = IWAD.pretrain
    monkeypatch.setattr(IWAD, "pretrain", lambda self, *a: calls.append(1) or pretrain(self, *a))
    out = tmp_path / "t.jsonl"
    bench.run_transfer("iwad", "tgt", "src", rates=(0.15, 0.35), quick=True, out=out,
                       verbose=False, pretrain_task=("src", "tgt", "0.25"))
    rows = read_rows(out)
    assert len(calls) == 1 and len(rows) == 2  # one pretraining for both rates
    assert rows[0]["variant"] == "default+pretrain=src2tgt@0.25"
    assert rows[0]["pretrain_task"] == ["src", "tgt", 0.25] and rows[0]["pretrain_s"] > 0
    for bad, match in [(("src", "tgt", "x"), "not a number"), (("src", "tgt", 1.5), r"\(0, 1\)")]:
        with pytest.raises(ValueError, match=match):
            bench.run_transfer("iwad", "tgt", "src", quick=True, out=out, pretrain_task=bad)
    with pytest.raises(ValueError, match="no separate pretraining"):
        bench.run_transfer("memae", "tgt", "src", mode="finetune", quick=True, out=out,
                           pretrain_task=("src", "tgt", 0.25))
