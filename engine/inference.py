"""Inference: BlazePose landmarks (F, 33, 10) -> rotations, joints and root motion.

One pipeline, two entry points:

* :meth:`Predictor.predict` -- a whole sequence. Features (``engine.features``) and the model
  run chunk by chunk, carrying ``FeatureState`` and the model's key/value cache, so the
  result equals one pass over the sequence while memory per chunk stays bounded.
* :class:`StreamingPredictor` -- one frame at a time (live use); on frames with a detection
  its outputs equal :meth:`Predictor.predict` on the same frames.

The network runs on a *backend*: ``"torch"`` (``engine.model``) or ``"numpy"``
(``engine.numpy_model``, no torch needed, e.g. inside Blender); ``"auto"`` takes torch when
it can be imported.

Frames without a detection (``engine.features.frame_validity`` False) get no pose from the
model; they are bridged so that every frame has an output:

* before the first detection: the rest pose (upright, facing the camera, all local rotations
  identity, Hips at ``REST_ROOT_POSITION``);
* batch: a gap of at most ``max_interp_gap_s`` seconds between two detections is
  interpolated (slerp of the root and local rotations, linear root position, the matching
  constant root displacement); longer gaps and a gap at the end hold the last pose
  (displacement 0);
* streaming: the next detection is not known yet, so every gap holds the last pose.

Optional causal One Euro smoothing (``InferenceConfig.smoothing``, off by default) filters the
raw 22 x 6 output of frames with a detection (6D rotations, root displacement and position)
and restarts after every gap; it runs before the bridging, identically in both entry points.

Outputs (:class:`Prediction`) are in the camera frame (x right, y down, z forward), metres.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import rotations as rot
from .errors import CheckpointError, InputError
from .features import (DEFAULT_ASPECT, DEFAULT_FOCAL, FeatureState, check_landmarks,
                       compute_features)
from .filters import OneEuroConfig, OneEuroFilter, one_euro
from .kinematics import forward_kinematics, slots_to_rotations
from .numpy_model import ROOT_OFFSET, NumpyMotionTransformer, load_numpy_model
from .skeleton import DEFAULT_OFFSETS, NUM_BLAZEPOSE, NUM_CHANNELS, NUM_JOINTS, NUM_SLOTS

log = logging.getLogger(__name__)

#: The shipped weights (``blaze2cap train`` + export put them here).
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.safetensors"

#: Rest pose Hips rotation (bone-local -> camera): spine (local -z) up (camera -y), the
#: subject's right (local +x) on the image's left (camera -x), facing the camera.
REST_ROOT_ROTATION = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32)
#: Rest Hips position in the camera frame, metres (the model's root offset: 4 m ahead).
REST_ROOT_POSITION = ROOT_OFFSET[3:6].copy()


def rest_slots() -> np.ndarray:
    """(22, 6) output slots of the rest pose (see REST_ROOT_ROTATION / REST_ROOT_POSITION)."""
    slots = np.zeros((NUM_SLOTS, 6), dtype=np.float32)
    slots[0, 3:6] = REST_ROOT_POSITION
    slots[1] = rot.matrix_to_rotation_6d(REST_ROOT_ROTATION)
    slots[2:] = rot.matrix_to_rotation_6d(np.eye(3, dtype=np.float32))
    return slots


@dataclass(frozen=True)
class InferenceConfig:
    max_interp_gap_s: float = 0.5           # gaps up to this long are interpolated (batch)
    smoothing: OneEuroConfig | None = None  # causal One Euro on the raw output; None = off


@dataclass(frozen=True)
class Coverage:
    """How much of a sequence had a detection, and how the rest was bridged (frames)."""

    frames: int = 0
    valid_frames: int = 0
    gaps: int = 0                 # runs of consecutive frames without a detection
    longest_gap: int = 0
    interpolated_frames: int = 0
    held_frames: int = 0
    rest_frames: int = 0          # before the first detection

    @property
    def fraction(self) -> float:
        """Fraction of frames with a detection (0 for an empty sequence)."""
        return self.valid_frames / self.frames if self.frames else 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"fraction": self.fraction}


@dataclass
class Prediction:
    """Per-frame output, camera frame (x right, y down, z forward), metres.

    local_6d         (F, 22, 6) output slots: slot 0 = (dx, dy, dz, x, y, z) Hips
                     displacement and position; slot 1 = Hips global rotation; slots 2..21 =
                     local rotations of joints 1..20; rotations as orthonormal 6D
    global_quats     (F, 21, 4) w,x,y,z rotation of each joint from its bone-local frame to
                     the camera frame (p_child = p_parent + R_parent @ offset_child); signs
                     kept continuous over time
    joints           (F, 21, 3) positions by forward kinematics on the given offsets (default
                     body), relative to the Hips joint
    root_translation (F, 3) Hips position in the camera frame
    valid            (F,) bool, frames with a detection (others are bridged, see module doc)
    coverage         detection / bridging statistics
    """

    local_6d: np.ndarray
    global_quats: np.ndarray
    joints: np.ndarray
    root_translation: np.ndarray
    valid: np.ndarray
    coverage: Coverage

    def __len__(self) -> int:
        return self.valid.shape[0]


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------
class Backend(Protocol):
    """Runs the network on one chunk of one sequence, carrying its key/value cache."""

    name: str

    def step(self, feats: np.ndarray, valid: np.ndarray, cache: Any) -> tuple[np.ndarray, Any]:
        """feats (S, 25, 18), valid (S,) bool, cache (None at the start) -> ((S, 22, 6), cache)."""


class NumpyBackend:
    name = "numpy"

    def __init__(self, model):
        self.model = model

    def step(self, feats, valid, cache):
        out, cache = self.model(feats[None], valid[None], past=cache, return_cache=True)
        return out[0], cache


class TorchBackend:
    name = "torch"

    def __init__(self, model, device: str = "cpu"):
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def step(self, feats, valid, cache):
        torch = self._torch
        f = torch.from_numpy(np.ascontiguousarray(feats))[None].to(self.device)
        v = torch.from_numpy(np.ascontiguousarray(valid))[None].to(self.device)
        with torch.inference_mode():
            out, cache = self.model(f, v, past=cache, return_cache=True)
        return out[0].float().cpu().numpy(), cache


def make_backend(model, device: str = "cpu") -> Backend:
    """Wrap a torch ``MotionTransformer`` or a ``NumpyMotionTransformer``."""
    if isinstance(model, NumpyMotionTransformer):
        return NumpyBackend(model)
    return TorchBackend(model, device)


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Gap bridging and output conversion (pure functions, shared by batch and streaming)
# ---------------------------------------------------------------------------------------------
def _runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) runs of False in valid (F,)."""
    v = np.concatenate([[True], valid, [True]])
    d = np.diff(v.astype(np.int8))
    return [(int(a), int(b)) for a, b in zip(np.flatnonzero(d == -1), np.flatnonzero(d == 1))]


def bridge_gaps(slots: np.ndarray, valid: np.ndarray, max_gap: int) -> tuple[np.ndarray, Coverage]:
    """Fill frames without a detection (see the module docstring).

    slots (F, 22, 6) raw output (frames with valid False are ignored), valid (F,) bool,
    max_gap: longest gap (frames) that is interpolated. Returns filled slots and coverage.
    """
    out = slots.copy()
    n = valid.shape[0]
    gaps = _runs(valid)
    interp = held = rest = 0
    for start, end in gaps:
        length = end - start
        if start == 0:
            out[start:end] = rest_slots()
            rest += length
        elif end < n and length <= max_gap:
            a, b = out[start - 1], out[end]
            w = (np.arange(start, end) - (start - 1)) / (end - (start - 1))
            qa = rot.rotation_6d_to_quaternion(a[1:].astype(np.float64))
            qb = rot.rotation_6d_to_quaternion(b[1:].astype(np.float64))
            shape = (length,) + qa.shape
            q = rot.slerp(np.broadcast_to(qa, shape), np.broadcast_to(qb, shape),
                      np.broadcast_to(w[:, None], shape[:-1]))
            out[start:end, 1:] = rot.quaternion_to_rotation_6d(q)
            out[start:end, 0, 3:6] = (1 - w)[:, None] * a[0, 3:6] + w[:, None] * b[0, 3:6]
            out[start:end, 0, 0:3] = (b[0, 3:6] - a[0, 3:6]) / (end - (start - 1))
            interp += length
        else:
            out[start:end] = out[start - 1]
            out[start:end, 0, 0:3] = 0.0
            held += length
    cov = Coverage(frames=n, valid_frames=int(valid.sum()), gaps=len(gaps),
                   longest_gap=max((e - s for s, e in gaps), default=0),
                   interpolated_frames=interp, held_frames=held, rest_frames=rest)
    return out, cov


def _continuous_quats(q: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
    """Flip signs of q (F, J, 4) so consecutive frames (and prev (J, 4)) have dot >= 0."""
    if q.shape[0] == 0:
        return q
    ref = np.concatenate([q[:1] if prev is None else prev[None], q[:-1]], axis=0)
    flip = (q * ref).sum(-1) < 0                     # flip relative to the previous frame
    sign = np.where(np.cumsum(flip, axis=0) % 2 == 1, -1.0, 1.0)
    return q * sign[..., None].astype(q.dtype)


def slots_to_prediction(slots: np.ndarray, valid: np.ndarray, coverage: Coverage,
                        offsets: np.ndarray = DEFAULT_OFFSETS,
                        prev_quats: np.ndarray | None = None) -> Prediction:
    """Filled slots (F, 22, 6) -> :class:`Prediction` (FK on offsets (21, 3) metres)."""
    _, glob = slots_to_rotations(slots)                       # (F, 21, 3, 3)
    local_6d = slots.copy()
    local_6d[:, 1:] = rot.matrix_to_rotation_6d(rot.rotation_6d_to_matrix(slots[:, 1:]))
    quats = _continuous_quats(rot.matrix_to_quaternion(glob).astype(np.float32), prev_quats)
    return Prediction(local_6d=local_6d.astype(np.float32), global_quats=quats,
                      joints=forward_kinematics(glob, offsets).astype(np.float32),
                      root_translation=slots[:, 0, 3:6].astype(np.float32).copy(),
                      valid=valid.astype(bool), coverage=coverage)


# ---------------------------------------------------------------------------------------------
# Predictors
# ---------------------------------------------------------------------------------------------
def _check_rates(aspect: float, fps: float) -> None:
    if not (np.isfinite(aspect) and aspect > 0):
        raise InputError(f"aspect ratio must be a positive number (width / height), got {aspect}")
    if not (np.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive number, got {fps}")


class Predictor:
    """Landmarks -> :class:`Prediction` with a model on a backend (see module docstring)."""

    def __init__(self, backend: Backend | Any, config: InferenceConfig = InferenceConfig(),
                 offsets: np.ndarray | None = None):
        self.backend = backend if hasattr(backend, "step") else make_backend(backend)
        self.config = config
        self.offsets = np.asarray(DEFAULT_OFFSETS if offsets is None else offsets, dtype=np.float32)
        if self.offsets.shape != (NUM_JOINTS, 3):
            raise InputError(f"offsets must have shape ({NUM_JOINTS}, 3), got {self.offsets.shape}")

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, backend: str = "auto",
                        config: InferenceConfig = InferenceConfig(), device: str = "cpu",
                        offsets: np.ndarray | None = None) -> "Predictor":
        """Load weights: ``path`` None = the shipped ``engine/weights/default.safetensors``.

        backend: "torch" (.pt checkpoints or .safetensors), "numpy" (.safetensors only, no
        torch needed) or "auto" (torch when importable).
        """
        if backend not in ("auto", "torch", "numpy"):
            raise InputError(f"unknown backend {backend!r}: use auto, torch or numpy")
        if path is None:
            path = DEFAULT_WEIGHTS
            if not path.is_file():
                raise CheckpointError(f"no shipped weights at {path}: pass a checkpoint "
                                      "(train one with 'blaze2cap train')")
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        if backend == "auto":
            backend = "torch" if _torch_available() else "numpy"
        if backend == "torch":
            from .checkpoint import load_model

            model, _ = load_model(path, device=device)
            be: Backend = TorchBackend(model, device)
        else:
            model, _ = load_numpy_model(path)
            be = NumpyBackend(model)
        log.debug("loaded %s on the %s backend", path, be.name)
        return cls(be, config, offsets)

    def raw(self, landmarks: np.ndarray, aspect: float = DEFAULT_ASPECT, chunk: int = 1024,
            focal: float = DEFAULT_FOCAL) -> tuple[np.ndarray, np.ndarray]:
        """Model output before smoothing and bridging: ((F, 22, 6), valid (F,) bool)."""
        lm = check_landmarks(landmarks)
        if lm.shape[0] == 0:
            raise InputError("the landmark sequence holds no frames")
        if chunk < 1:
            raise InputError(f"chunk must be at least 1 frame, got {chunk}")
        state, cache = FeatureState(), None
        outs, valids = [], []
        for i in range(0, lm.shape[0], chunk):
            feats, valid, state = compute_features(lm[i:i + chunk], aspect, state, focal)
            out, cache = self.backend.step(feats, valid, cache)
            outs.append(out)
            valids.append(valid)
        return np.concatenate(outs).astype(np.float32), np.concatenate(valids)

    def predict(self, landmarks: np.ndarray, aspect: float = DEFAULT_ASPECT, fps: float = 30.0,
                chunk: int = 1024, focal: float = DEFAULT_FOCAL) -> Prediction:
        """landmarks (F, 33, 10) (``engine.features`` format), aspect = video width / height,
        fps = frame rate (for gap lengths and smoothing), focal = focal length / long image
        side (``engine.features``) -> :class:`Prediction` of F frames."""
        _check_rates(aspect, fps)
        slots, valid = self.raw(landmarks, aspect, chunk, focal)
        if self.config.smoothing is not None:
            cfg = dataclasses.replace(self.config.smoothing, fps=fps)
            slots = one_euro(slots, cfg, valid).astype(np.float32)
        max_gap = int(round(self.config.max_interp_gap_s * fps))
        slots, cov = bridge_gaps(slots, valid, max_gap)
        return slots_to_prediction(slots, valid, cov, self.offsets)

    def stream(self, aspect: float = DEFAULT_ASPECT, fps: float = 30.0,
               focal: float = DEFAULT_FOCAL) -> "StreamingPredictor":
        return StreamingPredictor(self, aspect, fps, focal)


class StreamingPredictor:
    """One frame at a time; keeps the feature state, the model cache and the last pose.

    ``push(frame (33, 10)) -> Prediction`` of one frame. Frames without a detection hold the
    last pose (rest pose before the first detection); ``coverage`` counts all frames so far.
    """

    def __init__(self, predictor: Predictor, aspect: float = DEFAULT_ASPECT, fps: float = 30.0,
                 focal: float = DEFAULT_FOCAL):
        _check_rates(aspect, fps)
        self.predictor = predictor
        self.aspect, self.fps, self.focal = float(aspect), float(fps), float(focal)
        self.reset()

    def reset(self) -> None:
        """Start a new sequence."""
        self._state = FeatureState()
        self._cache = None
        self._last = rest_slots()
        self._last_quats: np.ndarray | None = None
        self._seen_valid = False
        self._in_gap = False
        self._run = 0  # length of the current gap
        cfg = self.predictor.config.smoothing
        self._filter = OneEuroFilter(dataclasses.replace(cfg, fps=self.fps)) if cfg else None
        self._cov = Coverage()

    @property
    def coverage(self) -> Coverage:
        return self._cov

    def push(self, frame: np.ndarray) -> Prediction:
        """frame (33, 10) landmarks -> single-frame Prediction (arrays with a leading 1)."""
        frame = np.asarray(frame)
        if frame.shape != (NUM_BLAZEPOSE, NUM_CHANNELS):
            raise InputError(
                f"a frame must have shape ({NUM_BLAZEPOSE}, {NUM_CHANNELS}), got {frame.shape}")
        feats, valid, self._state = compute_features(frame[None], self.aspect, self._state,
                                                     self.focal)
        out, self._cache = self.predictor.backend.step(feats, valid, self._cache)
        slots = out[0]
        c = self._cov
        if valid[0]:
            if self._filter is not None:
                slots = self._filter(slots).astype(np.float32)
            self._last, self._seen_valid, self._in_gap = slots, True, False
            c = dataclasses.replace(c, valid_frames=c.valid_frames + 1)
        else:
            if self._filter is not None:
                self._filter.reset()
            slots = self._last.copy()
            slots[0, 0:3] = 0.0
            run = (self._run + 1) if self._in_gap else 1
            c = dataclasses.replace(
                c, gaps=c.gaps + (not self._in_gap), longest_gap=max(c.longest_gap, run),
                held_frames=c.held_frames + self._seen_valid,
                rest_frames=c.rest_frames + (not self._seen_valid))
            self._in_gap, self._run = True, run
        self._cov = dataclasses.replace(c, frames=c.frames + 1)
        pred = slots_to_prediction(slots[None], valid, self._cov, self.predictor.offsets,
                                   self._last_quats)
        self._last_quats = pred.global_quats[0]
        return pred
