"""ADNL: the AAE's shapes, the negative losses, one tiny training run, and its protocol."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ramp_images

from adlib.data import DataError
from adlib.methods.adnl import (ADNL, AAE, BATCH_STATS, negative_loss,
                                negative_steps_due)
from adlib.protocols import anomaly_class
from conftest import decode_index, encoded_image_set


@pytest.mark.parametrize("side, channels", [(28, 1), (32, 1), (32, 3), (64, 3)])
def test_aae_shapes(side, channels):
    net = AAE(channels, (side, side), 16, (8, 16, 32)).eval()
    x = torch.rand(3, channels, side, side) * 2 - 1
    assert net.encoder(x).shape == (3, 16)
    out = net(x)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    assert net.discriminator(torch.randn(5, 16)).shape == (5,)


def test_negative_losses():
    x = torch.zeros(2, 1, 2, 2)
    r = torch.full((2, 1, 2, 2), 0.5)
    assert negative_loss(r, x, "naive").item() == pytest.approx(-0.25)
    assert negative_loss(r, x, "scaled").item() == pytest.approx(np.exp(-0.25))
    assert negative_loss(x, x, "scaled").item() == pytest.approx(1.0)  # perfect = worst
    with pytest.raises(ValueError, match="naive"):
        negative_loss(r, x, "huge")


def tiny(**kwargs):
    params = dict(num_epochs=3, batch_size=16, latent_dim=4, widths=(8, 8, 16), verbose=False,
                  device="cpu", seed=0, lr=2e-3)
    params.update(kwargs)
    return ADNL(**params)


@pytest.mark.parametrize("batch_stats", BATCH_STATS)
def test_negative_learning_raises_the_error_of_the_labelled_kind(batch_stats):
    normals = ramp_images(64, side=16) * 2 - 1
    anomalies = torch.flip(normals, dims=[2])  # upside-down ramps
    plain = tiny().fit(normals[:48], normals[48:])
    negative = tiny(batch_stats=batch_stats).fit(normals[:48], normals[48:],
                                                 X_anomalies=anomalies[:16],
                                                 X_val_anomalies=anomalies[16:32])
    assert "negative" in negative.history_[0] and "negative" not in plain.history_[0]
    assert negative.best_epoch_ == 2 and "val_metric" not in negative.history_[0]  # the last
    assert "val_metric" in plain.history_[0] and "val_mse" in negative.history_[0]
    assert all("val_auroc" in r for r in negative.history_)
    test_anom = anomalies[32:]
    gap = lambda d: d.score(test_anom).mean() - d.score(normals[48:]).mean()  # noqa: E731
    assert gap(negative) > gap(plain)


def test_negative_steps_interleave_in_proportion():
    # MNIST with every 7 labelled: 176 normal batches, 22 anomaly batches an epoch
    due = [negative_steps_due(i, 22, 176) for i in range(1, 177)]
    assert due[0] == 1 and due[7] == 1 and due[8] == 2 and due[-1] == 22
    assert all(b - a in (0, 1) for a, b in zip(due, due[1:]))
    assert [negative_steps_due(i, 1, 4) for i in (1, 4)] == [1, 1]  # 100 labelled: one batch
    assert [negative_steps_due(i, 6, 2) for i in (1, 2)] == [3, 6]  # more anomaly batches
    assert negative_steps_due(3, 0, 3) == 0
    with pytest.raises(ValueError, match="step 5 of 4"):
        negative_steps_due(5, 1, 4)


@pytest.mark.parametrize("n_anomalies, steps, joint_steps", [(40, 3, 4), (16, 1, 4), (3, 1, 3)])
def test_each_labelled_anomaly_once_an_epoch(n_anomalies, steps, joint_steps):
    normals = ramp_images(64, side=16) * 2 - 1  # 4 normal batches of 16
    for batch_stats, expected in [("running", steps), ("joint", joint_steps)]:
        det = tiny(num_epochs=2, batch_stats=batch_stats).fit(
            normals, X_anomalies=-normals[:n_anomalies])
        assert [row["negative_steps"] for row in det.history_] == [expected, expected]
        assert [row["negative_images"] for row in det.history_] == [n_anomalies] * 2


def test_joint_step_weighs_each_anomaly_as_a_separate_negative_step():
    """The joint loss is the positive MSE plus each anomaly's negative loss over the size of
    Algorithm 1's anomaly batches (min(batch, labelled)): 10 of 40 anomalies, batch 16."""
    normals = ramp_images(64, side=16) * 2 - 1
    det = tiny(num_epochs=1).fit(normals, X_anomalies=-normals[:40])
    det._epoch, det._step = 0, 1
    det._queue = [torch.arange(10)]
    seen = {}
    det.optimizer_step = lambda opt, loss, epoch, what: seen.setdefault("loss", loss.item())
    det.network_.train()
    out = det._joint_step(normals[:16], epoch=0)
    with torch.no_grad():
        recon = det.network_(torch.cat([normals[:16], det.anomalies_[:10]]))
    y = det.anomalies_[:10]
    expected = (torch.nn.functional.mse_loss(recon[:16], normals[:16])
                - 10 / 16 * (recon[16:] - y).pow(2).mean())
    assert seen["loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert out["positive"] == pytest.approx(
        torch.nn.functional.mse_loss(recon[:16], normals[:16]).item(), rel=1e-5)


@pytest.mark.parametrize("batch_stats", ["running", "anomaly"])
def test_negative_step_batch_norm_statistics(batch_stats):
    normals = ramp_images(32, side=16) * 2 - 1
    det = tiny(num_epochs=1, batch_stats=batch_stats).fit(
        normals, X_anomalies=-normals[:8])
    det.network_.train()
    buffers = {k: v.clone() for k, v in det.network_.state_dict().items() if "running" in k}
    det._negative_step(-normals[8:16], epoch=0)
    after = det.network_.state_dict()
    changed = any(not torch.equal(v, after[k]) for k, v in buffers.items())
    assert changed == (batch_stats == "anomaly")  # "running" leaves the normals' alone
    assert det.network_.training  # back in training mode for the next positive step


def test_scaled_loss_and_weight_train_and_bad_options_raise():
    normals = ramp_images(32, side=16) * 2 - 1
    det = tiny(num_epochs=1, negative="scaled", anomaly_weight=10).fit(
        normals, X_anomalies=-normals[:8])
    assert np.isfinite(det.history_[0]["negative"])
    with pytest.raises(ValueError, match="negative="):
        tiny(negative="odd").fit(normals)
    with pytest.raises(ValueError, match="anomaly_weight"):
        tiny(anomaly_weight=-1).fit(normals)
    with pytest.raises(ValueError, match="batch_stats='own'"):
        tiny(batch_stats="own").fit(normals)


def test_same_seed_same_scores():
    normals = ramp_images(32, side=16) * 2 - 1
    a = tiny(num_epochs=1).fit(normals, X_anomalies=-normals[:4]).score(normals)
    b = tiny(num_epochs=1).fit(normals, X_anomalies=-normals[:4]).score(normals)
    np.testing.assert_allclose(a, b, rtol=1e-6)


# --------------------------------------------------------------------------- the protocol

@pytest.fixture
def sets():
    return encoded_image_set(200), encoded_image_set(100, offset=1000)


def test_anomaly_class_pools_and_resplits_8_to_2(sets):
    train, test = sets
    s = anomaly_class("custom", 3, seed=0, n_labelled=5, train_set=train, test_set=test)
    labels = np.r_[train.labels.numpy(), test.labels.numpy()]
    code = lambda x: np.where(decode_index(x) >= 1000, decode_index(x) - 1000 + 200,  # noqa: E731
                              decode_index(x))
    tr, va, te, an = code(s.X_train), code(s.X_val), code(s.X_test), code(s.X_anomalies)
    assert (labels[tr] != 3).all() and (labels[va] != 3).all()  # normals only
    assert (labels[an] == 3).all() and len(an) == 5
    assert not set(tr) & set(te) and not set(an) & set(te) and not set(va) & set(tr)
    assert len(tr) + len(va) + len(te) + 30 - 6 == 300  # 24 of the 30 threes are training
    np.testing.assert_array_equal(s.y_test, (labels[te] == 3).astype(int))
    assert s.y_test.sum() == 6 and s.info["n_labelled"] == 5


def test_anomaly_class_unsupervised_and_unseen_anomaly(sets):
    train, test = sets
    s = anomaly_class("custom", 3, n_labelled=0, train_set=train, test_set=test)
    assert s.X_anomalies is None
    u = anomaly_class("custom", 3, n_labelled=None, test_anomaly=5, train_set=train,
                      test_set=test)
    assert len(u.X_anomalies) == 24 and u.info["test_anomaly"] == 5
    assert set(u.test_classes[u.y_test == 1]) == {5} and 3 not in set(u.test_classes)
    with pytest.raises(DataError, match="only 24"):
        anomaly_class("custom", 3, n_labelled=25, train_set=train, test_set=test)
    for bad in (-1, 2.5, "some", True):
        with pytest.raises(ValueError, match="n_labelled"):
            anomaly_class("custom", 3, n_labelled=bad, train_set=train, test_set=test)
    with pytest.raises(DataError, match="unknown class"):
        anomaly_class("custom", 12, train_set=train, test_set=test)


def test_anomaly_class_labels_every_anomaly_by_default_and_resizes(sets):
    train, test = sets
    s = anomaly_class("custom", 3, train_set=train, test_set=test)
    assert len(s.X_anomalies) == 24 and s.info["n_labelled"] == 24  # the paper's protocol
    big = anomaly_class("custom", 3, n_labelled="all", size=16, train_set=train, test_set=test)
    assert big.X_train.shape[-2:] == (16, 16) and big.info["preprocess"]["size"] == 16
    np.testing.assert_array_equal(big.y_test, s.y_test)


@pytest.mark.parametrize("test_anomaly", [None, 5])
def test_anomaly_class_development_split_reads_training_images_only(sets, test_anomaly):
    train, test = sets
    full = anomaly_class("custom", 3, test_anomaly=test_anomaly, train_set=train, test_set=test)
    dev = anomaly_class("custom", 3, test_anomaly=test_anomaly, development=True,
                        train_set=train, test_set=test)
    idx = lambda x: set(decode_index(x).tolist())  # noqa: E731
    assert not idx(dev.X_test) & idx(full.X_test)  # no image of the protocol's test set
    assert not idx(dev.X_test) & idx(dev.X_anomalies)  # held out of the labelled pool
    assert not idx(dev.X_test) & idx(dev.X_train)
    assert idx(dev.X_test) >= idx(dev.X_val) and (dev.y_test == 0).sum() == len(dev.X_val)
    unseen = 3 if test_anomaly is None else 5
    assert set(dev.test_classes[dev.y_test == 1]) == {unseen}
    if test_anomaly is None:  # 5 of the 24 training threes are held out
        assert dev.y_test.sum() == 5 and len(dev.X_anomalies) == 19
    assert idx(dev.X_anomalies) <= idx(full.X_anomalies)
    assert "development" in dev.info["evaluated_on"]
    with pytest.raises(ValueError, match="dev_share"):
        anomaly_class("custom", 3, development=True, dev_share=1.0, train_set=train,
                      test_set=test)
