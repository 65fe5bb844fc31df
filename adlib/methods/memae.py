"""MemAE: a memory-augmented autoencoder, the baseline of IWAD.

Paper: Gong et al., "Memorizing Normality to Detect Anomaly: Memory-augmented Deep Autoencoder
for Unsupervised Anomaly Detection", ICCV 2019. Used as the baseline of IWAD (Fan et al.,
section 4.1, Table 1): "MemAE" trained on target normals, "MemAE (directly)" trained on source
normals and applied to the target, "MemAE (fine-tune)" then trained further on the unlabelled,
contaminated target data (:meth:`MemAE.fine_tune`).

The encoder's code ``z`` queries a memory ``M`` of ``N`` slots (section 3.3): attention
``w = softmax(d(z, M))`` (eqs. 4-5), hard shrinkage ``w_hat = max(w - lambda, 0) w / (|w -
lambda| + eps)`` (eq. 7, the continuous form of eq. 6) renormalised to sum to 1, and the decoder
reconstructs from ``z_hat = w_hat M`` (eq. 3). Loss (eq. 10): the reconstruction error (eq. 9)
plus ``alpha`` (0.0002) times the mean entropy of ``w_hat`` (eq. 8). Score: the per-image
reconstruction MSE.

Layers (IWAD section 4.1, after Gong): encoder Conv2(3,2,32)-Conv2(3,2,16)-Conv2(3,3,8), decoder
Dconv2(3,3,16)-Dconv2(3,2,32)-Dconv2(3,2,3) (kernel, stride, channels), batch norm and leaky
ReLU after every layer but the last. Choices the papers leave open, and what we chose:

* padding 1 everywhere and ``output_padding`` 1 on the two stride-2 transposed convolutions, so
  28 x 28 -> 14 -> 7 -> 8 x 3 x 3 (72 features, IWAD's ``Linear(72, 128)``) -> 7 -> 14 -> 28
  (sides 4 (3k - 2) work: 16, 28, 40, ...);
  leaky ReLU slope 0.2 (Gong's code); the last layer has no activation (Gong's code) and inputs
  are scaled to [-1, 1] (the IWAD authors' code); MNIST and USPS as 3-channel 28 x 28 images;
* one memory address per image: the flattened 72-d code (Gong addresses per-location features
  for video, a whole code per image for MNIST/CIFAR); ``N = 100`` slots (Gong section 4.1);
* ``d(z, m) = z m^T``, the dot product of Gong's code (``cosine=True``: eq. 5's cosine
  similarity); memory initialised uniform in ``+-1/sqrt(72)`` (Gong's code);
* ``lambda = 1/N`` (Gong: in [1/N, 3/N]; the IWAD authors' code uses 0.025); eq. 9's squared
  L2 norm is averaged over pixels (``MSELoss``, as in Gong's code, which pairs it with alpha);
* Adam at lr 0.01 (IWAD section 4); ``lr_decay`` per epoch optional (the IWAD authors' code
  decays by 0.95; default 1, none); batch 32 (their code); 30 epochs (ours; their code runs
  100), the epoch kept by the mean reconstruction error of held-out normals; fine-tuning
  restarts Adam, re-seeds and keeps its last epoch (the target data is unlabelled: no clean
  validation set).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..detectors import BaseDeepDetector, as_tensor
from ..protocols import Preprocess
from ..registry import register

__all__ = ["conv_encoder", "conv_decoder", "conv3d_encoder", "conv3d_decoder", "code_side",
           "code_shape", "code_shape_3d", "shrink_threshold_for", "hard_shrink", "MemoryModule",
           "MemAENet", "attention_entropy", "MemAE"]


def _block(conv: nn.Module, channels: int) -> list:
    return [conv, nn.BatchNorm2d(channels), nn.LeakyReLU(0.2)]


def conv_encoder(in_channels: int = 3) -> nn.Sequential:
    """Conv2(3,2,32)-Conv2(3,2,16)-Conv2(3,3,8): ``C x 28 x 28`` to ``8 x 3 x 3``."""
    return nn.Sequential(*_block(nn.Conv2d(in_channels, 32, 3, 2, 1), 32),
                         *_block(nn.Conv2d(32, 16, 3, 2, 1), 16),
                         *_block(nn.Conv2d(16, 8, 3, 3, 1), 8))


def conv_decoder(out_channels: int = 3) -> nn.Sequential:
    """Dconv2(3,3,16)-Dconv2(3,2,32)-Dconv2(3,2,C): ``8 x 3 x 3`` to ``C x 28 x 28``, the last
    layer linear."""
    return nn.Sequential(*_block(nn.ConvTranspose2d(8, 16, 3, 3, 1), 16),
                         *_block(nn.ConvTranspose2d(16, 32, 3, 2, 1, output_padding=1), 32),
                         nn.ConvTranspose2d(32, out_channels, 3, 2, 1, output_padding=1))


def _block3d(conv: nn.Module, channels: int) -> list:
    return [conv, nn.BatchNorm3d(channels), nn.LeakyReLU(0.2)]


def conv3d_encoder(in_channels: int = 1) -> nn.Sequential:
    """The video encoder (IWAD section 4.1, after Gong): Conv3(3,(1,2,2),96)-Conv3(3,2,128)-
    Conv3(3,2,256)-Conv3(3,2,256) on ``C x T x H x W`` cuboids, to ``256 x T/8 x H/16 x W/16``.
    IWAD's text prints the third stride as 3; its decoder, and Gong's code, have 2."""
    return nn.Sequential(*_block3d(nn.Conv3d(in_channels, 96, 3, (1, 2, 2), 1), 96),
                         *_block3d(nn.Conv3d(96, 128, 3, 2, 1), 128),
                         *_block3d(nn.Conv3d(128, 256, 3, 2, 1), 256),
                         *_block3d(nn.Conv3d(256, 256, 3, 2, 1), 256))


def conv3d_decoder(out_channels: int = 1) -> nn.Sequential:
    """Dconv3(3,2,256)-Dconv3(3,2,128)-Dconv3(3,2,96)-Dconv3(3,(1,2,2),C), the last linear."""
    return nn.Sequential(
        *_block3d(nn.ConvTranspose3d(256, 256, 3, 2, 1, output_padding=1), 256),
        *_block3d(nn.ConvTranspose3d(256, 128, 3, 2, 1, output_padding=1), 128),
        *_block3d(nn.ConvTranspose3d(128, 96, 3, 2, 1, output_padding=1), 96),
        nn.ConvTranspose3d(96, out_channels, 3, (1, 2, 2), 1, output_padding=(0, 1, 1)))


def code_shape_3d(input_shape: tuple) -> tuple:
    """The video code's shape for a ``C x T x H x W`` input; raises unless the decoder gives the
    input's shape back (``T`` a multiple of 8, ``H`` and ``W`` of 16)."""
    _, t, h, w = input_shape
    if t % 8 or h % 16 or w % 16:
        raise ValueError(f"the video layers take cuboids with T a multiple of 8 and H, W of 16 "
                         f"(got {t} x {h} x {w}): use 16 frames of 64 x 64 or 256 x 256")
    return 256, t // 8, h // 16, w // 16


def code_side(side: int) -> tuple[int, int]:
    """The code's side for an input side, and the side the decoder gives back from it."""
    s = ((side - 1) // 2) // 2 // 3 + 1
    return s, 4 * (3 * s - 2)


def code_shape(input_shape: tuple) -> tuple:
    """The code's shape for a ``C x H x W`` image (2-D layers) or a ``C x T x H x W`` cuboid
    (3-D layers); raises unless the decoder gives the input's shape back."""
    if len(input_shape) == 4:
        return code_shape_3d(input_shape)
    _, h, w = input_shape
    (ch, rh), (cw, rw) = code_side(h), code_side(w)
    if (rh, rw) != (h, w):
        raise ValueError(f"the 2-D layers of IWAD section 4.1 reconstruct sides 4 (3k - 2) = 16, "
                         f"28, 40, ... only (got {h} x {w}): preprocess to 28 x 28")
    return 8, ch, cw


def shrink_threshold_for(num_slots: int, threshold: float | None) -> float:
    """The hard-shrinkage threshold in use: ``threshold``, or ``1 / num_slots`` when it is
    ``None`` (Gong et al. recommend 1/N to 3/N); 0 without memory slots."""
    if threshold is not None:
        return float(threshold)
    return 1.0 / num_slots if num_slots else 0.0


def hard_shrink(w: torch.Tensor, threshold: float, eps: float = 1e-12) -> torch.Tensor:
    """Eq. 7: ``max(w - lambda, 0) w / (|w - lambda| + eps)``, then rows renormalised to sum 1
    (``threshold = 0`` returns ``w`` unchanged, as in Gong's code)."""
    if threshold <= 0:
        return w
    w = F.relu(w - threshold) * w / ((w - threshold).abs() + eps)
    return F.normalize(w, p=1, dim=1)


class MemoryModule(nn.Module):
    """``num_slots`` memory items of size ``dim``; ``forward(z)`` returns ``(z_hat, w_hat)``."""

    def __init__(self, num_slots: int, dim: int, shrink_threshold: float, cosine: bool = False):
        super().__init__()
        bound = 1 / math.sqrt(dim)
        self.memory = nn.Parameter(torch.empty(num_slots, dim).uniform_(-bound, bound))
        self.shrink_threshold = shrink_threshold
        self.cosine = cosine

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.memory
        if self.cosine:
            z, m = F.normalize(z, dim=1), F.normalize(m, dim=1)
        w = hard_shrink(torch.softmax(z @ m.t(), dim=1), self.shrink_threshold)
        return w @ self.memory, w


class MemAENet(nn.Module):
    """Encoder, memory on the flattened code, decoder; ``forward`` returns ``(x_hat, w_hat)``.

    ``num_slots=0`` leaves the memory out (a plain autoencoder; ``w_hat`` is then ``None``)."""

    def __init__(self, channels: int, code_shape: tuple, num_slots: int,
                 shrink_threshold: float, cosine: bool = False, video: bool = False):
        super().__init__()
        self.video = video
        self.encoder = (conv3d_encoder if video else conv_encoder)(channels)
        dim = code_shape[0] if video else math.prod(code_shape)
        self.memory = (MemoryModule(num_slots, dim, shrink_threshold, cosine) if num_slots
                       else None)
        self.decoder = (conv3d_decoder if video else conv_decoder)(channels)

    def forward(self, x: torch.Tensor, return_code: bool = False) -> tuple:
        """``(x_hat, w_hat)``, and the encoder's code ``z`` last with ``return_code``."""
        z = self.encoder(x)
        if self.memory is None:
            z_hat, w = z, None
        elif self.video:  # one address per location of the code (Gong's video setting)
            c = z.shape[1]
            flat = z.movedim(1, -1).reshape(-1, c)
            z_hat, w = self.memory(flat)
            z_hat = z_hat.view(*z.movedim(1, -1).shape).movedim(-1, 1)
        else:
            z_hat, w = self.memory(z.flatten(1))
            z_hat = z_hat.view_as(z)
        out = (self.decoder(z_hat), w)
        return (*out, z) if return_code else out


def attention_entropy(w: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Eq. 8 averaged over the batch: ``mean_i sum_j -w_ij log w_ij``."""
    return -(w * torch.log(w + eps)).sum(1).mean()


@register("memae")
class MemAE(BaseDeepDetector):
    """MemAE (see the module docstring).

    Args:
        num_slots: memory size ``N`` (100 for images, Gong section 4.1).
        shrink_threshold: ``lambda`` of eq. 7, in [0, 1); ``None`` for ``1 / num_slots``.
        entropy_weight: ``alpha`` of eq. 10.
        cosine: address the memory by cosine similarity (eq. 5) instead of the dot product.
        lr_decay: factor on the learning rate per epoch (1: constant).
        Other arguments: see :class:`adlib.detectors.BaseDeepDetector`.
    """

    default_epochs = {None: 30}
    quick_epochs = 2
    validation_mode = "min"
    preprocess = Preprocess(size=28, channels=3, scale="pm1")

    def __init__(self, num_slots: int = 100, shrink_threshold: float | None = None,
                 entropy_weight: float = 0.0002, cosine: bool = False, lr_decay: float = 1.0,
                 **kwargs):
        kwargs.setdefault("batch_size", 32)
        kwargs.setdefault("lr", 0.01)
        super().__init__(**kwargs)
        self.num_slots = num_slots
        self.shrink_threshold = shrink_threshold
        self.entropy_weight = entropy_weight
        self.cosine = cosine
        self.lr_decay = lr_decay

    @property
    def shrink_lambda(self) -> float:
        """The shrinkage threshold in use: ``shrink_threshold``, or ``1 / num_slots``."""
        return shrink_threshold_for(self.num_slots, self.shrink_threshold)

    def _check_params(self) -> None:
        super()._check_params()
        if int(self.num_slots) != self.num_slots or self.num_slots < 1:
            raise ValueError(f"num_slots={self.num_slots} must be a whole number >= 1 (Gong: 100)")
        if not 0 <= self.shrink_lambda < 1:
            raise ValueError(f"shrink_threshold={self.shrink_threshold} must lie in [0, 1); "
                             "Gong recommends 1/N to 3/N (None: 1/num_slots)")
        if self.entropy_weight < 0:
            raise ValueError(f"entropy_weight={self.entropy_weight} must be >= 0 (Gong: 0.0002)")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay={self.lr_decay} must lie in (0, 1] (1: no decay)")

    def build_network(self, input_shape):
        if getattr(self, "_fine_tuning", False):  # fine_tune: continue with the fitted network
            return self.network_
        video = len(input_shape) == 4  # cuboids C x T x H x W: the 3-D layers
        return MemAENet(input_shape[0], code_shape(input_shape), int(self.num_slots),
                        self.shrink_lambda, bool(self.cosine), video=video)

    def configure_optimizers(self, steps_per_epoch):
        optimizer = torch.optim.Adam(self.network_.parameters(), lr=self.lr)
        if self.lr_decay == 1:
            return optimizer, None
        gamma = self.lr_decay ** (1 / steps_per_epoch)  # stepped per batch: lr_decay per epoch
        return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)

    def training_step(self, batch, epoch):
        """Eq. 10 on one batch; both terms logged."""
        recon, w = self.network_(batch)
        mse, entropy = F.mse_loss(recon, batch), attention_entropy(w)
        loss = self.optimizer_step(self.optimizer_, mse + self.entropy_weight * entropy, epoch)
        if self.scheduler_ is not None:
            self.scheduler_.step()
        return {"loss": loss, "mse": float(mse.detach()), "entropy": float(entropy.detach())}

    def batch_scores(self, batch):
        """Per-image reconstruction MSE."""
        return (self.network_(batch)[0] - batch).pow(2).flatten(1).mean(1)

    def reconstruct_batch(self, batch):
        """The reconstruction from the memory-addressed code."""
        return self.network_(batch)[0]

    def validation_metric(self, X_val):
        """Mean reconstruction error of held-out normals (lower is better)."""
        return float(self._scores_of(X_val).mean())

    def fine_tune(self, X, num_epochs: int | None = None) -> "MemAE":
        """Continue training the fitted network on unlabelled (target) images ``X`` with the
        same loss, a fresh Adam and the same seed, for ``num_epochs`` (``None``: the fit's
        budget); the last epoch is kept and the threshold is refitted on ``X``. The previous
        history moves to ``pretrain_history_``."""
        self._check_is_fitted()
        X = as_tensor(X)
        if tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(f"fine_tune takes images of the fitted shape {self.input_shape_}, "
                             f"got {tuple(X.shape[1:])}")
        history, epochs = self.history_, self.num_epochs
        self._fine_tuning = True
        self.num_epochs = epochs if num_epochs is None else num_epochs
        try:
            self.fit(X)
        finally:
            self._fine_tuning, self.num_epochs = False, epochs
        self.pretrain_history_ = history
        return self
