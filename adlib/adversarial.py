"""GTSRB stop signs against adversarial boundary attacks (OCLR Table 2, after Deep SVDD).

Deep SVDD (Ruff et al. 2018, section 4.2) and OCLR (section 3, Table 2) take GTSRB's stop signs
as the normal class and, as anomalies, adversarial examples of randomly drawn *test* stop signs
made with the Boundary Attack (Brendel et al. 2018) against a classifier trained on GTSRB. The
attack is a decision-based one: it starts from an image the classifier already gets wrong and
walks towards the original along the decision boundary, so the result looks like a stop sign
but is classified as something else.

* :class:`SignClassifier` and :func:`train_sign_classifier` -- the attacked model: a small CNN
  on all 43 classes at 32 x 32 (the papers do not describe theirs).
* :func:`boundary_attack` -- foolbox's :class:`foolbox.attacks.BoundaryAttack`, seeded.
* :func:`gtsrb_stop_signs` -- the protocol: train on the training stop signs, test on the test
  stop signs (normal) and ``n_adversarial`` adversarial examples of randomly drawn test stop
  signs (anomalies; Deep SVDD uses 20). The adversarial images are cached in the project's
  cache folder (:func:`adlib.data._cached`), keyed by the data's digests and every setting.

GTSRB is not in the offline data: this is tested on generated files in torchvision's layout.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .data import GTSRB_STOP, DataError, ImageSet, _cached, load_gtsrb
from .protocols import OneClassSplit, Preprocess
from .training import seed_everything

__all__ = ["SignClassifier", "train_sign_classifier", "boundary_attack", "gtsrb_stop_signs"]


class SignClassifier(nn.Module):
    """Two 3x3 convolution blocks with max pooling and a dense layer: ``3 x 32 x 32`` in [0, 1]
    to 43 logits."""

    def __init__(self, num_classes: int = 43, widths: tuple = (32, 64), side: int = 32):
        super().__init__()
        w0, w1 = widths
        self.features = nn.Sequential(
            nn.Conv2d(3, w0, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w0, w1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.out = nn.Sequential(nn.Linear(w1 * (side // 4) ** 2, 128), nn.ReLU(),
                                 nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


def train_sign_classifier(train: ImageSet, epochs: int = 5, seed: int = 0, batch_size: int = 128,
                          lr: float = 1e-3, verbose: bool = False) -> SignClassifier:
    """Train :class:`SignClassifier` on ``train`` (uint8 images, all classes) with Adam."""
    if len(train.labels) == 0:
        raise DataError("the GTSRB training split is empty: nothing to train the classifier on")
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    x = train.images.float() / 255
    y = train.labels
    model = SignClassifier(num_classes=len(train.classes), side=x.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in tqdm(range(epochs), desc="sign classifier", unit="epoch", disable=not verbose):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def boundary_attack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    steps: int = 5000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Boundary Attack (Brendel et al. 2018) on float images in [0, 1] with their true labels.

    Returns ``(adversarial, success)``: the attacked images and whether each is misclassified.
    Uses foolbox 3's implementation; ``steps`` bounds the walk along the decision boundary.
    """
    import foolbox as fb
    torch.manual_seed(seed)  # the initial blended-noise attack draws from torch's generator
    fmodel = fb.PyTorchModel(model.eval(), bounds=(0, 1))
    attack = fb.attacks.BoundaryAttack(steps=steps)
    _, adversarial, success = attack(fmodel, images, fb.criteria.Misclassification(labels),
                                     epsilons=None)
    return adversarial.detach(), success.detach()


def _adversarial_stop_signs(train, test, n_adversarial, seed, steps, classifier_epochs,
                            verbose):
    stop_test = np.flatnonzero(test.labels.numpy() == GTSRB_STOP)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(stop_test, size=min(n_adversarial, len(stop_test)),
                               replace=False))
    model = train_sign_classifier(train, classifier_epochs, seed, verbose=verbose)
    images = test.images[picks].float() / 255
    adversarial, success = boundary_attack(model, images, test.labels[picks], steps, seed)
    if not bool(success.any()):
        raise DataError("the Boundary Attack found no adversarial stop sign: raise steps or "
                        "train the classifier longer")
    kept = success.numpy()
    return (adversarial[kept] * 255).round().to(torch.uint8), torch.as_tensor(picks[kept])


def gtsrb_stop_signs(seed: int = 0, *, n_adversarial: int = 20, steps: int = 5000,
                     classifier_epochs: int = 5, val_size: float = 0.1,
                     preprocess: Preprocess = Preprocess(), root=None, side: int = 32,
                     verbose: bool = False) -> OneClassSplit:
    """The GTSRB stop-sign protocol of OCLR Table 2 / Deep SVDD section 4.2.

    Train: the training split's stop signs (``val_size`` held out for validation). Test: every
    test stop sign (label 0) and the successful adversarial examples of ``n_adversarial``
    randomly drawn test stop signs (label 1). The attacked originals stay among the normals, as
    in Deep SVDD. Adversarial images are cached (their making trains a classifier and runs the
    attack); ``info["attacked"]`` lists the test indices they came from.

    Raises:
        DataError: no GTSRB folder, no stop sign in a split, or an attack that found nothing.
    """
    train = load_gtsrb("train", root=root, side=side)
    test = load_gtsrb("test", root=root, side=side)
    normal_train = np.flatnonzero(train.labels.numpy() == GTSRB_STOP)
    normal_test = np.flatnonzero(test.labels.numpy() == GTSRB_STOP)
    if len(normal_train) < 2 or len(normal_test) == 0:
        raise DataError(f"GTSRB has {len(normal_train)} training and {len(normal_test)} test "
                        f"stop signs (class {GTSRB_STOP}): the protocol needs both")
    settings = {"seed": seed, "n": n_adversarial, "steps": steps, "epochs": classifier_epochs,
                "side": side, "train": train.info.get("digest"), "test": test.info.get("digest")}
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    # the images and the test indices they came from, cached like decoded datasets
    adversarial, attacked = _cached(
        f"gtsrb-stop-adversarial-{key}",
        lambda: _adversarial_stop_signs(train, test, n_adversarial, seed, steps,
                                        classifier_epochs, verbose))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(normal_train)
    n_val = int(round(val_size * len(perm)))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    X_test = torch.cat([preprocess(test.images[normal_test]), preprocess(adversarial)])
    y_test = np.r_[np.zeros(len(normal_test), np.int64), np.ones(len(adversarial), np.int64)]
    info = {"dataset": "gtsrb", "protocol": "gtsrb_stop_signs", "normal_class": GTSRB_STOP,
            "seed": seed, "n_train": len(train_idx), "n_val": len(val_idx),
            "n_test": len(y_test), "n_test_anomalies": len(adversarial), "attack_steps": steps,
            "attacked": attacked.tolist(), "preprocess": asdict(preprocess),
            "source": test.source}
    return OneClassSplit(
        X_train=preprocess(train.images[train_idx]), X_val=preprocess(train.images[val_idx]),
        X_test=X_test, y_test=y_test, normal_class=GTSRB_STOP, classes=list(train.classes),
        test_classes=np.r_[np.full(len(normal_test), GTSRB_STOP), np.full(len(adversarial), -1)],
        y_train=np.zeros(len(train_idx), dtype=np.int64), info=info)
