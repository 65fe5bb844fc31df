"""Small image sets shared by the method tests."""
import numpy as np
import torch


def ramp_images(n=32, side=16, seed=0):
    """Vertical ramps of random contrast with a little noise, ``n x 1 x side x side``."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, side, dtype=np.float32)[:, None] * np.ones((1, side), np.float32)
    x = ramp[None] * rng.uniform(0.5, 1.0, (n, 1, 1)).astype(np.float32)
    x = np.clip(x + rng.normal(0, 0.02, x.shape).astype(np.float32), 0, 1)
    return torch.from_numpy(x[:, None])
