"""G2D: Generate to Detect anomalies with a half-trained WGAN.

Paper: M. Pourreza, B. Mohammadi, M. Khaki, S. Bouindour, H. Snoussi, M. Sabokrou, "G2D:
Generate to Detect Anomaly", WACV 2021. Notebook: ``notebooks/03_g2d.py``.

Idea (section 3): a GAN trained on normal data passes, epoch by epoch, through generators that
make far-away noise, then irregular samples near the normal class's boundary, then normal-looking
samples. Keep the generator of every epoch, pick the early and boundary ones from the generator's
loss curve (section 3.3), let each draw ``m`` samples, and train a classifier D on normal data
(label 0) against these irregularities (label 1). D's probability of "irregular" is the anomaly
score; ``alpha = 0.5`` is the decision threshold (section 3.4).

Training (section 4.1), as the authors' code runs it (``masoudpz/G2D_generate_to_detect_anomaly``;
``REFERENCES.md``, "G2D"; revision 2):

* the irregularity generator I and the critic C form a WGAN with gradient penalty (Gulrajani et
  al. 2017): lambda 10, five critic steps per generator iteration, each on a fresh batch of 64
  normals, Adam (lr 1e-4, betas 0.5 and 0.999). Inputs are 32 x 32 in [-1, 1] (MNIST is
  resized from 28);
* their networks: a DCGAN generator of 1024, 512 and 256 channels and a critic of 256, 512 and
  1024 with instance normalisation (``gan_width = 256``). The budget is counted as they count
  it, in **generator iterations** (40,000 in their code; the paper's "epoch" on its loss plot
  is one of them); the generator is kept every ``snapshot_every`` iterations;
* the curve the selection reads is the one they plot: the generator loss ``g(t) = -mean
  C(G(z))``, lifted to ``max(g) - g(t)`` and averaged over the 10 iterations before ``t``
  (:func:`generator_curve`);
* the penalty is taken on each sample's gradient norm over *all* its dimensions
  (``grad.flatten(1).norm(dim=1)``, Gulrajani et al.'s definition); the authors' copy takes the
  norm over the channel axis only (``gradients.norm(2, dim=1)``), which penalises each pixel's
  channel vector instead. We keep the definition (a named deviation; exercise 3 tries theirs);
* D: SGD (lr 0.01, momentum 0.9), batch 32 normals with 32 irregular samples, negative
  log-likelihood of a two-way softmax (eq. 1).

The selection rule (section 3.3): ``L(i) = curve(i) - curve(i + h)``, ``h = 5`` iterations,
falls through three regimes ``eps1 >> eps2 >> eps3`` (Fig 4). The paper's case formula did not
survive in its text, and the authors' code has no selection; ours: each snapshot's drop ``L(i)``
is divided by the largest drop of the run and assigned to the regime whose ``eps`` is nearest on
a log scale (``eps = (1, 0.1, 0.01)``: thresholds 0.316 and 0.0316); snapshots before the
curve's peak (the critic still learning, I still noise) count as far. Snapshots of the first
two regimes (far-away noise, boundary irregularities) are selected; the last (normal-looking
samples) is not. ``k`` caps their number (evenly spaced); each draws ``m`` samples (default: as
many in total as there are training normals). The relative scale makes the rule independent
of the loss's units, which change with the critic's width.

Choices the paper leaves open, and what we chose (named in the notebook too): D (Fig 3 is not
in the text): two 3x3 convolutions (32, 64) with batch normalisation and max pooling, a 128-unit
dense layer with dropout 0.3, two outputs; it keeps the epoch with the lowest NLL on held-out
normals and held-out irregular samples (no real anomaly).

Budget on our machines (named on every row by its parameters): the authors' 40,000 iterations
at width 256 is a GPU budget. The CPU default is ``gan_width = 32`` (128, 64, 32 channels) and
1,000 iterations with a snapshot every 25 (about 0.35 s a critic step with its penalty on one
of our CPU cores, so 1,000 iterations take 10-30 minutes); ``--set gan_width=256
gan_iterations=40000 snapshot_every=500`` runs theirs (a GPU budget).

F1: this lineage (ALOCC, GPND, G2D) counts the **normal** class as positive
(:mod:`adlib.metrics`); every row stores ``f1_normal`` beside our anomaly-positive ``f1``.

Revision 1 (rows in ``results/g2d_mnist_rev1.jsonl``): half-width networks at 28 x 28, 30
passes over the data with one snapshot each, the selection on the critic's per-pass
Wasserstein estimate: mean AUROC 87.1% over ten digits, anomaly-positive F1 near 0 at
``alpha = 0.5`` (D separated generated from real images, and every real digit looked real).
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
           "generator_curve", "loss_drops", "select_generators", "G2D"]

REGIMES = ("far", "boundary", "normal-looking")


# ----------------------------------------------------------------- networks (Fig 3)

class IrregularityGenerator(nn.Module):
    """I: the authors' DCGAN generator, ``z (z_dim) -> 4w x s/8 -> 2w x s/4 -> w x s/2 -> C x s``
    (batch norm and ReLU, tanh at the end), centre-cropped to the image side.

    ``width`` ``w`` = 256 is theirs (1024, 512 and 256 channels at 32 x 32); the first layer is a
    linear map to ``4w x s/8 x s/8``, which is their 4x4 transposed convolution of a 1 x 1 noise
    map written for any side.
    """

    def __init__(self, out_channels: int = 1, size: tuple = (32, 32), z_dim: int = 100,
                 width: int = 256):
        super().__init__()
        w = int(width)
        self.size, self.z_dim = tuple(size), z_dim
        self.start = (math.ceil(size[0] / 8), math.ceil(size[1] / 8))
        self.net = nn.Sequential(
            nn.Linear(z_dim, 4 * w * self.start[0] * self.start[1]),
            nn.Unflatten(1, (4 * w, *self.start)), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        (h, w), (oh, ow) = self.size, out.shape[-2:]
        top, left = (oh - h) // 2, (ow - w) // 2
        return out[..., top:top + h, left:left + w]


class Critic(nn.Module):
    """C: the authors' critic, three 4x4 stride-2 convolutions (``w``, ``2w``, ``4w``; theirs
    256, 512, 1024) with instance normalisation (affine) and leaky ReLU 0.2, and a linear
    output (their last 4x4 convolution over the 4 x 4 map, for any side); no sigmoid."""

    def __init__(self, in_channels: int = 1, size: tuple = (32, 32), width: int = 256):
        super().__init__()
        if min(size) < 16:
            raise ValueError(f"images of {size[0]} x {size[1]}: the critic's three stride-2 "
                             "convolutions with instance norm need sides of at least 16; "
                             "resize the images (G2D's preprocessing gives 32 x 32)")
        layers, c = [], in_channels
        for out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c, out, 4, 2, 1), nn.InstanceNorm2d(out, affine=True),
                       nn.LeakyReLU(0.2)]
            c = out
        self.features = nn.Sequential(*layers, nn.Flatten())
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


def generator_curve(generator_losses, window: int = 10) -> np.ndarray:
    """The curve the authors plot and read (their ``G_chart``): ``max(g) - g(t)`` for the
    generator loss ``g(t) = -mean C(G(z))`` of every generator iteration ``t``, averaged over the
    ``window`` iterations before ``t`` (their trailing moving average; NaN for the first
    ``window``). A fall of this curve is a rise of the generator's loss."""
    g = np.asarray(generator_losses, dtype=float)
    if window < 1:
        raise ValueError(f"window={window} must be >= 1")
    lifted = np.max(g) - g if len(g) else g
    out = np.full(len(g), np.nan)
    sums = np.r_[0.0, np.cumsum(lifted)]
    t = np.arange(window, len(g))
    out[t] = (sums[t] - sums[t - window]) / window
    return out


def loss_drops(losses, h: int = 5, at=None) -> np.ndarray:
    """``L(i) = curve(i) - curve(i + h)`` (section 3.3) at the iterations ``at`` (default:
    every ``i`` that has an ``i + h``)."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) <= h:
        raise ValueError(f"{len(losses)} points are too few for h={h}: train at least {h + 1}")
    at = np.arange(len(losses) - h) if at is None else np.asarray(at, dtype=int)
    if len(at) and (at.min() < 0 or at.max() + h >= len(losses)):
        raise ValueError(f"every iteration in `at` needs an iteration h={h} later")
    return losses[at] - losses[at + h]


def select_generators(losses, h: int = 5, eps: tuple = (1.0, 0.1, 0.01),
                      k: int | None = None, regimes: tuple = REGIMES[:2], at=None,
                      ordered: bool = False) -> dict:
    """Pick the snapshots whose generators make irregular samples (section 3.3, Fig 4).

    ``losses`` is the curve the rule reads (per iteration: :func:`generator_curve`; NaN where it
    is not yet defined), ``at`` the iterations of the snapshots (default: every point that has
    a point ``h`` later). Each drop ``L(i)`` (:func:`loss_drops`) relative to the largest drop
    is assigned to the regime of ``eps = (eps1, eps2, eps3)`` nearest on a log scale: far-away
    noise, boundary irregularities, normal-looking samples. Snapshots before the curve's peak
    (the critic still learning, I still noise) or where it is undefined count as far-away
    noise. ``ordered=True`` keeps the regimes in time order, as Fig 4 draws them: a snapshot
    takes the latest regime of any snapshot up to it, so the first "normal-looking" one ends
    the selection. Snapshots of the first two regimes are selected (``regimes`` names
    others); ``k`` keeps at most ``k`` of them, evenly spaced. Returns ``{"iterations",
    "drops", "relative", "regimes", "selected"}``; ``selected`` indexes ``at`` (the snapshots).
    """
    e1, e2, e3 = eps
    unknown = set(regimes) - set(REGIMES)
    if unknown or not regimes:
        raise ValueError(f"regimes={regimes}: choose among {REGIMES}")
    if not e1 > e2 > e3 > 0:
        raise ValueError(f"eps={eps} must satisfy eps1 > eps2 > eps3 > 0")
    curve = np.asarray(losses, dtype=float)
    at = np.arange(len(curve) - h) if at is None else np.asarray(at, dtype=int)
    drops = loss_drops(curve, h, at)
    finite = np.isfinite(drops)
    scale = max(drops[finite].max(), 0.0) if finite.any() else 0.0
    rel = np.where(finite, drops, 0.0) / scale if scale > 0 else np.zeros_like(drops)
    high, low = math.sqrt(e1 * e2), math.sqrt(e2 * e3)
    peak = int(np.nanargmax(curve)) if np.isfinite(curve).any() else len(curve)
    labels = [REGIMES[0] if (i < peak or not ok or r >= high) else
              REGIMES[1] if r >= low else REGIMES[2]
              for i, ok, r in zip(at, finite, rel)]
    if ordered and labels:
        order = np.maximum.accumulate([REGIMES.index(r) for r in labels])
        labels = [REGIMES[j] for j in order]
    selected = [j for j, r in enumerate(labels) if r in regimes]
    if k is not None and len(selected) > k:
        selected = [selected[j] for j in np.linspace(0, len(selected) - 1, k).round().astype(int)]
    return {"iterations": at.tolist(), "drops": np.where(finite, drops, None).tolist(),
            "relative": rel.tolist(), "regimes": labels, "selected": selected}


# ----------------------------------------------------------------- the detector

@register("g2d")
class G2D(BaseDeepDetector):
    """G2D: a WGAN-GP's early generators make irregular samples; a CNN learns normal vs those.

    See the module docstring for the method, the paper and our open choices.

    Args:
        gan_iterations: the WGAN-GP's budget in generator iterations (the authors' code:
            40,000; each takes ``n_critic`` critic steps on fresh batches).
        snapshot_every: keep the generator's weights every this many iterations (the
            candidates of the selection rule).
        n_critic, gp_weight, gan_lr, gan_betas, gan_batch_size, z_dim: the WGAN-GP's settings.
        gan_width: ``w`` of the generator (``4w, 2w, w`` channels) and critic (``w, 2w, 4w``);
            the authors' 256 gives their 1024 / 512 / 256.
        window, h, eps, k, regimes: the selection rule on the generator's loss curve
            (:func:`generator_curve`, :func:`select_generators`; ``window`` and ``h`` count
            iterations); ``regimes`` names the regimes whose generators are used (default:
            far and boundary).
        ordered_regimes: keep the regimes in time order (Fig 4): the first snapshot the rule
            calls normal-looking ends the selection. ``False`` (default): each snapshot is
            labelled by its own drop, and on a short noisy curve the regimes come out of
            order (digit 0, 500 iterations, width 16: ``bffbnnnbbbbbbbbbnfb``; development
            AUROC 81.8 as labelled, 83.4 ordered, one seed).
        samples_per_generator: ``m``; ``None``: as many in total as training normals.
        augment_normals: the share of generated samples added to D's *normal* class, drawn from
            the snapshots of the last regime (normal-looking samples; the last snapshot when
            the rule labels none so): every batch of ``B`` normals is joined by
            ``round(augment_normals * B)`` of them, and the irregular half grows to match.
            Section 3.1: samples of the last regime are "appropriate for augmenting the target
            class data"; the paper does not say that its D was trained so. 0 (default): no
            augmentation. Meant to take away D's shortcut of telling generated from real
            images; on digit 0's development split (500 iterations, width 16, seed 0) 0.5
            lowered the AUROC from 81.8 to 40.0 (``results/g2d_dev_mnist.jsonl``).
        alpha: decision threshold on the probability of "irregular" (``predict``; the
            paper's 0.5). ``None``: the clean alternative, the ``1 - contamination`` quantile
            of the held-out normals' scores (no anomaly, real or generated, sets it; the rows
            say which by their ``threshold_source``).
        momentum: D's SGD momentum (lr is ``lr``, 0.01; batch ``batch_size``, 32).
        quick_gan_iterations: the budget in quick mode.
        Other arguments: see :class:`adlib.detectors.BaseDeepDetector` (they configure D).

    Attributes after ``fit``: ``generator_losses_`` (``-mean C(G(z))`` of every iteration),
    ``gan_history_`` (per snapshot: iteration, the curve, the generator loss, the critic's
    Wasserstein estimate and penalty averaged since the previous snapshot), ``snapshots_``
    (the generator's weights), ``selection_`` (the rule's output), ``irregular_`` (the
    generated training irregularities).
    """

    default_epochs = {None: 10, "mnist": 10, "ucsd_ped2": 5}
    quick_epochs = 2
    validation_mode = "min"
    notebook = "03_g2d"
    preprocess = Preprocess(scale="pm1", size=32)
    #: 2: the authors' WGAN-GP (32 x 32 input, DCGAN widths as a parameter, instance norm in
    #: the critic), its budget in generator iterations, the selection on their smoothed
    #: generator-loss curve (revision 1: half-width networks at the native size, 30 passes
    #: over the data, the selection on the critic's per-pass Wasserstein estimate)
    revision = 2

    def __init__(self, gan_iterations: int = 1000, snapshot_every: int = 25, n_critic: int = 5,
                 gp_weight: float = 10.0, gan_lr: float = 1e-4,
                 gan_betas: tuple = (0.5, 0.999), gan_batch_size: int = 64, z_dim: int = 100,
                 gan_width: int = 32, window: int = 10, h: int = 5,
                 eps: tuple = (1.0, 0.1, 0.01), k: int | None = None,
                 regimes: tuple = REGIMES[:2], ordered_regimes: bool = False,
                 samples_per_generator: int | None = None,
                 augment_normals: float = 0.0, alpha: float | None = 0.5,
                 momentum: float = 0.9, quick_gan_iterations: int = 60,
                 **kwargs):
        kwargs.setdefault("batch_size", 32)
        kwargs.setdefault("lr", 0.01)
        super().__init__(**kwargs)
        self.gan_iterations = gan_iterations
        self.snapshot_every = snapshot_every
        self.n_critic = n_critic
        self.gp_weight = gp_weight
        self.gan_lr = gan_lr
        self.gan_betas = gan_betas
        self.gan_batch_size = gan_batch_size
        self.z_dim = z_dim
        self.gan_width = gan_width
        self.window = window
        self.h = h
        self.eps = eps
        self.k = k
        self.regimes = regimes
        self.ordered_regimes = ordered_regimes
        self.samples_per_generator = samples_per_generator
        self.augment_normals = augment_normals
        self.alpha = alpha
        self.momentum = momentum
        self.quick_gan_iterations = quick_gan_iterations

    # -- parameters --------------------------------------------------------------------------
    def _budget(self) -> tuple[int, int]:
        """Generator iterations and the snapshot interval (quick mode: at most
        ``quick_gan_iterations``, with ten or more snapshots)."""
        iterations = (min(self.gan_iterations, self.quick_gan_iterations) if self.quick
                      else self.gan_iterations)
        every = (min(self.snapshot_every, max(1, iterations // 10)) if self.quick
                 else self.snapshot_every)
        return int(iterations), int(every)

    def _snapshot_iterations(self) -> np.ndarray:
        """The iterations (0-based) after which the generator is kept."""
        iterations, every = self._budget()
        return np.arange(every - 1, iterations, every)

    def _check_params(self) -> None:
        super()._check_params()
        if self.alpha is not None and not 0 < self.alpha < 1:
            raise ValueError(f"alpha={self.alpha} must lie in (0, 1), or be None for a "
                             "threshold on the held-out normals")
        if self.n_critic < 1 or self.gan_batch_size < 2:
            raise ValueError("n_critic must be >= 1 and gan_batch_size >= 2")
        if not 0 <= self.augment_normals <= 1:
            raise ValueError(f"augment_normals={self.augment_normals} must lie in [0, 1] (a "
                             "share of each batch's normals)")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k={self.k} must be a positive number of generators or None")
        if self.snapshot_every < 1 or self.window < 1 or self.h < 1 or self.gan_width < 1:
            raise ValueError("snapshot_every, window, h and gan_width must be >= 1")
        iterations, _ = self._budget()
        usable = self._snapshot_iterations()
        if (usable + self.h < iterations).sum() < 2:
            raise ValueError(f"gan_iterations={iterations} with snapshot_every="
                             f"{self.snapshot_every} leaves fewer than two snapshots with an "
                             f"iteration h={self.h} after them: train longer or snapshot "
                             "more often")

    @property
    def threshold_rule(self) -> str:
        """``"fixed"`` (``alpha``, section 3.4) or, with ``alpha=None``, ``"quantile"`` of the
        held-out normals' scores (:class:`adlib.detectors.BaseDeepDetector`)."""
        return "quantile" if self.alpha is None else "fixed"

    # -- hooks -------------------------------------------------------------------------------
    def build_network(self, input_shape):
        return DetectorNet(input_shape[0])

    def configure_optimizers(self, steps_per_epoch):
        return torch.optim.SGD(self.network_.parameters(), lr=self.lr,
                               momentum=self.momentum), None

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=self.generator_).to(self.device_)

    def _real_batches(self, X: torch.Tensor):
        """Endless batches of ``gan_batch_size`` normals, reshuffled at every pass (the
        authors' infinite loader; a last short batch is dropped)."""
        size = min(self.gan_batch_size, len(X))
        while True:
            order = torch.randperm(len(X), generator=self.generator_)
            for start in range(0, len(X) - size + 1, size):
                yield X[order[start:start + size]].to(self.device_)

    def _critic_step(self, real: torch.Tensor, opt_c) -> tuple[float, float]:
        """One WGAN-GP critic step; returns the Wasserstein estimate and the penalty."""
        fake = self.gan_generator_(self._noise(len(real))).detach()
        wasserstein = self.critic_(real).mean() - self.critic_(fake).mean()
        gp = gradient_penalty(self.critic_, real, fake, self.generator_)
        opt_c.zero_grad(set_to_none=True)
        (-wasserstein + self.gp_weight * gp).backward()
        opt_c.step()
        return float(wasserstein.detach()), float(gp.detach())

    def _generator_step(self, opt_g) -> float:
        """One generator step on ``-mean C(G(z))``; returns that loss."""
        for p in self.critic_.parameters():
            p.requires_grad_(False)
        loss_g = -self.critic_(self.gan_generator_(self._noise(self.gan_batch_size))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in self.critic_.parameters():
            p.requires_grad_(True)
        value = float(loss_g.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"the generator's loss became {value}: lower gan_lr")
        return value

    def train_gan(self, X: torch.Tensor) -> None:
        """Train I and C with WGAN-GP on normals ``X`` for ``gan_iterations`` generator
        iterations of ``n_critic`` critic steps; keep I every ``snapshot_every`` iterations."""
        c, h, w = X.shape[1:]
        self.gan_generator_ = IrregularityGenerator(c, (h, w), self.z_dim,
                                                    self.gan_width).to(self.device_)
        self.critic_ = Critic(c, (h, w), self.gan_width).to(self.device_)
        opt_g = torch.optim.Adam(self.gan_generator_.parameters(), lr=self.gan_lr,
                                 betas=tuple(self.gan_betas))
        opt_c = torch.optim.Adam(self.critic_.parameters(), lr=self.gan_lr,
                                 betas=tuple(self.gan_betas))
        iterations, every = self._budget()
        batches = self._real_batches(X)
        losses, since = [], {"wasserstein": [], "gp": []}
        self.snapshots_, self.gan_history_ = [], []
        bar = tqdm(range(iterations), desc="G2D WGAN-GP", unit="it", disable=not self.verbose,
                   leave=False)
        for it in bar:
            for _ in range(self.n_critic):
                wasserstein, gp = self._critic_step(next(batches), opt_c)
                since["wasserstein"].append(wasserstein)
                since["gp"].append(gp)
            losses.append(self._generator_step(opt_g))
            if (it + 1) % every == 0:
                self.snapshots_.append({k: v.detach().cpu().clone()
                                       for k, v in self.gan_generator_.state_dict().items()})
                self.gan_history_.append({
                    "iteration": it, "generator_loss": float(np.mean(losses[-every:])),
                    **{k: float(np.mean(v)) for k, v in since.items()}})
                since = {"wasserstein": [], "gp": []}
                bar.set_postfix(g=f"{losses[-1]:.3f}")
        self.generator_losses_ = np.asarray(losses)
        curve = generator_curve(self.generator_losses_, self.window)
        for row in self.gan_history_:
            value = curve[row["iteration"]]
            row["curve"] = float(value) if np.isfinite(value) else None

    @torch.no_grad()
    def generate(self, snapshot: int, n: int) -> torch.Tensor:
        """``n`` samples of the generator of snapshot ``snapshot`` (0-based; it was kept after
        iteration ``gan_history_[snapshot]["iteration"]``), in eval mode."""
        net = copy.deepcopy(self.gan_generator_)
        net.load_state_dict(self.snapshots_[snapshot])
        net.eval()
        return torch.cat([net(self._noise(min(256, n - s))).cpu() for s in range(0, n, 256)])

    def setup(self, X_train, X_val):
        """Train the WGAN, select generators, draw the training and validation irregularities
        (and, with ``augment_normals``, the normal-looking samples added to the normals)."""
        self.train_gan(X_train)
        iterations, _ = self._budget()
        at = [r["iteration"] for r in self.gan_history_ if r["iteration"] + self.h < iterations]
        self.selection_ = select_generators(
            generator_curve(self.generator_losses_, self.window), self.h, tuple(self.eps),
            self.k, tuple(self.regimes), at=at, ordered=self.ordered_regimes)
        chosen = self.selection_["selected"]
        if not chosen:
            raise RuntimeError("the selection rule picked no generator: widen eps or train "
                               "longer")
        m = self.samples_per_generator or math.ceil(len(X_train) / len(chosen))
        self.irregular_ = torch.cat([self.generate(j, m) for j in chosen])
        n_val = len(X_val) if X_val is not None else 0
        self.val_irregular_ = self._draw(chosen, n_val) if n_val else None
        self.augment_snapshots_, self.augmented_ = self._normal_looking(len(X_train))

    def _normal_looking(self, n_train: int) -> tuple[list, torch.Tensor | None]:
        """The snapshots of the last regime (or the last snapshot when none is labelled so)
        and ``ceil(augment_normals * n_train)`` of their samples; ``([], None)`` without
        augmentation."""
        if not self.augment_normals:
            return [], None
        regimes = self.selection_["regimes"]
        late = [j for j, r in enumerate(regimes) if r == REGIMES[2]] or [len(self.snapshots_) - 1]
        return late, self._draw(late, math.ceil(self.augment_normals * n_train))

    def _draw(self, snapshots: list, n: int) -> torch.Tensor:
        """``n`` samples shared evenly among the generators of ``snapshots``."""
        per = math.ceil(n / len(snapshots))
        return torch.cat([self.generate(j, per) for j in snapshots])[:n]

    def training_loss(self, batch):
        """NLL of normals (0) and as many irregular samples (1) drawn from the pool (eq. 1);
        with ``augment_normals``, normal-looking samples join the normals (0) and the
        irregular half grows to match."""
        normals = batch
        if self.augmented_ is not None:
            a = round(self.augment_normals * len(batch))
            pick = torch.randint(len(self.augmented_), (a,), generator=self.generator_)
            normals = torch.cat([batch, self.augmented_[pick].to(batch.device)])
        n = len(normals)
        idx = torch.randint(len(self.irregular_), (n,), generator=self.generator_)
        x = torch.cat([normals, self.irregular_[idx].to(batch.device)])
        y = torch.cat([torch.zeros(n), torch.ones(n)]).long().to(batch.device)
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
