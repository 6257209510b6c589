"""Geometric prior: joint rotations solved directly from BlazePose landmarks (no learning).

For every joint, two directions observed between landmarks (in camera axes, metres) are
matched to two fixed directions in the joint's bone-local frame with the TRIAD method: the
first direction is matched exactly, the second fixes the twist about it. E.g. RightArm:
shoulder -> elbow (the bone) and elbow -> wrist (the twist); Hips: the hip line and
hip centre -> shoulder centre.

The bone-local directions (:data:`LOCAL_AXES`) were fitted on the real BlazePose /
ground-truth pairs of the TotalCapture training sequences (S2_freestyle2 held out):
``normalise(sum over clean frames of G_j^T normalise(observed))``;
``tests/engine/test_ik.py`` re-derives them. On the held-out sequence this prior alone, on the
default body, gives 102-153 mm MPJPE and 68-106 mm PA-MPJPE per camera: about the naive
baseline, before any learning. ``engine.model`` predicts a residual rotation on top of it,
so the network learns corrections instead of inverse kinematics from scratch.

Works on NumPy arrays and torch tensors (any leading batch shape), like ``engine.rotations``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import rotations as rot
from .skeleton import FEATURE_LANDMARKS, JOINT_NAMES

Array = Any
_K = {n: i for i, n in enumerate(FEATURE_LANDMARKS)}

#: Per joint (TotalCapture order): the two bone-local unit directions matched to the two
#: observed directions of :func:`observed_directions`.
LOCAL_AXES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "Hips": ((-0.989, 0.1008, 0.1086), (-0.0156, -0.1345, -0.9908)),
    "Spine": ((-0.9897, 0.0764, 0.1209), (-0.0077, -0.0733, -0.9973)),
    "Spine1": ((-0.9897, 0.0727, 0.1235), (-0.0084, -0.0527, -0.9986)),
    "Spine2": ((-0.9865, 0.0694, 0.1485), (-0.0279, 0.0527, -0.9982)),
    "Spine3": ((-0.9862, 0.0565, 0.1559), (-0.038, 0.0689, -0.9969)),
    "Neck": ((0.0143, -0.2275, -0.9737), (-0.9943, 0.0538, 0.0916)),
    "Head": ((-0.9609, 0.1037, -0.2566), (0.0306, -0.9446, -0.3268)),
    "RightShoulder": ((0.9708, 0.2021, -0.1289), (-0.0252, 0.105, -0.9942)),
    "RightArm": ((0.9962, 0.0482, 0.073), (0.7688, -0.639, 0.0236)),
    "RightForeArm": ((0.9987, 0.0469, 0.0209), (0.7055, 0.7035, 0.086)),
    "RightHand": ((0.7473, -0.5521, 0.3698), (-0.3477, -0.8564, 0.3818)),
    "LeftShoulder": ((-0.9485, 0.2289, 0.2191), (-0.1142, 0.1096, -0.9874)),
    "LeftArm": ((-0.981, -0.193, -0.0176), (-0.5903, -0.8042, 0.0698)),
    "LeftForeArm": ((-0.9746, 0.2148, 0.0629), (-0.5452, 0.838, -0.0219)),
    "LeftHand": ((-0.9673, -0.1605, 0.1963), (-0.4489, -0.7751, 0.4446)),
    "RightUpLeg": ((0.0214, -0.0331, 0.9992), (-0.029, 0.278, 0.9602)),
    "RightLeg": ((-0.0282, -0.0973, 0.9949), (0.0225, -0.3965, 0.9177)),
    "RightFoot": ((0.0975, -0.9747, -0.2011), (-0.0527, 0.9348, -0.3514)),
    "LeftUpLeg": ((-0.0131, -0.058, 0.9982), (-0.0215, 0.2954, 0.9551)),
    "LeftLeg": ((-0.021, -0.066, 0.9976), (-0.0135, -0.4099, 0.912)),
    "LeftFoot": ((0.0607, -0.9975, 0.0374), (0.0456, 0.7255, -0.6867)),
}


def observed_directions(x: Array) -> dict[str, tuple[Array, Array]]:
    """x (..., 25, 3): the feature landmarks (``skeleton.FEATURE_LANDMARKS``) in camera axes.
    Returns, per joint, the two observed (unnormalised) directions (..., 3)."""
    def p(name):
        return x[..., _K[name], :]

    hip = 0.5 * (p("left_hip") + p("right_hip"))
    sh = 0.5 * (p("left_shoulder") + p("right_shoulder"))
    ear = 0.5 * (p("left_ear") + p("right_ear"))
    up = sh - hip
    hip_line = p("left_hip") - p("right_hip")
    sh_line = p("left_shoulder") - p("right_shoulder")
    out = {"Hips": (hip_line, up)}
    for n in ("Spine", "Spine1", "Spine2", "Spine3"):
        out[n] = (sh_line, up)
    out["Neck"] = (ear - sh, sh_line)
    out["Head"] = (p("left_ear") - p("right_ear"), p("nose") - ear)
    for s, S in (("right", "Right"), ("left", "Left")):
        sho, elb, wri = p(s + "_shoulder"), p(s + "_elbow"), p(s + "_wrist")
        hand = 0.5 * (p(s + "_index") + p(s + "_pinky"))
        hp, kn, an = p(s + "_hip"), p(s + "_knee"), p(s + "_ankle")
        toe, heel = p(s + "_foot_index"), p(s + "_heel")
        out[S + "Shoulder"] = (sho - sh, up)
        out[S + "Arm"] = (elb - sho, wri - elb)
        out[S + "ForeArm"] = (wri - elb, elb - sho)
        out[S + "Hand"] = (hand - wri, p(s + "_index") - p(s + "_pinky"))
        out[S + "UpLeg"] = (kn - hp, an - kn)
        out[S + "Leg"] = (an - kn, kn - hp)
        out[S + "Foot"] = (toe - heel, an - 0.5 * (toe + heel))
    return out


def _triad(v1: Array, v2: Array) -> Array:
    """(..., 3) x2 -> (..., 3, 3) orthonormal frame with columns v1, v1 x v2, v1 x (v1 x v2)."""
    t1 = rot._normalize(v1)
    t2 = rot._normalize(rot._cross(t1, v2))
    return rot._stack([t1, t2, rot._cross(t1, t2)], axis=-1)


def _local_triads() -> np.ndarray:
    a = np.array([LOCAL_AXES[n] for n in JOINT_NAMES], dtype=np.float64)  # (21, 2, 3)
    return _triad(a[:, 0], a[:, 1])  # (21, 3, 3)


_LOCAL_TRIADS = _local_triads()


def prior_rotations(x: Array) -> Array:
    """Global joint rotations (..., 21, 3, 3) (bone-local -> camera) from the feature
    landmarks x (..., 25, 3) in camera axes. Degenerate input (e.g. all zeros) gives finite
    values; callers mask frames without a detection."""
    obs = observed_directions(x)
    v1 = rot._stack([obs[n][0] for n in JOINT_NAMES], axis=-2)  # (..., 21, 3)
    v2 = rot._stack([obs[n][1] for n in JOINT_NAMES], axis=-2)
    world = _triad(v1, v2)                                       # (..., 21, 3, 3)
    local = _LOCAL_TRIADS
    if rot._is_torch(world):
        import torch
        local = torch.as_tensor(local, dtype=world.dtype, device=world.device)
        return world @ local.transpose(-1, -2)
    return world @ np.swapaxes(local.astype(world.dtype), -1, -2)


def _det3(m: Array) -> Array:
    """Determinant of (..., 3, 3), written out (no LU: works in any dtype, fast for 3x3)."""
    return (m[..., 0, 0] * (m[..., 1, 1] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 1])
            - m[..., 0, 1] * (m[..., 1, 0] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 0])
            + m[..., 0, 2] * (m[..., 1, 0] * m[..., 2, 1] - m[..., 1, 1] * m[..., 2, 0]))


def apply_prior(rot6d: Array, x: Array) -> Array:
    """Compose the network's residual rotations with the prior.

    rot6d (..., 21, 6): slot 1 (Hips, global) and slots 2..21 (local) as the network outputs
    them, residuals of the identity; x (..., 25, 3) the feature landmarks in camera axes
    (feature channels 0-2, before normalisation). Returns (..., 21, 6): Hips global =
    prior_Hips @ R(res_Hips), joint j local = prior_local_j @ R(res_j), where prior_local is the
    prior's global rotations turned local. Frames whose prior is degenerate (no detection:
    all-zero landmarks) keep the residual alone.
    """
    from .kinematics import global_to_local

    if rot._is_torch(x):
        import torch
        # float32 and no autocast: the prior is geometry, not learned (bf16 has no det on CPU)
        with torch.autocast(device_type=x.device.type, enabled=False):
            g = prior_rotations(x.detach().float())
            eye = torch.eye(3, dtype=g.dtype, device=g.device)
            g = torch.where((_det3(g) > 0.5)[..., None, None], g, eye)
            prior = torch.cat([g[..., :1, :, :], global_to_local(g)], dim=-3)
            return rot.matrix_to_rotation_6d(prior @ rot.rotation_6d_to_matrix(rot6d.float()))
    g = prior_rotations(x)
    g = np.where((_det3(g) > 0.5)[..., None, None], g, np.eye(3, dtype=g.dtype))
    prior = np.concatenate([g[..., :1, :, :], global_to_local(g)], axis=-3)
    return rot.matrix_to_rotation_6d(prior @ rot.rotation_6d_to_matrix(rot6d)).astype(rot6d.dtype)


def fit_local_axes(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Fit :data:`LOCAL_AXES` from (x (F, 25, 3) landmarks in camera axes, G (F, 21, 3, 3)
    ground-truth global rotations) pairs of clean frames. Returns name -> (2, 3)."""
    sums = {n: np.zeros((2, 3)) for n in JOINT_NAMES}
    for x, g in pairs:
        obs = observed_directions(x.astype(np.float64))
        for j, n in enumerate(JOINT_NAMES):
            for k in range(2):
                sums[n][k] += np.einsum("fji,fj->i", g[:, j], rot._normalize(obs[n][k]))
    return {n: s / np.linalg.norm(s, axis=-1, keepdims=True) for n, s in sums.items()}
