"""Causal One Euro filter (Casiez, Roussel, Vogel, CHI 2012), vectorised over joints.

The filter is an exponential low-pass whose cutoff rises with the signal's speed: still
signals are smoothed strongly (``min_cutoff``), fast motion is followed with little lag
(``beta``). Per step, with ``T = 1 / fps`` and ``alpha(fc) = 1 / (1 + 1 / (2 pi fc T))``::

    dx_hat = alpha(d_cutoff) * (x - x_hat_prev) / T + (1 - alpha(d_cutoff)) * dx_hat_prev
    fc     = min_cutoff + beta * |dx_hat|
    x_hat  = alpha(fc) * x + (1 - alpha(fc)) * x_hat_prev

Signals have shape (..., D): the last axis is one vector (a joint's xyz, a 6D rotation) and
``|dx_hat|`` is its Euclidean norm, so each vector gets one cutoff (as in the paper's
multi-dimensional use); leading axes are independent. The first sample after a reset passes
through unchanged. Units: cutoffs in Hz, ``beta`` in 1 / (signal unit), e.g. 1/m for
positions in metres.

``vector_cutoffs`` gives some vectors of the second-to-last axis their own ``min_cutoff``
(the model's 22 output slots differ: the hip rotation moves every joint, a shoulder's noise
costs more accuracy to remove than a forearm's); ``engine.inference.parse_smoothing`` reads the
``MIN_CUTOFF,BETA[,SLOT=HZ...]`` text of the command line and of the weights' metadata.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroConfig:
    min_cutoff: float = 1.0  # Hz: cutoff for a still signal (lower = smoother, more lag)
    beta: float = 0.5        # 1/unit: cutoff increase per unit/s of speed (higher = less lag)
    d_cutoff: float = 1.0    # Hz: cutoff of the speed estimate
    fps: float = 30.0        # samples per second
    # ((index along axis -2, min cutoff in Hz), ...): vectors with their own min cutoff
    vector_cutoffs: tuple[tuple[int, float], ...] = ()

    def __post_init__(self):
        if not (self.min_cutoff > 0 and self.d_cutoff > 0 and self.fps > 0 and self.beta >= 0):
            raise ValueError(f"invalid One Euro parameters: {self}")
        try:
            pairs = tuple((int(i), float(c)) for i, c in self.vector_cutoffs)
        except (TypeError, ValueError):
            raise ValueError(f"invalid One Euro vector cutoffs: {self.vector_cutoffs!r}") from None
        if any(i < 0 or not c > 0 or not math.isfinite(c) for i, c in pairs):
            raise ValueError(f"invalid One Euro vector cutoffs: {self.vector_cutoffs!r}")
        object.__setattr__(self, "vector_cutoffs", pairs)

    def min_cutoffs(self, shape: tuple[int, ...]) -> float | np.ndarray:
        """The min cutoff for samples of ``shape`` (..., N, D): a float, or (N, 1) per vector."""
        if not self.vector_cutoffs:
            return self.min_cutoff
        if len(shape) < 2 or max(i for i, _ in self.vector_cutoffs) >= shape[-2]:
            raise ValueError(f"One Euro vector cutoffs {self.vector_cutoffs} do not fit samples "
                             f"of shape {tuple(shape)}")
        mc = np.full((shape[-2], 1), self.min_cutoff)
        for i, c in self.vector_cutoffs:
            mc[i] = c
        return mc


def _alpha(cutoff, fps: float):
    """Smoothing factor of an exponential filter with the given cutoff (Hz) at ``fps``."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau * fps)


class OneEuroFilter:
    """Stateful causal filter: call it once per sample (shape (..., D), fixed over calls)."""

    def __init__(self, config: OneEuroConfig = OneEuroConfig()):
        self.config = config
        self._a_d = _alpha(config.d_cutoff, config.fps)
        self._tau_fps = config.fps / (2.0 * math.pi)  # alpha(fc) = 1 / (1 + tau_fps / fc)
        self._mc: float | np.ndarray = config.min_cutoff  # per vector once the shape is known
        self._x: np.ndarray | None = None   # last filtered value (..., D), float64
        self._dx: np.ndarray | None = None  # last filtered speed (..., D), unit/s

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x = None
        self._dx = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter one sample (..., D); returns the filtered sample in x's dtype."""
        xf = np.asarray(x, dtype=np.float64)
        if self._x is None:
            self._start(xf)
            return np.array(x, copy=True)
        self._update(xf)
        return self._x.astype(np.asarray(x).dtype)

    def _start(self, xf: np.ndarray) -> None:
        """Take a first float64 sample as the state (it passes through unchanged)."""
        self._mc = self.config.min_cutoffs(xf.shape)
        self._x, self._dx = xf.copy(), np.zeros_like(xf)

    def _update(self, xf: np.ndarray) -> None:
        """One step on a float64 sample of the state's shape, in place (after the first)."""
        c = self.config
        diff = xf - self._x                                   # x - x_hat_prev
        self._dx *= 1.0 - self._a_d                           # dx_hat, unit/s
        self._dx += (self._a_d * c.fps) * diff
        speed = np.sqrt(np.einsum("...d,...d->...", self._dx, self._dx))[..., None]
        a = 1.0 / (1.0 + self._tau_fps / (self._mc + c.beta * speed))
        diff *= a
        self._x += diff                                       # a x + (1 - a) x_hat_prev


def one_euro(x: np.ndarray, config: OneEuroConfig, valid: np.ndarray | None = None) -> np.ndarray:
    """Filter a whole sequence causally: x (F, ..., D) -> (F, ..., D).

    ``valid`` (F,) bool: frames marked False are returned unchanged and reset the filter, so
    the frame after a gap starts afresh (nothing is smoothed across a gap). Output frame t
    depends on frames <= t only.
    """
    x = np.asarray(x)
    out = np.array(x, copy=True)
    xs = np.asarray(x, dtype=np.float64)
    f = OneEuroFilter(config)
    for t in range(x.shape[0]):  # O(F) steps, each vectorised over joints, in float64
        if valid is not None and not valid[t]:
            f.reset()
        elif f._x is None:
            f._start(xs[t])
        else:
            f._update(xs[t])
            out[t] = f._x
    return out
