"""Joint guidance: bone directions taken from predicted joint positions.

A model with a joint head (``ModelConfig.joint_head``) predicts, besides its rotations, the
positions of the 20 joints below the Hips (metres, camera frame, Hips at 0) as a residual on
the joints its own rotations give on the default body. The rotations are then turned so that
every bone points where the predicted joints say:

* each joint with one child (spine segments, neck, collarbones, upper arms, forearms, thighs,
  shins) gets the smallest rotation (a swing) that takes its bone to the direction from its
  predicted position to its child's; its twist about the bone is kept;
* the Hips gets the rotation (TRIAD) that takes its hip line to the predicted one exactly and
  its spine bone as close as the hip line allows;
* joints with no child (head, hands, feet) and Spine3 (three children) keep their rotation.

Why: on the held-out sequence, a network that regresses joint positions places the limbs
better than one that regresses rotations (PA-MPJPE 46.4 against 54.7 mm for the same
features; ``scripts/position_probe.py``), and forward kinematics of the guided rotations on
the default body keeps most of that gain (README, Accuracy). The output stays 22 rotation
slots.

With a per-frame branch (``ModelConfig.frame_branch``) the predicted joints are, at inference,
a mix of the head's and those of a per-frame MLP trained apart (``frame``, ``mix``): the two
err differently, and their mean places the limbs better than either (``engine.model``).

Works on NumPy arrays and torch tensors (any leading batch shape; differentiable on torch).
The joints are the residual plus the default-body joints of the rotations themselves, with
their gradient: a joint loss trains the rotations' bone directions as well as the head (with
those joints detached the rotations' bone directions got no gradient at all, since the guided
output does not depend on them, and drifted: the validation error trailed by 8 mm at step
335).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import rotations as rot
from .ik import _triad, apply_prior_matrices  # the prior's TRIAD: one home for it
from .kinematics import _cat, _take, forward_kinematics, global_to_local, local_to_global
from .skeleton import DEFAULT_OFFSETS, JOINT_INDEX, NUM_JOINTS, PARENTS

Array = Any

#: Joints with exactly one child, and that child: their bone is swung onto the prediction.
SWUNG: tuple[int, ...] = tuple(j for j in range(NUM_JOINTS)
                               if sum(p == j for p in PARENTS) == 1)
SWUNG_CHILD: tuple[int, ...] = tuple(PARENTS.index(j) for j in SWUNG)
_SWUNG = np.array(SWUNG)
_CHILD = np.array(SWUNG_CHILD)
_RUL, _LUL, _SPINE = JOINT_INDEX["RightUpLeg"], JOINT_INDEX["LeftUpLeg"], JOINT_INDEX["Spine"]
_KEPT = np.array([j for j in range(1, NUM_JOINTS) if j not in SWUNG])
#: joint j of (Hips, swung..., kept...) back in skeleton order
_ORDER = np.argsort(np.concatenate([[0], _SWUNG, _KEPT]))
_EPS = 1e-4  # floor of 1 + cos(angle) in the swing: antiparallel bones stay finite
_SKEW = np.zeros((3, 3, 3))  # [v]x = v @ _SKEW.reshape(3, 9), reshaped to 3 x 3
for _i, _j, _k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):   # [v]x_ij = -eps_ijk v_k
    _SKEW[_k, _i, _j], _SKEW[_k, _j, _i] = -1.0, 1.0
_SKEW = _SKEW.reshape(3, 9)


def _const(arr: np.ndarray, like: Array) -> Array:
    if rot._is_torch(like):
        import torch
        return torch.as_tensor(arr, dtype=like.dtype, device=like.device)
    return arr.astype(like.dtype, copy=False)


def _clamp_min(x: Array, lo: float) -> Array:
    return x.clamp_min(lo) if rot._is_torch(x) else np.maximum(x, lo)


def _swing_parts(a: Array, b: Array) -> tuple[Array, Array, Array]:
    """Unit a, b (..., 3) -> (v = a x b, c = a . b, 1 / (1 + c) floored)."""
    a, b = rot._normalize(a), rot._normalize(b)
    v = rot._cross(a, b)
    c = (a * b).sum(-1)
    return v, c, 1.0 / _clamp_min(1 + c, _EPS)


def _rodrigues(v: Array, c: Array, inv: Array) -> Array:
    """c I + [v]x + v v^T / (1 + c): (..., 3, 3) from :func:`_swing_parts`' three parts."""
    skew = (v @ _const(_SKEW, v)).reshape(v.shape + (3,))                        # [v]x
    outer = v[..., :, None] * v[..., None, :]
    return c[..., None, None] * _const(np.eye(3), v) + skew + outer * inv[..., None, None]


def swing(a: Array, b: Array) -> Array:
    """(..., 3) x2 -> (..., 3, 3): the smallest rotation taking direction a to direction b:
    Rodrigues, c I + [v]x + v v^T / (1 + c) with v = a x b, c = a . b (a, b unit)."""
    return _rodrigues(*_swing_parts(a, b))


def _swung(a: Array, b: Array, m: Array) -> Array:
    """``swing(a, b) @ m`` for m (..., 3, 3), written out elementwise (no batched 3x3 products,
    which cost far more than their arithmetic on the CPU): row i of the result is
    c m_i + (v x column)_i + v_i (v^T m) / (1 + c)."""
    v, c, inv = _swing_parts(a, b)
    r0, r1, r2 = m[..., 0, :], m[..., 1, :], m[..., 2, :]
    vx, vy, vz = v[..., 0:1], v[..., 1:2], v[..., 2:3]
    w = (vx * r0 + vy * r1 + vz * r2) * inv[..., None]                 # v^T m / (1 + c)
    c = c[..., None]
    return rot._stack([c * r0 + vy * r2 - vz * r1 + vx * w,
                       c * r1 + vz * r0 - vx * r2 + vy * w,
                       c * r2 + vx * r1 - vy * r0 + vz * w], -2)


def _mixed(joints: Array, frame: Array | None, mix: Array | float) -> Array:
    """Joints 1..20 (..., 20, 3) moved a share ``mix`` (a float or an array broadcasting
    to (..., 1, 1)) of the way to ``frame`` (..., 20, 3); unchanged when frame is None."""
    return joints if frame is None else joints + mix * (frame - joints)


def guide_globals(glob: Array, residual: Array, frame: Array | None = None,
                  mix: Array | float = 0.0) -> tuple[Array, Array]:
    """Turn global rotations onto predicted joints.

    glob (..., 21, 3, 3) global rotations (bone-local -> camera); residual (..., 20, 3) metres.
    Returns (glob', joints): joints (..., 21, 3) = forward kinematics of ``glob`` on the
    default body + (0, residual), Hips at 0, then (when ``frame`` (..., 20, 3), metres, Hips at
    0, is given: the per-frame branch, ``ModelConfig.frame_branch``) joints 1..20 moved the
    share ``mix`` (float, or broadcasting to (..., 1, 1)) of the way to ``frame``; glob'
    (..., 21, 3, 3) as the module docstring says.
    """
    if not rot._is_torch(glob):
        return _guide_globals_numpy(glob, residual, frame, mix)
    base = forward_kinematics(glob)                                    # (..., 21, 3)
    joints = _cat([base[..., :1, :], _mixed(base[..., 1:, :] + residual, frame, mix)], -2)
    off = _const(np.asarray(DEFAULT_OFFSETS, dtype=np.float64), glob)
    g = _take(glob, _SWUNG, -3)                                                 # (..., K, 3, 3)
    cur = (g @ _take(off, _CHILD, -2)[..., None])[..., 0]                       # (..., K, 3)
    want = _take(joints, _CHILD, -2) - _take(joints, _SWUNG, -2)
    swung = _swung(cur, want, g)
    hips = glob[..., 0, :, :]
    cur_t = _triad(hips @ (off[_LUL] - off[_RUL]), hips @ off[_SPINE])
    want_t = _triad(joints[..., _LUL, :] - joints[..., _RUL, :], joints[..., _SPINE, :])
    hips = want_t @ cur_t.swapaxes(-1, -2) @ hips
    parts = [hips[..., None, :, :], swung, _take(glob, _KEPT, -3)]
    return _take(_cat(parts, -3), _ORDER, -3), joints


_OFF64 = np.asarray(DEFAULT_OFFSETS, dtype=np.float64)
_OFF_CHILD = _OFF64[_CHILD]                                                    # (K, 3)
_HIP_LINE, _SPINE_OFF = _OFF64[_LUL] - _OFF64[_RUL], _OFF64[_SPINE]
_HIP_LINE_L, _SPINE_OFF_L = _HIP_LINE.tolist(), _SPINE_OFF.tolist()
_HIPS_ROWS = np.array([_LUL, _RUL, _SPINE])


def _hips_frame(h: list, line: list, spine: list) -> list:
    """One frame's Hips rotation turned by TRIAD, in Python floats (a streamed frame: a few
    dozen float operations cost less than one NumPy call each). h: 3 x 3 nested list; line,
    spine: (current, wanted) pairs of 3-lists. Returns the 3 x 3 result as a nested list."""
    def unit(x):
        n = max(math.sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]), 1e-8)
        return [x[0] / n, x[1] / n, x[2] / n]

    def cross(a, b):
        return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]

    frames = []
    for v1, v2 in zip(line, spine):
        t1 = unit(v1)
        t2 = unit(cross(t1, v2))
        frames.append((t1, t2, cross(t1, t2)))                  # the columns of the triad
    (c1, c2, c3), (w1, w2, w3) = frames
    # R = W C^T: R_ij = sum_k W[:, k]_i C[:, k]_j
    r = [[w1[i] * c1[j] + w2[i] * c2[j] + w3[i] * c3[j] for j in range(3)] for i in range(3)]
    return [[r[i][0] * h[0][j] + r[i][1] * h[1][j] + r[i][2] * h[2][j] for j in range(3)]
            for i in range(3)]


def _guide_globals_numpy(glob: np.ndarray, residual: np.ndarray, frame: np.ndarray | None = None,
                         mix: Any = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`guide_globals` for NumPy in a few dozen array calls (one streamed frame pays
    per call, not per number): the swings as explicit matrices, c I + [v]x + v v^T / (1 + c),
    applied with one product. Equal to the written-out torch path to float rounding (tests)."""
    dt = glob.dtype
    joints = forward_kinematics(glob)
    joints[..., 1:, :] += residual
    if frame is not None:
        joints[..., 1:, :] = _mixed(joints[..., 1:, :], frame, mix)
    g = glob[..., _SWUNG, :, :]                                                 # (..., K, 3, 3)
    ab = rot._normalize(np.stack([(g @ _OFF_CHILD.astype(dt)[..., None])[..., 0],
                                  joints[..., _CHILD, :] - joints[..., _SWUNG, :]]))
    a, b = ab[0], ab[1]                                       # (..., K, 3) each, both sides
    v = ((a @ _SKEW.astype(dt)).reshape(a.shape + (3,)) @ b[..., None])[..., 0]  # a x b
    c = (a * b).sum(-1)
    r = _rodrigues(v, c, 1.0 / np.maximum(1 + c, _EPS))
    out = glob.copy()
    out[..., _SWUNG, :, :] = r @ g
    if glob.ndim == 3:                                             # one frame (streaming)
        h = glob[0].tolist()
        jl = joints[_HIPS_ROWS].tolist()                              # LeftUpLeg, RightUpLeg, Spine
        cur_line = [sum(h[i][k] * _HIP_LINE_L[k] for k in range(3)) for i in range(3)]
        cur_spine = [sum(h[i][k] * _SPINE_OFF_L[k] for k in range(3)) for i in range(3)]
        want_line = [jl[0][i] - jl[1][i] for i in range(3)]
        out[0] = _hips_frame(h, [cur_line, want_line], [cur_spine, jl[2]])
        return out, joints
    hips = glob[..., 0, :, :]
    # both triads at once: (..., 2, 3) rows (the current one, the wanted one)
    line = np.stack([hips @ _HIP_LINE.astype(dt), joints[..., _LUL, :] - joints[..., _RUL, :]], -2)
    spine = np.stack([hips @ _SPINE_OFF.astype(dt), joints[..., _SPINE, :]], -2)
    t = _triad(line, spine)                                                  # (..., 2, 3, 3)
    out[..., 0, :, :] = t[..., 1, :, :] @ np.swapaxes(t[..., 0, :, :], -1, -2) @ hips
    return out, joints


def guide_matrices(mats: Array, residual: Array, frame: Array | None = None,
                   mix: Array | float = 0.0) -> tuple[Array, Array]:
    """:func:`guide_globals` on the output's matrices: mats (..., 21, 3, 3) = Hips global and
    joints 1..20 local (bone-local -> parent). Returns (mats' in the same form, joints
    (..., 21, 3))."""
    glob = local_to_global(mats[..., 0, :, :], mats[..., 1:, :, :])
    glob, joints = guide_globals(glob, residual, frame, mix)
    return _cat([glob[..., :1, :, :], global_to_local(glob)], -3), joints


def output_matrices(rot6d: Array, x: Array | None = None, prior_version: int = 1,
                    residual: Array | None = None, frame: Array | None = None,
                    mix: Array | float = 0.0) -> tuple[Array, Array | None]:
    """The network's rotation slots 1..21 (..., 21, 6) -> (rotation matrices (..., 21, 3, 3)
    (Hips global, joints 1..20 local), joints (..., 21, 3) or None): composed with the
    geometric prior when the feature landmarks x (..., 25, 3) are given
    (``engine.ik.apply_prior_matrices``, ``prior_version``), then guided onto the joint head's
    joints when its ``residual`` (..., 20, 3) metres is given (:func:`guide_matrices`; with the
    per-frame branch's joints ``frame`` mixed in by the share ``mix``). The one home of this
    order for the torch module, the lean torch backend and both NumPy paths."""
    if x is not None:
        mats = apply_prior_matrices(rot6d, x, prior_version)
    else:
        mats = rot.rotation_6d_to_matrix(rot6d)
    if residual is None:
        return mats, None
    return guide_matrices(mats, residual, frame, mix)
