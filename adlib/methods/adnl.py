"""ADNL: an adversarial autoencoder with negative learning on labelled anomalies.

Paper: J. Lee, M. Astrid, M. Z. Zaheer, S.-I. Lee, "Deep Visual Anomaly Detection with Negative
Learning" (2021). Notebook: ``notebooks/04_adnl.py``.

Idea: an autoencoder trained on normal data also reconstructs many anomalies well (Fig 6), so
their reconstruction error stays low. When a few anomalies *are* labelled, use them: batches of
normal data minimise the reconstruction error (eq. 2, "positive learning"), batches of labelled
anomalies *maximise* it (eq. 3, "negative learning"), both on the same parameters, alternating
as in Algorithm 1. The base model is an adversarial autoencoder (Makhzani et al. 2015) whose
latent discriminator imposes a standard Gaussian prior on the code (section 4.2).

Losses: positive ``MSE(x_hat, x)``; negative, naive (eq. 3) ``-MSE(y_hat, y)``, or scaled
(section 4.6, eq. 4) ``mean exp(-(y_hat - y)^2)``, bounded in [0, 1] (the paper sums over pixels;
a mean only rescales it). ``anomaly_weight`` multiplies the negative loss (the paper tried 10
and saw no difference; default 1). Score: the per-image reconstruction MSE (higher = more
anomalous); the paper scales it to [0, 1] for its plots, which changes no AUROC.

The paper's protocol, as its text fixes it (``REFERENCES.md``, "OCLR and ADNL"): every training
image of the anomaly digit is labelled (its 10 : 1 ratio of normal to abnormal data; 10, 100 or
1000 labelled are the book's few-shot extension, :func:`adlib.protocols.anomaly_class`);
Algorithm 1 takes a positive step per normal batch and a negative step per anomaly batch, each
anomaly once an epoch (:func:`negative_steps_due` interleaves the two in proportion); Adam
"with the parameters of [26]", Kingma and Ba's lr 1e-3 and betas (0.9, 0.999); batch 256;
inputs 64 x 64 (``--protocol size=64``) and 100 epochs on MNIST.

Choices the paper leaves open, and what we chose (named in the notebook too):

* DCGAN-style networks at the input's size (our CPU default is MNIST's 28 x 28 grey, set by
  the protocol's preprocessing): encoder of three 4x4 stride-2 convolutions (32, 64, 128;
  batch normalisation and ReLU) and a linear layer to the code (``latent_dim`` = 16); decoder
  mirrors it with transposed convolutions, tanh at the end (inputs in [-1, 1]); centre-cropped
  when the side is not a multiple of 8. Latent discriminator: two 128-unit layers with leaky
  ReLU;
* each normal batch also takes the AAE's two prior-matching steps (discriminator on prior
  samples against codes; encoder to fool it);
* batch normalisation (the paper's) meets the negative loss in one step
  (``batch_stats="joint"``, revision 3): the anomalies due join the normal batch, batch norm
  normalises them together, as a test batch that mixes them, and the step minimises eq. 2 on
  the normals plus eq. 3 on the anomalies, each anomaly weighted as in Algorithm 1's separate
  negative step (once an epoch, over the anomaly batch's size). Algorithm 1 writes two
  steps; a separate negative step has to choose batch-norm statistics, and both choices give
  the network a shortcut that is not anomaly detection:

  - the anomaly-only batch's own statistics (``"anomaly"``, revision 1): the network fails the
    anomalies through their batch statistics, which no test batch has. Digit 7's development
    split (every anomaly labelled, seed 0, 10 epochs): the development AUROC peaks at 96.0
    after epoch 2 and ends at 66.7 while the held-out normals' MSE falls to 0.054;
  - the normals' running statistics, left unchanged (``"running"``, revision 2): a train-mode
    step cancels what a shift of a layer's pre-normalisation mean or scale does to the batch,
    the running statistics follow it only with a lag, so the negative step can raise every
    image's error at test time through that lag while the positive steps, which see batch
    statistics, never pay for it. The held-out normals' MSE (eval mode) then rises to
    0.16-0.92 (0.05 without negative learning) and the development AUROC ends at 82.4
    (digit 9), 89.6 (4), 91.2 (3), 96.8 (7);
* the budget is chosen on the development split (``bench --dev``: a fifth of the anomaly
  digit's training images held out of the labelled pool): 5 epochs on MNIST (revision 3:
  digits 3, 4 and 9 level off after epoch 2; the paper's 100 do not fit on 2 CPU cores, and
  the revision-2 rows ran 10). Negative learning keeps the last
  epoch (the paper trains a fixed budget; the held-out normals' error, logged as ``val_mse``,
  rises as the negative steps bite, so its minimum picks an early, weak epoch: 68.5 against
  96.8 at epoch 10 on digit 7's development split); the unsupervised AAE keeps the epoch with
  the lowest reconstruction MSE of held-out normals. No anomaly label selects an epoch.

Revision 1 (rows in ``results/adnl_mnist_rev1.jsonl``) took a negative step after every
positive one on 100 labelled anomalies drawn with replacement, with DCGAN's Adam (2e-4, 0.5):
96.4% mean AUROC with negative learning, 76.5% unsupervised (paper 99.1 / 49.7).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..detectors import BaseDeepDetector, as_tensor
from ..metrics import auroc
from ..protocols import Preprocess
from ..registry import register

__all__ = ["AAEEncoder", "AAEDecoder", "LatentDiscriminator", "negative_loss",
           "negative_steps_due", "BATCH_STATS", "ADNL"]

#: How a negative step meets batch normalisation (``ADNL(batch_stats=...)``): ``"joint"``, the
#: anomalies due join the normal batch in one step (revision 3); ``"running"``, a separate step
#: on the normals' running statistics (revision 2); ``"anomaly"``, a separate step on the
#: anomaly batch's own statistics (revision 1).
BATCH_STATS = ("joint", "running", "anomaly")


class AAEEncoder(nn.Module):
    """Three 4x4 stride-2 convolutions (BN, ReLU) and a linear layer to ``latent_dim``."""

    def __init__(self, in_channels: int = 1, size: tuple = (28, 28), latent_dim: int = 16,
                 widths: tuple = (32, 64, 128)):
        super().__init__()
        layers, c = [], in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            n = self.features(torch.zeros(2, in_channels, *size)).shape[1]
        self.code = nn.Linear(n, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.code(self.features(x))


class AAEDecoder(nn.Module):
    """A linear layer and three 4x4 stride-2 transposed convolutions, tanh output."""

    def __init__(self, out_channels: int = 1, size: tuple = (28, 28), latent_dim: int = 16,
                 widths: tuple = (32, 64, 128)):
        super().__init__()
        w0, w1, w2 = widths
        self.size = tuple(size)
        self.start = (math.ceil(size[0] / 8), math.ceil(size[1] / 8))
        self.dense = nn.Sequential(nn.Linear(latent_dim, w2 * self.start[0] * self.start[1]),
                                   nn.ReLU(), nn.Unflatten(1, (w2, *self.start)))
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(w2, w1, 4, 2, 1), nn.BatchNorm2d(w1), nn.ReLU(),
            nn.ConvTranspose2d(w1, w0, 4, 2, 1), nn.BatchNorm2d(w0), nn.ReLU(),
            nn.ConvTranspose2d(w0, out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.upsample(self.dense(z))
        (h, w), (oh, ow) = self.size, out.shape[-2:]
        top, left = (oh - h) // 2, (ow - w) // 2
        return out[..., top:top + h, left:left + w]


class LatentDiscriminator(nn.Module):
    """Tells prior samples ``N(0, I)`` (real) from codes of the encoder (fake); logits."""

    def __init__(self, latent_dim: int = 16, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)


class AAE(nn.Module):
    """Encoder, decoder and latent discriminator; ``forward`` reconstructs."""

    def __init__(self, channels, size, latent_dim, widths):
        super().__init__()
        self.encoder = AAEEncoder(channels, size, latent_dim, widths)
        self.decoder = AAEDecoder(channels, size, latent_dim, widths)
        self.discriminator = LatentDiscriminator(latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def negative_loss(recon: torch.Tensor, x: torch.Tensor, kind: str = "naive") -> torch.Tensor:
    """The loss minimised on labelled anomalies: ``-MSE`` (eq. 3) or ``mean exp(-(r - x)^2)``
    (eq. 4, "scaled": 1 for a perfect reconstruction, towards 0 as the error grows)."""
    if kind == "naive":
        return -F.mse_loss(recon, x)
    if kind == "scaled":
        return torch.exp(-(recon - x).pow(2)).mean()
    raise ValueError(f"negative loss {kind!r}: use 'naive' or 'scaled'")


def negative_steps_due(step: int, n_negative: int, n_positive: int) -> int:
    """How many of an epoch's ``n_negative`` anomaly batches are done once its ``step``-th
    (1-based) of ``n_positive`` normal batches is: ``ceil(step * n_negative / n_positive)``,
    so the two kinds interleave in proportion and each anomaly batch comes once an epoch
    (Algorithm 1's loop over normal and abnormal data; no oversampling)."""
    if n_positive < 1 or not 0 <= step <= n_positive:
        raise ValueError(f"step {step} of {n_positive} normal batches")
    return math.ceil(step * n_negative / n_positive)


def _mse(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (recon - x).pow(2).flatten(1).mean(1)


@register("adnl")
class ADNL(BaseDeepDetector):
    """Adversarial autoencoder with negative learning (see the module docstring).

    ``fit(X_train, X_val=None, X_anomalies=None, X_val_anomalies=None)``: without
    ``X_anomalies`` it is the unsupervised AAE baseline; with them, negative learning.
    ``X_val_anomalies`` only adds a validation AUROC per epoch to ``history_`` (Fig 3); it never
    selects the epoch.

    Args:
        negative: ``"naive"`` (eq. 3) or ``"scaled"`` (eq. 4).
        anomaly_weight: factor on the negative loss (the paper's optional 10).
        latent_dim, widths: the code's size and the convolution widths.
        adversarial: impose the Gaussian prior with the latent discriminator (AAE); ``False``
            gives a plain autoencoder.
        betas: Adam's betas (default Kingma and Ba's, the paper's [26]; ``lr`` defaults to their
            1e-3).
        batch_stats: how the negative loss meets batch normalisation (:data:`BATCH_STATS`):
            ``"joint"`` (default) adds it to the positive step on the normal batch joined by
            the anomalies due; ``"running"`` and ``"anomaly"`` take separate negative steps on
            the normals' running statistics or on the anomaly batch's own (the module
            docstring says what each shortcut does).
        Other arguments: see :class:`adlib.detectors.BaseDeepDetector`.
    """

    learning_type = "few_shot"
    #: MNIST: 5, chosen on the development split (every anomaly labelled, seed 0): digits 3, 4
    #: and 9 reach 99.8 / 99.8 / 99.4 after epoch 2 and end epoch 5 at 99.9 / 99.8 / 99.5
    #: (epoch 10: 99.9 / 99.8 / 99.7). The paper's 100 epochs did not fit on 2 CPU cores.
    default_epochs = {None: 10, "mnist": 5}
    quick_epochs = 2
    validation_mode = "min"
    notebook = "04_adnl"
    preprocess = Preprocess(scale="pm1")
    #: 3: the anomalies due join the normal batch's step (``batch_stats="joint"``); 2: Algorithm
    #: 1's proportional schedule, Adam at Kingma and Ba's settings, separate negative steps on
    #: the running batch-norm statistics (rows in ``results/adnl_*_rev2.jsonl``); 1: a negative
    #: step after every positive one, drawn with replacement, DCGAN's Adam 2e-4 / 0.5,
    #: anomaly-batch statistics (``results/adnl_mnist_rev1.jsonl``)
    revision = 3

    def __init__(self, negative: str = "naive", anomaly_weight: float = 1.0,
                 latent_dim: int = 16, widths: tuple = (32, 64, 128), adversarial: bool = True,
                 betas: tuple = (0.9, 0.999), batch_stats: str = "joint", **kwargs):
        kwargs.setdefault("batch_size", 256)
        kwargs.setdefault("lr", 1e-3)
        super().__init__(**kwargs)
        self.negative = negative
        self.anomaly_weight = anomaly_weight
        self.latent_dim = latent_dim
        self.widths = widths
        self.adversarial = adversarial
        self.betas = betas
        self.batch_stats = batch_stats

    def _check_params(self) -> None:
        super()._check_params()
        if self.negative not in ("naive", "scaled"):
            raise ValueError(f"negative={self.negative!r}: use 'naive' or 'scaled'")
        if not self.anomaly_weight >= 0:
            raise ValueError(f"anomaly_weight={self.anomaly_weight} must be >= 0")
        if self.batch_stats not in BATCH_STATS:
            raise ValueError(f"batch_stats={self.batch_stats!r}: use one of {BATCH_STATS}")

    def fit(self, X_train, X_val=None, X_anomalies=None, X_val_anomalies=None) -> "ADNL":
        """Train on normals ``X_train`` and, if given, labelled anomalies ``X_anomalies``; the
        held-out normals ``X_val`` select the epoch and calibrate the threshold."""
        self.anomalies_ = (as_tensor(X_anomalies) if X_anomalies is not None
                           and len(X_anomalies) else None)
        self.val_anomalies_ = (as_tensor(X_val_anomalies) if X_val_anomalies is not None
                               and len(X_val_anomalies) else None)
        return super().fit(X_train, X_val)

    # -- hooks -------------------------------------------------------------------------------
    def build_network(self, input_shape):
        return AAE(input_shape[0], tuple(input_shape[1:]), int(self.latent_dim),
                   tuple(self.widths))

    def configure_optimizers(self, steps_per_epoch):
        net, betas = self.network_, tuple(self.betas)
        ae = list(net.encoder.parameters()) + list(net.decoder.parameters())
        self.disc_optimizer_ = torch.optim.Adam(net.discriminator.parameters(), lr=self.lr,
                                                betas=betas)
        self.gen_optimizer_ = torch.optim.Adam(net.encoder.parameters(), lr=self.lr, betas=betas)
        self.normal_steps_ = steps_per_epoch
        return torch.optim.Adam(ae, lr=self.lr, betas=betas), None

    def negative_batches(self) -> list:
        """The labelled anomalies of one epoch, shuffled, each once (Algorithm 1 visits the
        abnormal data once an epoch; no oversampling): in batches of ``batch_size`` for
        separate negative steps, or in one share per normal batch (``batch_stats="joint"``)."""
        order = torch.randperm(len(self.anomalies_), generator=self.generator_)
        if self.batch_stats == "joint":
            return list(order.tensor_split(self.normal_steps_))
        return list(order.split(self.batch_size))

    def training_step(self, batch, epoch):
        """Algorithm 1 on a normal batch: its positive step (joined by the anomalies due, when
        ``batch_stats="joint"``) and the AAE's two prior-matching steps; with separate
        statistics, then a negative step on each anomaly batch now due
        (:func:`negative_steps_due`)."""
        net, out = self.network_, {}
        if self.anomalies_ is not None:
            if self._epoch != epoch:
                self._epoch, self._step, self._done = epoch, 0, 0
                self._queue = self.negative_batches()
            self._step += 1
        if self.anomalies_ is not None and self.batch_stats == "joint":
            out.update(self._joint_step(batch, epoch))
        else:
            out["positive"] = self.optimizer_step(
                self.optimizer_, F.mse_loss(net(batch), batch), epoch, "reconstruction loss")
        if self.adversarial:
            out.update(self._prior_steps(batch, epoch))
        if self.anomalies_ is not None and self.batch_stats != "joint":
            due = negative_steps_due(self._step, len(self._queue), self.normal_steps_)
            while self._done < due:
                y = self.anomalies_[self._queue[self._done]].to(batch.device)
                self._negative_losses.append(self._negative_step(y, epoch))
                self._negative_images += len(y)
                self._done += 1
        return out

    def _joint_step(self, batch, epoch) -> dict:
        """The positive and negative losses in one step on the normal batch joined by its
        share of the epoch's anomalies (``batch_stats="joint"``): batch norm normalises both
        together, as a test batch that mixes them. Each anomaly weighs as in Algorithm 1's
        negative step: its loss over the size of the anomaly batches, once an epoch."""
        net = self.network_
        y = self.anomalies_[self._queue[self._step - 1]].to(batch.device)
        recon = net(torch.cat([batch, y]))
        positive = F.mse_loss(recon[:len(batch)], batch)
        loss = positive
        if len(y):
            share = len(y) / min(self.batch_size, len(self.anomalies_))
            negative = self.anomaly_weight * share * negative_loss(recon[len(batch):], y,
                                                                   self.negative)
            loss = positive + negative
            self._negative_losses.append(float(negative.detach()) / share)
            self._negative_images += len(y)
        self.optimizer_step(self.optimizer_, loss, epoch, "reconstruction loss")
        return {"positive": float(positive.detach())}

    def _prior_steps(self, batch, epoch) -> dict:
        """The AAE's regularisation: the latent discriminator tells ``N(0, I)`` samples from
        codes, then the encoder learns to fool it."""
        net, out = self.network_, {}
        z_fake = net.encoder(batch)
        z_real = torch.randn(z_fake.shape, generator=self.generator_).to(batch.device)
        logits = torch.cat([net.discriminator(z_real), net.discriminator(z_fake.detach())])
        target = torch.cat([torch.ones(len(batch)), torch.zeros(len(batch))]).to(batch.device)
        out["discriminator"] = self.optimizer_step(
            self.disc_optimizer_, F.binary_cross_entropy_with_logits(logits, target), epoch,
            "discriminator loss")
        fool = F.binary_cross_entropy_with_logits(net.discriminator(net.encoder(batch)),
                                                  torch.ones(len(batch), device=batch.device))
        out["encoder_adv"] = self.optimizer_step(self.gen_optimizer_, fool, epoch,
                                                 "encoder loss")
        return out

    def _negative_step(self, y: torch.Tensor, epoch: int) -> float:
        """Eq. 3 (or 4) on a batch of labelled anomalies alone; with ``batch_stats="running"``
        batch norm reads the normals' running statistics and leaves them unchanged, with
        ``"anomaly"`` the batch's own statistics, which update the running ones."""
        net = self.network_
        net.train(self.batch_stats == "anomaly")
        loss = self.anomaly_weight * negative_loss(net(y), y, self.negative)
        value = self.optimizer_step(self.optimizer_, loss, epoch, "negative loss")
        net.train()
        return value

    def batch_scores(self, batch):
        """Per-image reconstruction MSE."""
        return _mse(self.network_(batch), batch)

    def reconstruct_batch(self, batch):
        """The adversarial autoencoder's reconstruction."""
        return self.network_(batch)

    def validation_metric(self, X_val):
        """Mean reconstruction MSE of the held-out normals (lower is better): it picks the
        unsupervised AAE's epoch. ``None`` under negative learning, which keeps the last epoch:
        there the normals' error is one side of the objective only (eq. 1; it rises as the
        negative steps bite), and the paper trains a fixed budget."""
        self._val_scores = self._scores_of(X_val)  # on_epoch_end logs them too
        if self.anomalies_ is not None:
            return None
        return float(self._val_scores.mean())

    def on_epoch_end(self, epoch):
        """Log the epoch's mean negative loss per anomaly batch (times ``anomaly_weight``),
        its count of negative steps and of anomaly images, the held-out normals'
        reconstruction MSE (``val_mse``) and, if held-out labelled anomalies were given, the
        validation AUROC (Fig 3)."""
        if self._negative_losses:
            self.history_[-1].update(negative=float(np.mean(self._negative_losses)),
                                     negative_steps=len(self._negative_losses),
                                     negative_images=self._negative_images)
            self._negative_losses, self._negative_images = [], 0
        self.network_.eval()
        with torch.no_grad():
            normal = (self._val_scores if self._val_scores is not None
                      else self._scores_of(self._val_normals))
            self._val_scores = None
            anomalous = (self._scores_of(self.val_anomalies_)
                         if self.val_anomalies_ is not None else None)
        self.history_[-1]["val_mse"] = float(normal.mean())
        if anomalous is not None:
            y = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
            self.history_[-1]["val_auroc"] = auroc(y, np.r_[normal, anomalous])

    def setup(self, X_train, X_val):
        """Keep the validation normals for the per-epoch AUROC of ``on_epoch_end``; reset the
        schedule of negative steps."""
        self._val_normals = X_val if X_val is not None else X_train[:512]
        self._epoch, self._negative_losses, self._val_scores = None, [], None
        self._negative_images = 0
