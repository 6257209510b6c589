"""Fixtures shared by the engine tests."""
import numpy as np
import pytest
import torch

from engine.model import ModelConfig, MotionTransformer


def _synthetic_landmarks(n: int, seed: int, gaps) -> np.ndarray:
    """Smoothly moving random landmarks (F, 33, 10), all-zero frames in ``gaps``, a track
    restart after each gap."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None, None]
    base = rng.uniform(0.3, 0.7, size=(1, 33, 10))
    lm = base + 0.05 * np.sin(2 * np.pi * t / rng.uniform(20, 60, size=(1, 33, 10)))
    lm[:, :, 0:3] -= 0.5
    lm[:, :, 4] = lm[:, :, 9] = 1.0
    for a, b in gaps:
        lm[a:b] = 0
        if b < n:
            lm[b, :, 4] = lm[b, :, 9] = 0.0  # track restart after a gap
    return lm.astype(np.float32)


def _perturbed_tiny_model(seed: int) -> MotionTransformer:
    """A small model moved away from the rest pose, so outputs move with the input."""
    torch.manual_seed(seed)
    m = MotionTransformer(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, window=16))
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.add_(torch.randn_like(p) * (0.05 if "head" in name else 0.1))
    return m.eval()


@pytest.fixture(scope="session")
def make_landmarks():
    """``make_landmarks(n, seed, gaps)`` -> synthetic (F, 33, 10) landmarks with gaps."""
    return _synthetic_landmarks


@pytest.fixture(scope="session")
def make_tiny_model():
    """``make_tiny_model(seed)`` -> a small MotionTransformer away from the rest pose."""
    return _perturbed_tiny_model
