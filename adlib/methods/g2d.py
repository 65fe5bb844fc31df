"""G2D: Generate to Detect anomalies with a half-trained WGAN.

Paper: M. Pourreza, B. Mohammadi, M. Khaki, S. Bouindour, H. Snoussi, M. Sabokrou, "G2D:
Generate to Detect Anomaly", WACV 2021. Notebook: ``notebooks/03_g2d.py``.

Idea (section 3): a GAN trained on normal data passes, epoch by epoch, through generators that
make far-away noise, then irregular samples near the normal class's boundary, then normal-looking
samples. Keep the generator of every epoch, pick the early and boundary ones from the generator's
loss curve (section 3.3), let each draw ``m`` samples, and train a classifier D on normal data
(label 0) against these irregularities (label 1). D's probability of "irregular" is the anomaly
score; ``alpha = 0.5`` is the decision threshold (section 3.4).

Training (section 4.1), as the issue fixes it:

* the irregularity generator I and the critic C form a WGAN with gradient penalty (Gulrajani et
  al. 2017): lambda 10, five critic steps per generator step, Adam (lr 1e-4, betas 0.5 and
  0.999), batch 64. The penalty is taken on each sample's gradient norm over *all* its
  dimensions (``grad.flatten(1).norm(dim=1)``); a widely copied public version takes the norm
  over the channel axis only, which penalises a different quantity;
* an epoch is one pass of the critic over the normal training images (its batches), with a
  generator step after every fifth critic step; the generator's weights are kept after every
  epoch, with the epoch's loss ``L_I`` (eq. 3: mean critic value of real minus generated images,
  the critic's Wasserstein estimate);
* D: SGD (lr 0.01, momentum 0.9), batch 32 normals with 32 irregular samples, negative
  log-likelihood of a two-way softmax (eq. 1).

The selection rule (section 3.3): ``L(i) = L_I(i) - L_I(i + h)``, ``h = 5``, falls through three
regimes ``eps1 >> eps2 >> eps3`` (Fig 4). The paper's formula did not survive in its text; ours:
each epoch's drop ``L(i)`` is divided by the largest drop of the run and assigned to the regime
whose ``eps`` is nearest on a log scale (``eps = (1, 0.1, 0.01)``: thresholds 0.316 and 0.0316);
epochs before the loss curve's peak (the critic still learning, I still noise) count as far.
Epochs of the first two regimes (far-away noise, boundary irregularities) are selected; the last
(normal-looking samples) is not. ``k`` caps their number (evenly spaced); each draws ``m``
samples (default: as many in total as there are training normals).

Choices the paper leaves open, and what we chose (named in the notebook too): the layer widths
(Fig 3 is not in the text): a DCGAN generator ``z (100) -> 64 x s/4 x s/4 -> 32 -> C`` with
batch normalisation, ReLU and tanh, centre-cropped to the image side; a critic of two 4x4
stride-2 convolutions (32, 64) with leaky ReLU and a linear output, no batch normalisation (the
penalty is per sample). DCGAN's usual widths are twice these; halved, a critic step with its
penalty costs a quarter (0.2 s per batch of 64 at full width on our 2 CPU cores); D: two 3x3
convolutions (32, 64) with max pooling, a 128-unit dense layer with dropout 0.3, two outputs.
The GAN's epoch count (the paper gives none): 30. D keeps
the epoch with the lowest NLL on held-out normals and held-out irregular samples (no real
anomaly). Inputs are scaled to [-1, 1].

What we measured (``results/g2d_mnist.jsonl``, notebook step 7) and how it differs from the
paper: D ranks MNIST test images fairly (mean AUROC 87.1% over ten digits, 3 seeds), but at
``alpha = 0.5`` it calls almost no real image irregular, so its F1 is 0 at every outlier share,
where the paper's Fig 5 shows about 0.9. D separates *generated* from *real* images, and every real
digit looks real. With 30 epochs no epoch reaches the "normal-looking" regime, so every epoch
is selected. Tried on a development split of training images (never the test split): 150 GAN
epochs, DCGAN's usual widths (64, 128), and boundary generators only (``regimes``); each gave a
lower AUROC than the default and none an F1 above 0 (``results/g2d_dev_mnist.jsonl``).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..detectors import BaseDeepDetector
from ..protocols import Preprocess
from ..registry import register

__all__ = ["IrregularityGenerator", "Critic", "DetectorNet", "gradient_penalty",
           "loss_drops", "select_generators", "G2D"]

REGIMES = ("far", "boundary", "normal-looking")


# ----------------------------------------------------------------- networks (Fig 3)

class IrregularityGenerator(nn.Module):
    """I: a DCGAN generator from ``z_dim`` noise to ``C x H x W`` images in [-1, 1]."""

    def __init__(self, out_channels: int = 1, size: tuple = (28, 28), z_dim: int = 100,
                 widths: tuple = (32, 64)):
        super().__init__()
        w0, w1 = widths
        self.size, self.z_dim = tuple(size), z_dim
        self.start = (math.ceil(size[0] / 4), math.ceil(size[1] / 4))
        self.net = nn.Sequential(
            nn.Linear(z_dim, w1 * self.start[0] * self.start[1]),
            nn.BatchNorm1d(w1 * self.start[0] * self.start[1]), nn.ReLU(),
            nn.Unflatten(1, (w1, *self.start)),
            nn.ConvTranspose2d(w1, w0, 4, 2, 1), nn.BatchNorm2d(w0), nn.ReLU(),
            nn.ConvTranspose2d(w0, out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        (h, w), (oh, ow) = self.size, out.shape[-2:]
        top, left = (oh - h) // 2, (ow - w) // 2
        return out[..., top:top + h, left:left + w]


class Critic(nn.Module):
    """C: two 4x4 stride-2 convolutions with leaky ReLU and a linear output (no sigmoid)."""

    def __init__(self, in_channels: int = 1, size: tuple = (28, 28), widths: tuple = (32, 64)):
        super().__init__()
        w0, w1 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w0, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w0, w1, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten())
        with torch.no_grad():
            n = self.features(torch.zeros(1, in_channels, *size)).shape[1]
        self.out = nn.Linear(n, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x)).squeeze(1)


class DetectorNet(nn.Module):
    """D: a small CNN with two outputs (normal, irregular) for a softmax (section 3.2)."""

    def __init__(self, in_channels: int = 1, widths: tuple = (32, 64), hidden: int = 128,
                 dropout: float = 0.3):
        super().__init__()
        w0, w1 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w0, 3, padding=1), nn.BatchNorm2d(w0), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w0, w1, 3, padding=1), nn.BatchNorm2d(w1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(w1 * 16, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``N x 2``; ``softmax(...)[:, 1]`` is the probability of "irregular"."""
        return self.head(self.features(x))


# ----------------------------------------------------------------- the WGAN-GP pieces

def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``E[(||grad_x C(x_hat)||_2 - 1)^2]`` at random interpolates ``x_hat`` of real and fake.

    The norm of each sample's gradient is taken over *all* its dimensions (C, H and W).
    """
    eps = torch.rand(len(real), 1, 1, 1, generator=generator).to(real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def loss_drops(losses, h: int = 5) -> np.ndarray:
    """``L(i) = L_I(i) - L_I(i + h)`` for every epoch ``i`` that has an ``i + h`` (section 3.3)."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) <= h:
        raise ValueError(f"{len(losses)} epochs are too few for h={h}: train at least {h + 1}")
    return losses[:-h] - losses[h:]


def select_generators(losses, h: int = 5, eps: tuple = (1.0, 0.1, 0.01),
                      k: int | None = None, regimes: tuple = REGIMES[:2]) -> dict:
    """Pick the epochs whose generators make irregular samples (section 3.3, Fig 4).

    Each drop ``L(i)`` (see :func:`loss_drops`) relative to the largest drop is assigned to the
    regime of ``eps = (eps1, eps2, eps3)`` nearest on a log scale: far-away noise, boundary
    irregularities, normal-looking samples. A WGAN's loss first *rises* while the critic learns
    to tell noise from data; epochs before the loss's peak count as far-away noise. Epochs of
    the first two are selected (``regimes`` names others); ``k`` keeps at most ``k`` of them,
    evenly spaced. Returns
    ``{"drops", "relative", "regimes", "selected"}`` with
    0-based epochs (the generator saved after epoch ``i``).
    """
    e1, e2, e3 = eps
    unknown = set(regimes) - set(REGIMES)
    if unknown or not regimes:
        raise ValueError(f"regimes={regimes}: choose among {REGIMES}")
    if not e1 > e2 > e3 > 0:
        raise ValueError(f"eps={eps} must satisfy eps1 > eps2 > eps3 > 0")
    drops = loss_drops(losses, h)
    scale = max(drops.max(), 0.0)
    rel = drops / scale if scale > 0 else np.zeros_like(drops)
    high, low = math.sqrt(e1 * e2), math.sqrt(e2 * e3)
    peak = int(np.argmax(losses))  # before it the critic is still learning: I is still noise
    labels = [REGIMES[0] if (i < peak or r >= high) else REGIMES[1] if r >= low else REGIMES[2]
              for i, r in enumerate(rel)]
    selected = [i for i, r in enumerate(labels) if r in regimes]
    if k is not None and len(selected) > k:
        selected = [selected[j] for j in np.linspace(0, len(selected) - 1, k).round().astype(int)]
    return {"drops": drops.tolist(), "relative": rel.tolist(), "regimes": labels,
            "selected": selected}


# ----------------------------------------------------------------- the detector

@register("g2d")
class G2D(BaseDeepDetector):
    """G2D: a WGAN-GP's early generators make irregular samples; a CNN learns normal vs those.

    See the module docstring for the method, the paper and our open choices.

    Args:
        gan_epochs: epochs of the WGAN-GP (one generator snapshot each).
        n_critic, gp_weight, gan_lr, gan_betas, gan_batch_size, z_dim, gan_widths: the
            WGAN-GP's settings (widths of the generator's and critic's convolutions).
        h, eps, k, regimes: the selection rule (:func:`select_generators`); ``regimes``
            names the regimes whose generators are used (default: far and boundary).
        samples_per_generator: ``m``; ``None``: as many in total as training normals.
        alpha: decision threshold on the probability of "irregular" (``predict``).
        momentum: D's SGD momentum (lr is ``lr``, 0.01; batch ``batch_size``, 32).
        Other arguments: see :class:`adlib.detectors.BaseDeepDetector` (they configure D).

    Attributes after ``fit``: ``gan_history_`` (per-epoch ``L_I``, critic and generator
    losses), ``snapshots_`` (the generator's weights after each epoch), ``selection_`` (the
    rule's output), ``irregular_`` (the generated training irregularities).
    """

    default_epochs = {None: 10, "mnist": 10, "ucsd_ped2": 5}
    quick_epochs = 2
    validation_mode = "min"
    notebook = "03_g2d"
    preprocess = Preprocess(scale="pm1")
    threshold_rule = "fixed"

    def __init__(self, gan_epochs: int = 30, n_critic: int = 5, gp_weight: float = 10.0,
                 gan_lr: float = 1e-4, gan_betas: tuple = (0.5, 0.999), gan_batch_size: int = 64,
                 z_dim: int = 100, gan_widths: tuple = (32, 64), h: int = 5,
                 eps: tuple = (1.0, 0.1, 0.01),
                 k: int | None = None, regimes: tuple = REGIMES[:2],
                 samples_per_generator: int | None = None,
                 alpha: float = 0.5, momentum: float = 0.9, quick_gan_epochs: int = 7, **kwargs):
        kwargs.setdefault("batch_size", 32)
        kwargs.setdefault("lr", 0.01)
        super().__init__(**kwargs)
        self.gan_epochs = gan_epochs
        self.n_critic = n_critic
        self.gp_weight = gp_weight
        self.gan_lr = gan_lr
        self.gan_betas = gan_betas
        self.gan_batch_size = gan_batch_size
        self.z_dim = z_dim
        self.gan_widths = gan_widths
        self.h = h
        self.eps = eps
        self.k = k
        self.regimes = regimes
        self.samples_per_generator = samples_per_generator
        self.alpha = alpha
        self.momentum = momentum
        self.quick_gan_epochs = quick_gan_epochs

    # -- parameters --------------------------------------------------------------------------
    def _gan_epochs(self) -> int:
        epochs = min(self.gan_epochs, self.quick_gan_epochs) if self.quick else self.gan_epochs
        if epochs <= self.h:
            raise ValueError(f"gan_epochs={epochs} must exceed h={self.h}: the selection rule "
                             "compares epoch i with epoch i + h")
        return epochs

    def _check_params(self) -> None:
        super()._check_params()
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha={self.alpha} must lie in (0, 1)")
        if self.n_critic < 1 or self.gan_batch_size < 2:
            raise ValueError("n_critic must be >= 1 and gan_batch_size >= 2")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k={self.k} must be a positive number of generators or None")
        self._gan_epochs()

    # -- hooks -------------------------------------------------------------------------------
    def build_network(self, input_shape):
        return DetectorNet(input_shape[0])

    def configure_optimizers(self, steps_per_epoch):
        return torch.optim.SGD(self.network_.parameters(), lr=self.lr,
                               momentum=self.momentum), None

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=self.generator_).to(self.device_)

    def train_gan(self, X: torch.Tensor) -> None:
        """Train I and C with WGAN-GP on normals ``X``; keep I after every epoch."""
        c, h, w = X.shape[1:]
        widths = tuple(self.gan_widths)
        self.gan_generator_ = IrregularityGenerator(c, (h, w), self.z_dim, widths).to(self.device_)
        self.critic_ = Critic(c, (h, w), widths).to(self.device_)
        opt_g = torch.optim.Adam(self.gan_generator_.parameters(), lr=self.gan_lr,
                                 betas=tuple(self.gan_betas))
        opt_c = torch.optim.Adam(self.critic_.parameters(), lr=self.gan_lr,
                                 betas=tuple(self.gan_betas))
        self.snapshots_, self.gan_history_ = [], []
        epochs = self._gan_epochs()
        bar = tqdm(range(epochs), desc="G2D WGAN-GP", unit="epoch", disable=not self.verbose,
                   leave=False)
        for epoch in bar:
            sums = {"L_I": 0.0, "critic_loss": 0.0, "gp": 0.0}
            g_losses, steps = [], 0
            order = torch.randperm(len(X), generator=self.generator_)
            for start in range(0, len(X) - 1, self.gan_batch_size):
                real = X[order[start:start + self.gan_batch_size]].to(self.device_)
                if len(real) < 2:
                    continue
                fake = self.gan_generator_(self._noise(len(real))).detach()
                wasserstein = self.critic_(real).mean() - self.critic_(fake).mean()
                gp = gradient_penalty(self.critic_, real, fake, self.generator_)
                loss_c = -wasserstein + self.gp_weight * gp
                sums["critic_loss"] += self.optimizer_step(opt_c, loss_c, epoch, "critic loss")
                sums["L_I"] += float(wasserstein.detach())
                sums["gp"] += float(gp.detach())
                steps += 1
                if steps % self.n_critic == 0:
                    loss_g = -self.critic_(self.gan_generator_(self._noise(len(real)))).mean()
                    opt_g.zero_grad(set_to_none=True)
                    loss_g.backward()
                    opt_g.step()
                    g_losses.append(float(loss_g.detach()))
            row = {"epoch": epoch, **{k: v / max(steps, 1) for k, v in sums.items()},
                   "generator_loss": float(np.mean(g_losses)) if g_losses else float("nan")}
            self.gan_history_.append(row)
            self.snapshots_.append(copy.deepcopy(self.gan_generator_.state_dict()))
            bar.set_postfix(L_I=f"{row['L_I']:.3f}")

    @torch.no_grad()
    def generate(self, epoch: int, n: int) -> torch.Tensor:
        """``n`` samples of the generator saved after ``epoch`` (0-based), in eval mode."""
        net = copy.deepcopy(self.gan_generator_)
        net.load_state_dict(self.snapshots_[epoch])
        net.eval()
        return torch.cat([net(self._noise(min(256, n - s))).cpu() for s in range(0, n, 256)])

    def setup(self, X_train, X_val):
        """Train the WGAN, select generators, draw the training and validation irregularities."""
        self.train_gan(X_train)
        self.selection_ = select_generators([r["L_I"] for r in self.gan_history_], self.h,
                                            tuple(self.eps), self.k, tuple(self.regimes))
        chosen = self.selection_["selected"]
        if not chosen:
            raise RuntimeError("the selection rule picked no generator: widen eps or train "
                               "more GAN epochs")
        m = self.samples_per_generator or math.ceil(len(X_train) / len(chosen))
        self.irregular_ = torch.cat([self.generate(e, m) for e in chosen])
        n_val = len(X_val) if X_val is not None else 0
        self.val_irregular_ = (torch.cat([self.generate(e, math.ceil(n_val / len(chosen)))
                                          for e in chosen])[:n_val] if n_val else None)

    def training_loss(self, batch):
        """NLL of normals (0) and as many irregular samples (1) drawn from the pool (eq. 1)."""
        idx = torch.randint(len(self.irregular_), (len(batch),), generator=self.generator_)
        x = torch.cat([batch, self.irregular_[idx].to(batch.device)])
        y = torch.cat([torch.zeros(len(batch)), torch.ones(len(batch))]).long().to(batch.device)
        return F.nll_loss(F.log_softmax(self.network_(x), dim=1), y)

    def batch_scores(self, batch):
        """Probability of "irregular" (softmax output 1)."""
        return F.softmax(self.network_(batch), dim=1)[:, 1]

    def validation_metric(self, X_val):
        """NLL on held-out normals and held-out irregular samples (no real anomaly)."""
        x = torch.cat([X_val.to(self.device_), self.val_irregular_.to(self.device_)])
        y = torch.cat([torch.zeros(len(X_val)), torch.ones(len(self.val_irregular_))]).long()
        logits = torch.cat([self.network_(b) for b in x.split(256)])
        return float(F.nll_loss(F.log_softmax(logits, 1), y.to(logits.device)))

    def fixed_threshold(self) -> float:
        """``alpha`` (section 3.4: 0.5 on the probability of "irregular"), not a quantile."""
        return float(self.alpha)
