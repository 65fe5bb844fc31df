"""ALPS: Adversarially Learned Perturbations of the latent space of an autoencoder.

Paper: M. Khazaie, "Solving Challenges in Deep Unsupervised Methods for Anomaly Detection",
MSc thesis, Western University, 2022, chapter 3. Notebook: ``notebooks/05_alps.py``.

Idea: an autoencoder trained on normal images also reconstructs many anomalies well. ALPS adds a
second player, the Adversarial Distorter (AD), a convolutional encoder that looks at the same
input and outputs a perturbation of the latent vector. The two play the game of eq. 3.2,

    min_{Enc, Dec} max_{AD}  E_x  1/m || x - Dec(Enc(x) + AD(x)) ||^2,

so the autoencoder learns to undo hard latent perturbations -- but only for the normal images it
is trained on; an anomaly's perturbed latent is decoded towards a normal image and reconstructed
with a larger error (section 3.3). Two dampers keep the distorter from dominating: it is updated
only every few epochs, and the autoencoder's reconstruction term weighs more (section 3.3.1).
The same detector with ``mode="noise"`` (random latent perturbations) or ``mode="vanilla"`` (none)
gives the comparison models of Table 3.3 with the same architecture and budget.

Scores (section 3.3.3): the plain reconstruction MSE, the perturbed reconstruction MSE (latent
plus the distorter's perturbation), and the mean of the two raw losses, each min-max scaled to
[0, 1]; higher = more anomalous. ``score(X)`` returns the selected one, ``score_all(X)`` all three.

Choices the thesis leaves open, and what we chose (named in the notebook too):

* layers: four 3x3 stride-2 encoder convolutions of 16, 32, 64 and ``latent_dim`` = 16
  channels, each but the last with batch normalisation and a leaky ReLU, then global average
  pooling (of a 2x2 map for MNIST, so pooling loses little); the decoder's dense layer starts
  at 64 x ceil(H/4) x ceil(W/4), followed by six transposed convolutions (64, 32, 32, 16, 16
  channels and the image's; the 2nd and 4th 4x4 stride-2 upsamplings, the others 3x3 stride 1)
  and a sigmoid; when the side is not a multiple of 4 the output is centre-cropped to the input
  size, so 16x16, 28x28 and 32x32 inputs (and any side >= 4) work. The distorter is a second
  encoder of the same layout. The widths are small so that a full benchmark fits a CPU;
* the lab's capacity and optimiser (its closest public code, ``jewelltaylor/OLED``; see
  ``../shared/REFERENCES.md``) are parameters: ``--variant lab --set widths=64,96,128
  kernel_size=5 latent_dim=64 lr=5e-4 betas=0.5,0.9``. It costs about 7 times our default
  per step on a CPU (13x the parameters: 2.8M against 0.21M), so a full 10-class grid is a
  GPU job, not run yet. The lab's inputs in [-1, 1] with a tanh output are our
  [0, 1] with a sigmoid in another coordinate: ``tanh(a) = 2 sigmoid(2a) - 1``, so the last
  layer absorbs the change and the MSE is 4 times ours, a factor Adam ignores; only the first
  convolution's zero padding differs (black here, mid-grey there). We keep [0, 1];
* the latent size (the thesis: it "should vary to adequately represent each dataset", no value
  given) was chosen once for MNIST, on a development split of *training* images only
  (:func:`adlib.protocols.development_split`: held-out normals against 2000 training images of
  the other digits; ``python -m adlib bench alps --dev``), for normal digit 8 with 15 epochs:
  development AUROC of the plain score 88.2 (8), 90.1 (16), 83.3 (32), 84.1 (64). 16 it is,
  for every dataset unless set. In fairness: development runs before that split existed had
  printed test AUROCs for 16, 32 and 64 on digit 8, which rank them the same way;
* the perturbation is the distorter's raw output, unbounded, as in eq. 3.2: in our runs
  (MNIST digit 8, all 5.4k training normals, 15 epochs, latent size 64) the game did not
  diverge; the perturbation's norm grew from 16 to 70 together with the latent's, staying 0.9
  to 1.7 times as large as the latent. ``perturbation_bound=b``
  bounds it as ``AD(x) = b * rms(Enc(x)) * tanh(a(x))``, with ``a`` the distorter's output and
  ``rms`` the root mean square of each image's latent (without gradient): relative to the
  latent, because an absolute bound is escaped by an encoder that scales its latent up;
* "a weighted loss ... giving larger values to the reconstruction loss for the autoencoder": a
  constant factor on one player's own loss changes nothing under Adam, which is invariant to
  the loss's scale, so we read the weight as that of the plain reconstruction term beside the
  perturbed one: the autoencoder minimises ``MSE(x, Dec(Enc(x) + AD(x))) + recon_weight *
  MSE(x, Dec(Enc(x)))`` (``recon_weight=1``; 0 gives eq. 3.2 exactly), the distorter maximises
  the first term alone. The distorter is updated in epochs 0, k, 2k, ... (``distorter_every`` = k
  = 2; the thesis says "every couple of epochs"), one distorter step before each autoencoder step
  on the same batch, both with Adam at ``lr``;
* ``mode="noise"`` perturbs the latent by ``noise_std * rms(Enc(x)) * e`` with ``e`` standard
  normal, so the noise is about ``noise_std`` (1) times as large as the latent, like the
  learned perturbations in our runs (the thesis does not describe its noise); at scoring time
  the noise comes from a generator seeded afresh on each call, so scores are repeatable;
* the epoch is selected by the mean plain reconstruction MSE of held-out normal images (the
  protocol's validation split); the thesis' validation set of "150 samples from inliers and 150
  samples from the training set" is ambiguous and may hold test anomalies;
* min-max statistics come from the held-out normals (the training normals when no validation
  split is given), never from the test batch; test scores may therefore leave [0, 1]. The
  thesis reports the best of the three scores on test data; we select one without labels:
  ``anomaly_score="auto"`` takes the score with the best AUROC between the held-out normals and
  made anomalies of them (chapter 4's augmentations, :func:`adlib.methods.adacl.make_anomalies`).
  Min-max scaling is monotone, so it changes no AUROC; it only puts the scores on one scale.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..detectors import BaseDeepDetector, as_tensor
from ..metrics import auroc
from ..registry import register
from ..training import check_finite
from .adacl import make_anomalies

__all__ = ["SCORES", "MODES", "ConvEncoder", "ConvDecoder", "latent_rms", "ALPSNet", "ALPS"]

#: The three anomaly scores of section 3.3.3, in this order everywhere.
SCORES = ("plain", "perturbed", "average")
#: Where the latent perturbation comes from: the distorter, random noise, nowhere (Table 3.3).
MODES = ("alps", "noise", "vanilla")


# ----------------------------------------------------------------- building blocks

class ConvEncoder(nn.Module):
    """Four convolutions and a global average pooling: ``C x H x W`` images to ``latent_dim``.

    Four ``kernel_size`` (odd; 3 by default, 5 in the lab's code) stride-2 convolutions (the
    first three with batch normalisation and a leaky ReLU, the last linear, to ``latent_dim``
    channels), averaged over space. Each halves the side (rounding up), so any side works. Used
    for the autoencoder's encoder and for the Adversarial Distorter (section 3.3.1).
    """

    def __init__(self, in_channels: int = 1, latent_dim: int = 16, widths: tuple = (16, 32, 64),
                 kernel_size: int = 3):
        super().__init__()
        w0, w1, w2 = widths
        k, p = kernel_size, kernel_size // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w0, k, 2, p), nn.BatchNorm2d(w0), nn.LeakyReLU(0.1),
            nn.Conv2d(w0, w1, k, 2, p), nn.BatchNorm2d(w1), nn.LeakyReLU(0.1),
            nn.Conv2d(w1, w2, k, 2, p), nn.BatchNorm2d(w2), nn.LeakyReLU(0.1),
            nn.Conv2d(w2, latent_dim, k, 2, p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


class ConvDecoder(nn.Module):
    """A dense layer, a reshape and six transposed convolutions: ``latent_dim`` to an image.

    The dense layer maps to ``w2 x ceil(H/4) x ceil(W/4)``; transposed convolutions of
    ``w2, w1, w1, w0, w0, C`` channels follow, the 2nd and 4th 4x4 with stride 2 (doubling the
    side twice), the others ``kernel_size`` x ``kernel_size`` with stride 1; batch
    normalisation and leaky ReLU between, a sigmoid at the end (inputs in [0, 1]). A side that
    is not a multiple of 4 is centre-cropped.
    """

    def __init__(self, out_channels: int = 1, size: tuple = (28, 28), latent_dim: int = 16,
                 widths: tuple = (16, 32, 64), kernel_size: int = 3):
        super().__init__()
        w0, w1, w2 = widths
        k = kernel_size
        self.size = tuple(size)
        self.start = (math.ceil(size[0] / 4), math.ceil(size[1] / 4))
        self.dense = nn.Sequential(nn.Linear(latent_dim, w2 * self.start[0] * self.start[1]),
                                   nn.LeakyReLU(0.1), nn.Unflatten(1, (w2, *self.start)))

        def block(c_in, c_out, k, s):
            return [nn.ConvTranspose2d(c_in, c_out, k, s, 1 if s == 2 else k // 2),
                    nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1)]

        self.upsample = nn.Sequential(
            *block(w2, w2, k, 1), *block(w2, w1, 4, 2), *block(w1, w1, k, 1),
            *block(w1, w0, 4, 2), *block(w0, w0, k, 1),
            nn.ConvTranspose2d(w0, out_channels, k, 1, k // 2), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.upsample(self.dense(z))
        (h, w), (oh, ow) = self.size, out.shape[-2:]
        if (oh, ow) != (h, w):
            top, left = (oh - h) // 2, (ow - w) // 2
            out = out[..., top:top + h, left:left + w]
        return out


def latent_rms(z: torch.Tensor) -> torch.Tensor:
    """Root mean square of each latent vector, ``N x 1``, without gradient."""
    return z.detach().pow(2).mean(dim=1, keepdim=True).sqrt()


# ----------------------------------------------------------------- the network (section 3.3.1)

class ALPSNet(nn.Module):
    """Autoencoder (``encoder``, ``decoder``) and Adversarial Distorter (``distorter``).

    ``forward(x)`` is the plain reconstruction; :meth:`perturbation` gives the latent
    perturbation of the mode (``distorter`` is ``None`` unless ``mode="alps"``). The buffers
    ``score_min``, ``score_max`` (one per score of :data:`SCORES`) and ``selected`` hold what
    ``fit`` learned about the scores, so that a checkpoint restores them.
    """

    def __init__(self, in_channels: int = 1, size: tuple = (28, 28), latent_dim: int = 16,
                 widths: tuple = (16, 32, 64), mode: str = "alps",
                 perturbation_bound: float | None = None, noise_std: float = 1.0,
                 kernel_size: int = 3):
        super().__init__()
        self.mode = mode
        self.perturbation_bound = perturbation_bound
        self.noise_std = noise_std
        self.encoder = ConvEncoder(in_channels, latent_dim, widths, kernel_size)
        self.decoder = ConvDecoder(in_channels, size, latent_dim, widths, kernel_size)
        self.distorter = (ConvEncoder(in_channels, latent_dim, widths, kernel_size)
                          if mode == "alps" else None)
        self.register_buffer("score_min", torch.zeros(len(SCORES), dtype=torch.float64))
        self.register_buffer("score_max", torch.ones(len(SCORES), dtype=torch.float64))
        self.register_buffer("selected", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def perturbation(self, x: torch.Tensor, z: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """The perturbation added to the latent ``z = encoder(x)``: learned or random."""
        bound = self.perturbation_bound
        if self.mode == "alps":
            raw = self.distorter(x)
            return raw if bound is None else bound * latent_rms(z) * torch.tanh(raw)
        if self.mode == "noise":
            e = torch.randn(z.shape, generator=generator).to(z.device)
            return self.noise_std * latent_rms(z) * e
        raise RuntimeError("a vanilla autoencoder has no latent perturbation")


# ----------------------------------------------------------------- the detector

def _mse(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error, ``N``."""
    return (recon - x).pow(2).flatten(1).mean(1)


@register("alps")
class ALPS(BaseDeepDetector):
    """ALPS (thesis chapter 3) and its comparison autoencoders (Table 3.3) by ``mode``.

    See the module docstring for the method, the paper and our open choices.

    Args:
        mode: ``"alps"`` (learned perturbations, default), ``"noise"`` (random Gaussian latent
            perturbations) or ``"vanilla"`` (a plain autoencoder, same architecture and budget).
        latent_dim: size of the latent vector and of the perturbation.
        widths: the encoders' convolution widths (the decoder mirrors them).
        perturbation_bound: ``b`` in ``b * rms(z) * tanh(.)``; ``None``: unbounded (eq. 3.2).
        noise_std: the noise's standard deviation in units of the latent's rms (noise mode).
        distorter_every: update the distorter in epochs 0, k, 2k, ... only.
        recon_weight: weight of the plain reconstruction term in the autoencoder's loss.
        distorter_lr: the distorter's Adam learning rate (``None``: ``lr``).
        kernel_size: the side of the encoders' kernels and of the decoder's stride-1 kernels (odd).
        betas: both players' Adam betas (the lab's code: ``(0.5, 0.9)``).
        anomaly_score: ``"auto"`` (chosen after training on held-out normals and made anomalies
            of them), or one of :data:`SCORES`; a vanilla autoencoder has only ``"plain"``.
        Other arguments: see :class:`adlib.detectors.BaseDeepDetector`.

    Attributes set by ``fit`` besides the base ones: ``selected_score_``, ``selection_`` (the
    proxy AUROC of each score, empty unless ``anomaly_score="auto"``), ``step_history_`` (the
    losses and perturbation sizes of every training step; ``history_`` holds epoch means).
    """

    default_epochs = {None: 15, "mnist": 15, "fashion_mnist": 15, "cifar10": 20, "usps": 30}
    quick_epochs = 2
    selections = ("clean", "paper")
    notebook = "05_alps"

    @property
    def validation_mode(self) -> str:
        """"max" (an AUROC) under the ``paper`` selection, else "min" (a reconstruction MSE)."""
        return "max" if getattr(self, "val_anomalies_", None) is not None else "min"

    def __init__(self, mode: str = "alps", latent_dim: int = 16, widths: tuple = (16, 32, 64),
                 perturbation_bound: float | None = None, noise_std: float = 1.0,
                 distorter_every: int = 2,
                 recon_weight: float = 1.0, distorter_lr: float | None = None,
                 anomaly_score: str = "auto", kernel_size: int = 3,
                 betas: tuple = (0.9, 0.999), **kwargs):
        kwargs.setdefault("batch_size", 64)
        kwargs.setdefault("lr", 1e-3)
        super().__init__(**kwargs)
        self.mode = mode
        self.latent_dim = latent_dim
        self.widths = widths
        self.perturbation_bound = perturbation_bound
        self.noise_std = noise_std
        self.distorter_every = distorter_every
        self.recon_weight = recon_weight
        self.distorter_lr = distorter_lr
        self.anomaly_score = anomaly_score
        self.kernel_size = kernel_size
        self.betas = betas

    # -- parameters ------------------------------------------------------------------------
    def _validate_params(self, input_shape: tuple) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}: use one of {', '.join(MODES)}")
        if self.anomaly_score not in ("auto", *SCORES):
            raise ValueError(f"anomaly_score={self.anomaly_score!r}: use 'auto' or one of "
                             f"{', '.join(SCORES)}")
        if self.mode == "vanilla" and self.anomaly_score not in ("auto", "plain"):
            raise ValueError(f"anomaly_score={self.anomaly_score!r} needs a latent perturbation; "
                             "a vanilla autoencoder has only the 'plain' score")
        if not isinstance(self.latent_dim, (int, np.integer)) or self.latent_dim < 1:
            raise ValueError(f"latent_dim={self.latent_dim!r} must be a positive integer")
        widths = tuple(self.widths)
        if len(widths) != 3 or any(not isinstance(w, (int, np.integer)) or w < 1 for w in widths):
            raise ValueError(f"widths={self.widths!r} must be three positive integers")
        bound = self.perturbation_bound
        if bound is not None and not (isinstance(bound, (int, float)) and 0 < bound < math.inf):
            raise ValueError(f"perturbation_bound={bound!r} must be a positive number or None")
        if not (isinstance(self.noise_std, (int, float)) and 0 < self.noise_std < math.inf):
            raise ValueError(f"noise_std={self.noise_std!r} must be a positive number")
        if not isinstance(self.distorter_every, (int, np.integer)) or self.distorter_every < 1:
            raise ValueError(f"distorter_every={self.distorter_every!r} must be an integer >= 1")
        if not (isinstance(self.recon_weight, (int, float)) and 0 <= self.recon_weight < math.inf):
            raise ValueError(f"recon_weight={self.recon_weight!r} must be a number >= 0")
        if self.distorter_lr is not None and not (isinstance(self.distorter_lr, (int, float))
                                                  and self.distorter_lr > 0):
            raise ValueError(f"distorter_lr={self.distorter_lr!r} must be positive or None")
        if not isinstance(self.kernel_size, (int, np.integer)) or self.kernel_size < 1 \
                or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={self.kernel_size!r} must be an odd positive integer "
                             "(3 or 5, say), so that each convolution keeps the side's centre")
        betas = tuple(self.betas) if isinstance(self.betas, (tuple, list)) else ()
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ValueError(f"betas={self.betas!r} must be two numbers in [0, 1), e.g. 0.5,0.9")
        if min(input_shape[1:]) < 4:
            raise ValueError(f"images of {input_shape[1]} x {input_shape[2]} pixels are too small: "
                             "ALPS needs a side of at least 4")

    # -- hooks -----------------------------------------------------------------------------
    def build_network(self, input_shape):
        self._validate_params(input_shape)
        return ALPSNet(input_shape[0], tuple(input_shape[1:]), int(self.latent_dim),
                       tuple(int(w) for w in self.widths), self.mode, self.perturbation_bound,
                       self.noise_std, int(self.kernel_size))

    def configure_optimizers(self, steps_per_epoch):
        net = self.network_
        ae_params = list(net.encoder.parameters()) + list(net.decoder.parameters())
        self.distorter_optimizer_ = None
        if net.distorter is not None:
            self.distorter_optimizer_ = torch.optim.Adam(
                net.distorter.parameters(), lr=self.distorter_lr or self.lr,
                betas=tuple(self.betas))
        return torch.optim.Adam(ae_params, lr=self.lr, betas=tuple(self.betas)), None

    def setup(self, X_train, X_val):
        """Start the per-step record of both players' losses and the perturbation size."""
        self.step_history_ = []

    def distorter_updates_in(self, epoch: int) -> bool:
        """Whether the distorter is trained in ``epoch`` (0-based): epochs 0, k, 2k, ..."""
        return self.mode == "alps" and epoch % self.distorter_every == 0

    def distorter_step(self, batch: torch.Tensor) -> float:
        """One ascent step of the distorter on the perturbed MSE (the autoencoder is fixed)."""
        net = self.network_
        with torch.no_grad():
            z = net.encoder(batch)
        loss = F.mse_loss(net.decoder(z + net.perturbation(batch, z)), batch)
        self.distorter_optimizer_.zero_grad(set_to_none=True)
        (-loss).backward(inputs=list(net.distorter.parameters()))
        self.distorter_optimizer_.step()
        return float(loss.detach())

    def autoencoder_loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The autoencoder's loss on a batch and its parts (perturbation without gradient)."""
        net = self.network_
        z = net.encoder(batch)
        if self.mode == "vanilla":
            plain = F.mse_loss(net.decoder(z), batch)
            return plain, {"plain_mse": float(plain.detach())}
        with torch.no_grad():
            p = net.perturbation(batch, z, self.generator_)
        if self.recon_weight > 0:  # one decoder pass for the perturbed and the plain latents
            recon = net.decoder(torch.cat([z + p, z]))
            perturbed = F.mse_loss(recon[:len(batch)], batch)
            plain = F.mse_loss(recon[len(batch):], batch)
        else:  # eq. 3.2 alone; the plain loss is only logged
            perturbed = F.mse_loss(net.decoder(z + p), batch)
            with torch.no_grad():
                plain = F.mse_loss(net.decoder(z), batch)
        size = (p.norm(dim=1) / z.detach().norm(dim=1).clamp_min(1e-12)).mean()
        return perturbed + self.recon_weight * plain, {
            "perturbed_mse": float(perturbed.detach()), "plain_mse": float(plain.detach()),
            "perturbation_norm": float(p.norm(dim=1).mean()),
            "perturbation_ratio": float(size)}

    def training_step(self, batch, epoch):
        """A distorter step (in its epochs), then an autoencoder step, on the same batch."""
        out = {}
        if self.distorter_updates_in(epoch):
            out["distorter_mse"] = self.distorter_step(batch)
            check_finite(out["distorter_mse"], epoch, "distorter loss")
        loss, parts = self.autoencoder_loss(batch)
        row = {"loss": self.optimizer_step(self.optimizer_, loss, epoch), **parts, **out}
        self.step_history_.append({"epoch": epoch, **row})
        return row

    def fit(self, X_train, X_val=None, X_val_anomalies=None) -> "ALPS":
        """Train on normals ``X_train``; the held-out normals ``X_val`` choose the epoch (their
        plain reconstruction MSE), scale the scores and set the threshold.

        ``X_val_anomalies`` (the ``paper`` selection, :func:`adlib.protocols.paper_selection`:
        real anomalies, training images of other classes) instead chooses the epoch *and* the
        score as the thesis does (section 3.4.2): the highest AUROC, over epochs and scores,
        between as many held-out normals as there are anomalies and the anomalies.
        """
        self.val_anomalies_ = (as_tensor(X_val_anomalies) if X_val_anomalies is not None
                               and len(X_val_anomalies) else None)
        if self.val_anomalies_ is not None and (X_val is None or len(X_val) == 0):
            raise ValueError("the paper selection pairs X_val_anomalies with held-out normals: "
                             "give X_val too")
        self.val_aurocs_ = []
        try:
            return super().fit(X_train, X_val)
        finally:
            self.__dict__.pop("val_anomalies_", None)

    def validation_metric(self, X_val):
        """Mean plain reconstruction MSE of the held-out normals (lower is better); under the
        ``paper`` selection the best AUROC of the scores on held-out normals against real
        anomalies (higher is better; each epoch's AUROCs go to ``val_aurocs_``)."""
        if getattr(self, "val_anomalies_", None) is None:
            return float(torch.cat([_mse(self.network_(b), b).cpu()
                                    for b in self._batches(X_val, False)]).mean())
        normals = X_val[:len(self.val_anomalies_)]
        raw_n, raw_a = self.raw_scores(normals), self.raw_scores(self.val_anomalies_)
        y = np.r_[np.zeros(len(normals)), np.ones(len(self.val_anomalies_))]
        aurocs = {k: auroc(y, np.r_[raw_n[k], raw_a[k]]) for k in raw_n}
        self.val_aurocs_.append(aurocs)
        return max(aurocs.values())

    # -- scores ----------------------------------------------------------------------------
    @property
    def available_scores(self) -> tuple:
        """The scores this mode defines: all three, or only ``"plain"`` for ``"vanilla"``."""
        return SCORES[:1] if self.mode == "vanilla" else SCORES

    def _raw_batch(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Unscaled plain, perturbed and average MSE of a batch, ``N x 3`` (NaN if undefined)."""
        net = self.network_
        z = net.encoder(batch)
        plain = _mse(net.decoder(z), batch)
        if self.mode == "vanilla":
            nan = torch.full_like(plain, float("nan"))
            return torch.stack([plain, nan, nan], dim=1)
        perturbed = _mse(net.decoder(z + net.perturbation(batch, z, generator)), batch)
        return torch.stack([plain, perturbed, (plain + perturbed) / 2], dim=1)

    @torch.no_grad()
    def raw_scores(self, X) -> dict:
        """Unscaled reconstruction losses of ``X`` by score name (section 3.3.3).

        The average is taken before scaling, as in the thesis. Noise for ``mode="noise"`` comes
        from a generator seeded afresh on each call, so the same ``X`` gets the same scores.
        """
        X = as_tensor(X)
        self.network_.eval()
        g = torch.Generator().manual_seed(self.seed + 2)
        raw = torch.cat([self._raw_batch(b, g).double().cpu()
                         for b in self._batches(X, shuffle=False)]).numpy()
        return {name: raw[:, i] for i, name in enumerate(SCORES) if name in self.available_scores}

    def _scale(self, raw: dict) -> dict:
        net = self.network_
        lo, hi = net.score_min.cpu().numpy(), net.score_max.cpu().numpy()
        return {name: (values - lo[SCORES.index(name)])
                / max(hi[SCORES.index(name)] - lo[SCORES.index(name)], 1e-12)
                for name, values in raw.items()}

    def score_all(self, X) -> dict:
        """The three anomaly scores of ``X`` (``"plain"`` only for a vanilla autoencoder), each
        min-max scaled with the statistics of the held-out normals; higher = more anomalous."""
        return self._scale(self.raw_scores(X))

    def score(self, X) -> np.ndarray:
        """The selected anomaly score of ``X`` (see :meth:`score_all`)."""
        return self.score_all(X)[SCORES[int(self.network_.selected)]]

    @torch.no_grad()
    def batch_scores(self, batch):
        """The selected scaled score of one batch (noise seeded per call in ``"noise"`` mode)."""
        i = int(self.network_.selected)
        g = torch.Generator().manual_seed(self.seed + 2)
        raw = self._raw_batch(batch, g)[:, i].double()
        lo, hi = self.network_.score_min[i], self.network_.score_max[i]
        return (raw - lo.to(raw.device)) / (hi - lo).clamp_min(1e-12).to(raw.device)

    def _select(self, reference: torch.Tensor, chosen: str | None = None) -> None:
        """Fit the min-max statistics on ``reference`` normals and pick the score to return
        (``chosen`` when given, else by ``anomaly_score``)."""
        net = self.network_
        raw = self.raw_scores(reference)
        for name, values in raw.items():
            i = SCORES.index(name)
            net.score_min[i], net.score_max[i] = float(values.min()), float(values.max())
        self.selection_ = {}
        if chosen is not None:
            name = chosen
        elif self.anomaly_score != "auto":
            name = self.anomaly_score
        elif len(raw) == 1:
            name = "plain"
        else:
            g = torch.Generator().manual_seed(self.seed + 3)
            made = make_anomalies(reference.cpu(), g)
            made_raw = self.raw_scores(made)
            y = np.r_[np.zeros(len(reference)), np.ones(len(made))]
            self.selection_ = {k: auroc(y, np.r_[raw[k], made_raw[k]]) for k in raw}
            name = max(self.selection_, key=lambda k: (self.selection_[k], -SCORES.index(k)))
        net.selected.fill_(SCORES.index(name))
        self.selected_score_ = name

    def on_fit_end(self, X_train, X_val):
        """After the kept epoch is restored: the held-out normals (else the training images) fix
        the score scaling and selection (under the ``paper`` selection, the score with the best
        AUROC on real anomalies at the kept epoch)."""
        chosen = None
        if getattr(self, "val_anomalies_", None) is not None:
            at_best = self.val_aurocs_[self.best_epoch_]
            chosen = max(at_best, key=lambda k: (at_best[k], -SCORES.index(k)))
        self._select(X_val if X_val is not None else X_train, chosen)
        if chosen is not None:
            self.selection_ = {k: round(float(v), 6) for k, v in at_best.items()}

    def load(self, path) -> "ALPS":
        """Restore a detector saved by :meth:`save`, with its score scaling and selection."""
        super().load(path)
        self.selected_score_ = SCORES[int(self.network_.selected)]
        return self
