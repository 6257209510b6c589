"""Inference: BlazePose landmarks (F, 33, 10) -> rotations, joints and root motion.

One pipeline, three entry points:

* :meth:`Predictor.predict` -- a whole sequence. Features (``engine.features``) and the model
  run chunk by chunk (``DEFAULT_CHUNK`` frames), carrying ``FeatureState`` and the model's
  key/value cache, so the result equals one pass over the sequence while memory per chunk
  stays bounded; the final conversion also runs in blocks, into preallocated arrays.
* :class:`ChunkedRun` (``Predictor.begin``) -- the same, fed while the landmarks are still
  being made (``blaze2cap animate`` runs it beside BlazePose).
* :class:`StreamingPredictor` -- one frame at a time (live use); on frames with a detection
  its outputs equal :meth:`Predictor.predict` on the same frames, from the first frame on.

The torch backend (:class:`TorchBackend`) runs the model through a lean inference-only forward
pass: keys rotated once at their absolute frame index in a preallocated ring cache, banded
attention in blocks for chunks, no per-call tables or autograd.

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
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import rotations as rot
from .errors import CheckpointError, InputError
from .features import (DEFAULT_ASPECT, DEFAULT_FOCAL, FeatureState, check_landmarks,
                       compute_features)
from .filters import OneEuroConfig, OneEuroFilter, one_euro
from .kinematics import forward_kinematics, local_to_global
from .model_config import JOINT_SCALE
from .numpy_model import ROOT_OFFSET, NumpyMotionTransformer, load_numpy_model
from .skeleton import (DEFAULT_OFFSETS, NUM_BLAZEPOSE, NUM_CHANNELS, NUM_JOINTS, NUM_SLOTS,
                       SLOT_NAMES)

log = logging.getLogger(__name__)

#: The shipped weights (``blaze2cap train`` + export put them here).
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.safetensors"

#: Rest pose Hips rotation (bone-local -> camera): spine (local -z) up (camera -y), the
#: subject's right (local +x) on the image's left (camera -x), facing the camera.
REST_ROOT_ROTATION = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32)
#: Rest Hips position in the camera frame, metres (the model's root offset: 4 m ahead).
REST_ROOT_POSITION = ROOT_OFFSET[3:6].copy()
#: Frames per network call in batch prediction (fast on 2 CPU cores; any value gives the same
#: output) and per block of the final conversion (bounds its temporaries).
DEFAULT_CHUNK = 512
CONVERT_CHUNK = 4096


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


def _slot_indices(name: str) -> list[int]:
    """Output slots named ``name``: a slot name (``Hips``, ``RightShoulder``) or a side-free
    name for both sides (``Shoulder`` = RightShoulder and LeftShoulder)."""
    if name in SLOT_NAMES:
        return [SLOT_NAMES.index(name)]
    both = [SLOT_NAMES.index(side + name) for side in ("Right", "Left")
            if side + name in SLOT_NAMES]
    if not both:
        raise ValueError(f"unknown output slot {name!r} (one of {', '.join(SLOT_NAMES)}, or a "
                         "name without Right/Left for both sides)")
    return both


def parse_smoothing(text: str) -> OneEuroConfig:
    """One Euro setting from ``MIN_CUTOFF,BETA[,SLOT=HZ...]``, e.g. ``4,0.1`` or
    ``4,0.1,Hips=2.5,Shoulder=10``: min cutoff (Hz) and beta for all 22 output slots, then
    slots with their own min cutoff (names as in ``skeleton.SLOT_NAMES``; a name without
    Right/Left sets both sides). Raises ValueError with a one-line message."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        mc, beta = float(parts[0]), float(parts[1])
        slots = {}
        for part in parts[2:]:
            name, hz = part.split("=")
            for i in _slot_indices(name.strip()):
                slots[i] = float(hz)
        return OneEuroConfig(mc, beta, vector_cutoffs=tuple(sorted(slots.items())))
    except (IndexError, ValueError) as err:
        detail = str(err) if "slot" in str(err) or "One Euro" in str(err) else ""
        raise ValueError(f"smoothing takes MIN_CUTOFF,BETA[,SLOT=HZ...], e.g. 4,0.1 or "
                         f"4,0.1,Hips=2.5,Shoulder=10; got {text!r}"
                         + (f" ({detail})" if detail else "")) from None


def format_smoothing(config: OneEuroConfig) -> str:
    """The ``parse_smoothing`` text of a setting (d_cutoff and fps are not part of it)."""
    return ",".join([f"{config.min_cutoff:g}", f"{config.beta:g}"]
                    + [f"{SLOT_NAMES[i]}={c:g}" for i, c in config.vector_cutoffs])


def smoothing_meta(config: OneEuroConfig) -> dict:
    """The weights' metadata entry of a setting (read back by :func:`recommended_config`)."""
    out = {"min_cutoff": config.min_cutoff, "beta": config.beta, "d_cutoff": config.d_cutoff}
    if config.vector_cutoffs:
        out["slot_min_cutoff"] = {SLOT_NAMES[i]: c for i, c in config.vector_cutoffs}
    return out


def recommended_config(meta: dict) -> InferenceConfig:
    """The inference settings stored with weights (``meta["smoothing"]``: One Euro
    ``min_cutoff``, ``beta``, ``d_cutoff`` and optional ``slot_min_cutoff`` {slot name: Hz}),
    or the defaults."""
    sm = meta.get("smoothing") if isinstance(meta, dict) else None
    if not isinstance(sm, dict):
        return InferenceConfig()
    try:
        slots = sm.get("slot_min_cutoff") or {}
        pairs = sorted((SLOT_NAMES.index(name), float(hz)) for name, hz in dict(slots).items())
        return InferenceConfig(smoothing=OneEuroConfig(
            float(sm["min_cutoff"]), float(sm["beta"]), float(sm.get("d_cutoff", 1.0)),
            vector_cutoffs=tuple(pairs)))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"the weights' smoothing setting is invalid: {sm!r}") from err


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
    """The torch ``MotionTransformer`` in inference mode, computed by its own lean forward pass.

    The same operations as ``MotionTransformer.forward`` (``engine.model``), arranged for
    long sequences and one frame at a time:

    * keys are rotated (RoPE) once, at their absolute frame index, and cached rotated; the
      cache (:class:`RollingCache`) is a ring of the last ``window`` frames per layer,
      preallocated and updated in place (attention depends only on frame distances, so
      absolute positions give the model's outputs);
    * a chunk of S frames attends in blocks of ``block`` queries, each against its own frames
      and the ``window - 1`` before them, instead of all S + window - 1 keys (the band mask
      keeps only those anyway);
    * one frame (S = 1) attends straight to the ring, no copies;
    * weights are read from the module's tensors, cos / sin tables are kept for a range of
      positions, no autograd (``torch.inference_mode``).

    Outputs equal the module's forward to float32 rounding (``tests/engine/test_streaming.py``).
    """

    name = "torch"
    BLOCK = 32        # queries per attention block of a chunk
    ROPE_SPAN = 4096  # positions per cached cos / sin table

    def __init__(self, model, device: str = "cpu", block: int = BLOCK):
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        cfg = model.cfg
        self.window, self.n_heads = cfg.window, cfg.n_heads
        self.d_model, self.head_dim = cfg.d_model, cfg.d_model // cfg.n_heads
        self.block = max(1, int(block))
        self._inv_freq = 1.0 / (cfg.rope_base ** (
            np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim))
        self._rope_start = 0
        self._cos = self._sin = None
        self._blocks = self._layers()
        self._prior = bool(getattr(cfg, "geometric_prior", False))

    def numpy_twin(self) -> NumpyMotionTransformer:
        """The same network on NumPy (the module's weights as float32 arrays, CPU): what
        :class:`StreamingPredictor` runs, one frame at a time."""
        state = {k: v.detach().float().cpu().numpy() for k, v in self.model.state_dict().items()}
        return NumpyMotionTransformer(state, self.model.cfg.to_dict())

    def new_cache(self) -> "RollingCache":
        p = next(self.model.parameters())
        return RollingCache(self._torch, self.model.cfg.n_layers, self.n_heads, self.window,
                            self.head_dim, p.device, p.dtype)

    def step(self, feats, valid, cache):
        torch = self._torch
        cache = self.new_cache() if cache is None else cache
        s = len(feats)
        with torch.inference_mode():
            f = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).reshape(s, -1)
            v = torch.from_numpy(np.ascontiguousarray(valid, dtype=bool))
            out = self._forward(f.to(self.device), v.to(self.device), cache)
            out = out.float().cpu().numpy()
        cache.t += s
        return out, cache

    # -- the forward pass --------------------------------------------------------------------
    def _rope(self, t: int, s: int):
        """RoPE factors for absolute positions t .. t+s-1, each (s, head_dim): cos twice and
        (-sin, sin), from float64 angles, so ``x * cos + roll(x) * sin`` is the model's
        ``apply_rope`` operation for operation (x1 cos - x2 sin, x1 sin + x2 cos)."""
        if self._cos is None or t < self._rope_start or t + s > self._rope_start + len(self._cos):
            n = max(s, self.ROPE_SPAN)
            ang = np.arange(t, t + n, dtype=np.float64)[:, None] * self._inv_freq[None]
            cos, sin = np.cos(ang), np.sin(ang)
            p = next(self.model.parameters())
            self._cos = self._torch.from_numpy(np.concatenate([cos, cos], 1)).to(p.device, p.dtype)
            self._sin = self._torch.from_numpy(np.concatenate([-sin, sin], 1)).to(p.device, p.dtype)
            self._rope_start = t
        a = t - self._rope_start
        return self._cos[a:a + s], self._sin[a:a + s]

    def _forward(self, f, valid, cache: "RollingCache"):
        """f (S, 450), valid (S,) bool -> (S, 22, 6); writes the S frames into ``cache``."""
        torch = self._torch
        F = torch.nn.functional
        m = self.model
        s, c, h, d = f.shape[0], self.d_model, self.n_heads, self.head_dim
        x = (f - m.input_mean) / m.input_std
        x = x * valid[:, None]
        frame = m.frame_branch(x) if getattr(m.cfg, "frame_branch", 0) else None  # (S, 20, 3)
        x = F.linear(x, m.input_proj.weight, m.input_proj.bias)
        cos, sin = self._rope(cache.t, s)
        attend = self._ring_attention(cache, valid) if s == 1 else \
            self._block_attention(cache, valid)
        for i, (ln1, qkv_w, qkv_b, proj_w, proj_b, ln2, up_w, up_b, down_w, down_b) \
                in enumerate(self._blocks):
            a = F.layer_norm(x, (c,), *ln1)
            qkv = F.linear(a, qkv_w, qkv_b).view(s, 3 * h, d).transpose(0, 1)  # (3H, S, D)
            qk = qkv[:2 * h]
            qk = qk * cos + qk.roll(d // 2, dims=-1) * sin                     # RoPE on q and k
            y = attend(i, qk[:h], qk[h:], qkv[2 * h:])                          # (H, S, D)
            x = x + F.linear(y.transpose(0, 1).reshape(s, c), proj_w, proj_b)
            a = F.layer_norm(x, (c,), *ln2)
            x = x + F.linear(F.gelu(F.linear(a, up_w, up_b)), down_w, down_b)
        slots = self._ring_slots(cache, len(valid))
        cache.valid[slots] = valid[len(valid) - len(slots):]
        x = F.layer_norm(x, (c,), m.ln_f.weight, m.ln_f.bias, m.ln_f.eps)

        def head(seq, inp):
            return F.linear(F.gelu(F.linear(inp, seq[0].weight, seq[0].bias)),
                            seq[2].weight, seq[2].bias)
        root = head(m.root_head, x).view(s, 2, 6)
        body = head(m.body_head, x).view(s, NUM_SLOTS - 2, 6) + m.identity_6d
        trans = root[:, :1] * m.root_scale + m.root_offset
        rot6d = torch.cat([root[:, 1:] + m.identity_6d, body], dim=1)          # (S, 21, 6)
        joint_head = bool(getattr(m.cfg, "joint_head", False))
        if self._prior or joint_head:  # as the module: prior, then joint guidance
            from .guide import output_matrices

            feats = f.view(s, m.cfg.num_keypoints, m.cfg.num_features)
            residual = head(m.joint_head, x).view(s, NUM_SLOTS - 2, 3) * JOINT_SCALE \
                if joint_head else None
            mix = 0.0 if frame is None else m.cfg.frame_mix * valid[:, None, None].to(x.dtype)
            mats, _ = output_matrices(rot6d, feats[..., 0:3] if self._prior else None,
                                      m.cfg.prior_version, residual, frame, mix)
            rot6d = rot.matrix_to_rotation_6d(mats)
        return torch.cat([trans, rot6d], dim=1)

    def _layers(self) -> list[tuple]:
        """Per block: (LayerNorm 1 args), qkv weight, bias, proj weight, bias, (LayerNorm 2
        args), MLP up weight, bias, down weight, bias (the module's own tensors)."""
        return [((b.ln1.weight, b.ln1.bias, b.ln1.eps), b.attn.qkv.weight, b.attn.qkv.bias,
                 b.attn.proj.weight, b.attn.proj.bias, (b.ln2.weight, b.ln2.bias, b.ln2.eps),
                 b.mlp[0].weight, b.mlp[0].bias, b.mlp[2].weight, b.mlp[2].bias)
                for b in self.model.blocks]

    def _ring_slots(self, cache, s: int):
        """Ring slots of the last min(S, window) of the S frames being added."""
        n = min(s, self.window)
        return self._torch.arange(cache.t + s - n, cache.t + s, device=cache.valid.device) \
            % self.window

    def _ring_attention(self, cache, valid):
        """One frame: attend to the ring (the window's earlier valid frames and the frame
        itself); keys and values go into the ring first."""
        torch = self._torch
        slot = cache.t % self.window
        bias = torch.zeros(self.window, dtype=cache.k.dtype, device=cache.k.device)
        bias.masked_fill_(~cache.valid, float("-inf"))
        bias[slot] = 0.0
        scale = 1.0 / math.sqrt(self.head_dim)

        def attend(i, q, k, v):
            cache.k[i, :, slot] = k[:, 0]
            cache.v[i, :, slot] = v[:, 0]
            att = torch.softmax(torch.matmul(q * scale, cache.k[i].transpose(1, 2)) + bias, -1)
            return torch.matmul(att, cache.v[i])
        return attend

    def _block_attention(self, cache, valid):
        """S > 1 frames: blocks of ``block`` queries, each against its frames and the
        window - 1 before them (from the ring for the first block)."""
        torch = self._torch
        s, w = len(valid), self.window
        p = w - 1
        bq = min(self.block, s)
        nb = -(-s // bq)
        pad = nb * bq - s
        dev = valid.device
        past_pos = torch.arange(cache.t - p, cache.t, device=dev)
        past = past_pos % w                                         # ring slots, oldest first
        vk = torch.cat([cache.valid[past] & (past_pos >= 0), valid, valid.new_zeros(pad)])
        i = torch.arange(bq, device=dev)[:, None]
        j = torch.arange(bq + p, device=dev)[None, :]
        band = (j >= i) & (j <= i + p)
        mask = (band[None] & vk.unfold(0, bq + p, bq)[:, None, :]) | (j == i + p)[None]
        mask = mask[None]                                                   # (1, nb, bq, bq + P)
        slots = self._ring_slots(cache, s)
        keep = len(slots)
        F = torch.nn.functional

        def attend(li, q, k, v):
            h, d = q.shape[0], q.shape[-1]
            ks = torch.cat([cache.k[li][:, past], k, k.new_zeros(h, pad, d)], dim=1)
            vs = torch.cat([cache.v[li][:, past], v, v.new_zeros(h, pad, d)], dim=1)
            cache.k[li][:, slots] = k[:, s - keep:]
            cache.v[li][:, slots] = v[:, s - keep:]
            if pad:
                q = torch.cat([q, q.new_zeros(h, pad, d)], dim=1)
            kw = ks.unfold(1, bq + p, bq).transpose(-1, -2)                 # (H, nb, bq+P, D)
            vw = vs.unfold(1, bq + p, bq).transpose(-1, -2)
            y = F.scaled_dot_product_attention(q.reshape(h, nb, bq, d), kw, vw, attn_mask=mask)
            return y.reshape(h, nb * bq, d)[:, :s]
        return attend


class RollingCache:
    """Key/value cache of :class:`TorchBackend`: per layer the keys (rotated at their absolute
    frame index) and values of the last ``window`` frames in a ring (frame t in slot
    t % window), their validity, and ``t`` = frames seen. Updated in place by ``step``."""

    def __init__(self, torch, n_layers: int, n_heads: int, window: int, head_dim: int,
                 device, dtype):
        self.t = 0
        self.k = torch.zeros(n_layers, n_heads, window, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.valid = torch.zeros(window, dtype=torch.bool, device=device)


def make_backend(model, device: str = "cpu") -> Backend:
    """Wrap a torch ``MotionTransformer`` or a ``NumpyMotionTransformer``."""
    if isinstance(model, NumpyMotionTransformer):
        return NumpyBackend(model)
    return TorchBackend(model, device)


def frame_network(backend: Backend | Any) -> NumpyMotionTransformer | None:
    """The network :class:`StreamingPredictor` runs one frame at a time, or None (then it calls
    ``backend.step`` frame by frame).

    For both backends it is :meth:`NumpyMotionTransformer.step_frame` with the backend's
    weights: for one frame the cost is the number of calls, not arithmetic, and a NumPy call
    costs about a microsecond where a torch operation costs several (on the 2-core benchmark
    machine: about 1 ms a frame against 4.5 ms for the lean torch forward). Its outputs
    equal the backend's batch outputs to float32 rounding.
    """
    if isinstance(backend, NumpyBackend):
        return backend.model
    if isinstance(backend, TorchBackend):
        return backend.numpy_twin()
    return None


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


def bridge_gaps(slots: np.ndarray, valid: np.ndarray, max_gap: int,
                inplace: bool = False) -> tuple[np.ndarray, Coverage]:
    """Fill frames without a detection (see the module docstring).

    slots (F, 22, 6) raw output (frames with valid False are ignored), valid (F,) bool,
    max_gap: longest gap (frames) that is interpolated. Returns filled slots (``slots``
    itself when ``inplace``, else a copy) and coverage.
    """
    out = slots if inplace else slots.copy()
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
                        prev_quats: np.ndarray | None = None,
                        inplace: bool = False) -> Prediction:
    """Filled slots (F, 22, 6) -> :class:`Prediction` (FK on offsets (21, 3) metres).

    Converted ``CONVERT_CHUNK`` frames at a time into preallocated outputs, so temporaries
    stay bounded for any length; ``inplace`` (float32 ``slots`` only) turns ``slots`` itself
    into ``local_6d``. ``prev_quats`` (21, 4): the frame before, for continuous signs.
    """
    n = len(slots)
    inplace = inplace and slots.dtype == np.float32
    local_6d = slots if inplace else slots.astype(np.float32)
    root = local_6d[:, 0, 3:6].copy()
    quats = np.empty((n, NUM_JOINTS, 4), dtype=np.float32)
    joints = np.empty((n, NUM_JOINTS, 3), dtype=np.float32)
    prev = prev_quats
    for a in range(0, n, CONVERT_CHUNK):
        chunk = local_6d[a:a + CONVERT_CHUNK]
        mats = rot.rotation_6d_to_matrix(chunk[:, 1:])              # root + 20 local (.., 3, 3)
        glob = local_to_global(mats[:, 0], mats[:, 1:])             # (n, 21, 3, 3)
        q = _continuous_quats(rot.matrix_to_quaternion(glob).astype(np.float32), prev)
        quats[a:a + len(q)] = q
        joints[a:a + len(q)] = forward_kinematics(glob, offsets)
        chunk[:, 1:] = rot.matrix_to_rotation_6d(mats)
        prev = q[-1]
    return Prediction(local_6d=local_6d, global_quats=quats, joints=joints,
                      root_translation=root, valid=valid.astype(bool), coverage=coverage)


def frame_to_prediction(slots: np.ndarray, valid: bool, coverage: Coverage,
                        offsets: np.ndarray = DEFAULT_OFFSETS,
                        prev_quats: np.ndarray | None = None,
                        mats: np.ndarray | None = None) -> Prediction:
    """One frame's filled slots (22, 6) float32 -> :class:`Prediction` of one frame: the same
    conversion as :func:`slots_to_prediction` on ``slots[None]``, in fewer array calls (the
    streaming path). ``slots`` becomes the frame's ``local_6d`` (rotations re-orthonormalised
    in place). ``prev_quats`` (21, 4): the frame before, for continuous signs. ``mats``
    (21, 3, 3): the rotations slots 1..21 encode, when the caller has them (the network's
    prior composition): used as they are (orthonormal to float rounding), not decoded again."""
    if mats is None:
        mats = rot.rotation_6d_to_matrix(slots[1:])                 # root + 20 local (21, 3, 3)
        slots[1:] = rot.matrix_to_rotation_6d(mats)
    glob = local_to_global(mats[0], mats[1:])                       # (21, 3, 3)
    q = rot.matrix_to_quaternion(glob).astype(np.float32)           # (21, 4)
    if prev_quats is not None:                                      # as _continuous_quats
        flip = np.add.reduce(q * prev_quats, axis=-1) < 0
        np.negative(q, out=q, where=flip[:, None])
    joints = forward_kinematics(glob, offsets).astype(np.float32, copy=False)
    return Prediction(local_6d=slots[None], global_quats=q[None], joints=joints[None],
                      root_translation=slots[None, 0, 3:6].copy(),
                      valid=np.array([valid]), coverage=coverage)


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
                        config: InferenceConfig | None = None, device: str = "cpu",
                        offsets: np.ndarray | None = None) -> "Predictor":
        """Load weights: ``path`` None = the shipped ``engine/weights/default.safetensors``.

        backend: "torch" (.pt checkpoints or .safetensors), "numpy" (.safetensors only, no
        torch needed) or "auto" (torch when importable). ``config`` None = the settings the
        weights recommend (their metadata's ``smoothing``: the causal One Euro setting tuned
        with the recipe), else no smoothing.
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

            model, meta = load_model(path, device=device)
            be: Backend = TorchBackend(model, device)
        else:
            model, meta = load_numpy_model(path)
            be = NumpyBackend(model)
        if config is None:
            config = recommended_config(meta)
        log.debug("loaded %s on the %s backend", path, be.name)
        return cls(be, config, offsets)

    def begin(self, aspect: float = DEFAULT_ASPECT, fps: float = 30.0,
              focal: float = DEFAULT_FOCAL, frames: int | None = None,
              chunk: int = DEFAULT_CHUNK) -> "ChunkedRun":
        """A batch prediction fed chunk by chunk (see :class:`ChunkedRun`); ``frames``: the
        expected length, if known (preallocates)."""
        return ChunkedRun(self, aspect, fps, focal, frames, chunk)

    def raw(self, landmarks: np.ndarray, aspect: float = DEFAULT_ASPECT,
            chunk: int = DEFAULT_CHUNK, focal: float = DEFAULT_FOCAL
            ) -> tuple[np.ndarray, np.ndarray]:
        """Model output before smoothing and bridging: ((F, 22, 6), valid (F,) bool)."""
        run = self._fed(landmarks, aspect, 30.0, focal, chunk)
        return run.raw()

    def predict(self, landmarks: np.ndarray, aspect: float = DEFAULT_ASPECT, fps: float = 30.0,
                chunk: int = DEFAULT_CHUNK, focal: float = DEFAULT_FOCAL) -> Prediction:
        """landmarks (F, 33, 10) (``engine.features`` format), aspect = video width / height,
        fps = frame rate (for gap lengths and smoothing), focal = focal length / long image
        side (``engine.features``) -> :class:`Prediction` of F frames."""
        return self._fed(landmarks, aspect, fps, focal, chunk).finish()

    def _fed(self, landmarks, aspect, fps, focal, chunk) -> "ChunkedRun":
        lm = check_landmarks(landmarks)
        if lm.shape[0] == 0:
            raise InputError("the landmark sequence holds no frames")
        run = self.begin(aspect, fps, focal, frames=lm.shape[0], chunk=chunk)
        run.feed(lm)
        return run

    def stream(self, aspect: float = DEFAULT_ASPECT, fps: float = 30.0,
               focal: float = DEFAULT_FOCAL) -> "StreamingPredictor":
        return StreamingPredictor(self, aspect, fps, focal)


class ChunkedRun:
    """Batch prediction fed in chunks (e.g. while BlazePose is still running).

    ``feed(landmarks (n, 33, 10))`` runs the features and the network on the new frames right
    away, ``chunk`` frames per call, carrying the feature state and the key/value cache;
    ``finish()`` applies the smoothing and the gap bridging (which need the whole sequence)
    and converts. The result equals :meth:`Predictor.predict` on all the frames at once.
    Memory: the raw output (528 bytes per frame) and then the :class:`Prediction`, which
    reuses it; every temporary is bounded by ``chunk`` or ``CONVERT_CHUNK`` frames.
    """

    def __init__(self, predictor: Predictor, aspect: float = DEFAULT_ASPECT, fps: float = 30.0,
                 focal: float = DEFAULT_FOCAL, frames: int | None = None,
                 chunk: int = DEFAULT_CHUNK):
        _check_rates(aspect, fps)
        if chunk < 1:
            raise InputError(f"chunk must be at least 1 frame, got {chunk}")
        self.predictor = predictor
        self.aspect, self.fps, self.focal = float(aspect), float(fps), float(focal)
        self.chunk = chunk
        self.frames = 0
        self._state, self._cache = FeatureState(), None
        size = max(int(frames or 0), 1)
        self._slots = np.empty((size, NUM_SLOTS, 6), dtype=np.float32)
        self._valid = np.empty(size, dtype=bool)
        self._finished = False

    def feed(self, landmarks: np.ndarray) -> None:
        """Append frames: landmarks (n, 33, 10) (``engine.features`` format)."""
        if self._finished:
            raise RuntimeError("this run has finished")
        lm = check_landmarks(landmarks)
        for i in range(0, lm.shape[0], self.chunk):
            part = lm[i:i + self.chunk]
            feats, valid, self._state = compute_features(part, self.aspect, self._state,
                                                         self.focal)
            out, self._cache = self.predictor.backend.step(feats, valid, self._cache)
            self._reserve(self.frames + len(part))
            self._slots[self.frames:self.frames + len(part)] = out
            self._valid[self.frames:self.frames + len(part)] = valid
            self.frames += len(part)

    def _reserve(self, n: int) -> None:
        if n > len(self._slots):  # grow geometrically
            size = max(n, 2 * len(self._slots))
            slots = np.empty((size, NUM_SLOTS, 6), dtype=np.float32)
            valid = np.empty(size, dtype=bool)
            n = self.frames
            slots[:n], valid[:n] = self._slots[:n], self._valid[:n]
            self._slots, self._valid = slots, valid

    def raw(self) -> tuple[np.ndarray, np.ndarray]:
        """Model output so far, before smoothing and bridging: ((F, 22, 6), valid (F,))."""
        return self._slots[:self.frames].copy(), self._valid[:self.frames].copy()

    def finish(self) -> Prediction:
        """Smooth, bridge and convert all frames fed so far (once) -> :class:`Prediction`."""
        if self.frames == 0:
            raise InputError("the landmark sequence holds no frames")
        if self._finished:
            raise RuntimeError("this run has finished")
        self._finished = True
        n = self.frames
        slots, valid = self._slots[:n], self._valid[:n].copy()
        if len(self._slots) != n:
            slots = slots.copy()
        self._slots = self._valid = None
        config = self.predictor.config
        if config.smoothing is not None:
            cfg = dataclasses.replace(config.smoothing, fps=self.fps)
            slots = one_euro(slots, cfg, valid).astype(np.float32)
        max_gap = int(round(config.max_interp_gap_s * self.fps))
        slots, cov = bridge_gaps(slots, valid, max_gap, inplace=True)
        return slots_to_prediction(slots, valid, cov, self.predictor.offsets, inplace=True)


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
        self._net = frame_network(predictor.backend)
        self.reset()

    def reset(self) -> None:
        """Start a new sequence."""
        self._state = FeatureState()
        self._cache = self._net.new_frame_cache() if self._net is not None else None
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
        mats = None  # the rotations the slots encode, when the network gives them
        if self._net is not None:
            slots, mats = self._net.step_frame(feats[0], bool(valid[0]), self._cache,
                                               matrices=True)
        else:
            out, self._cache = self.predictor.backend.step(feats, valid, self._cache)
            slots = out[0]
        c = self._cov
        if valid[0]:
            if self._filter is not None:
                slots, mats = self._filter(slots).astype(np.float32), None
            self._last, self._seen_valid, self._in_gap = slots, True, False
            c = Coverage(frames=c.frames + 1, valid_frames=c.valid_frames + 1, gaps=c.gaps,
                         longest_gap=c.longest_gap, held_frames=c.held_frames,
                         rest_frames=c.rest_frames)
        else:
            if self._filter is not None:
                self._filter.reset()
            slots, mats = self._last.copy(), None
            slots[0, 0:3] = 0.0
            run = (self._run + 1) if self._in_gap else 1
            c = Coverage(frames=c.frames + 1, valid_frames=c.valid_frames,
                         gaps=c.gaps + (not self._in_gap), longest_gap=max(c.longest_gap, run),
                         held_frames=c.held_frames + self._seen_valid,
                         rest_frames=c.rest_frames + (not self._seen_valid))
            self._in_gap, self._run = True, run
        self._cov = c  # (streaming never interpolates: interpolated_frames stays 0)
        pred = frame_to_prediction(slots.copy(), bool(valid[0]), c, self.predictor.offsets,
                                   self._last_quats, mats)
        self._last_quats = pred.global_quats[0]
        return pred
