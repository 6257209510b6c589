"""Rotations: the only 6D / matrix / quaternion code of Blaze2Cap.

Convention (one, everywhere):
* Rotation matrices act on **column vectors**: ``v_world = R @ v_local``.
* Quaternions are **(w, x, y, z)**, real part first, Hamilton product (as Blender's
  ``mathutils.Quaternion`` and the shared TotalCapture data). q and -q are the same rotation;
  :func:`standardize_quaternion` picks w >= 0.
* 6D (Zhou et al. 2019) is the **first two columns** of the matrix, concatenated:
  ``d6 = (R[:, 0], R[:, 1])``; :func:`rotation_6d_to_matrix` maps any 6-vector to a proper
  rotation by Gram-Schmidt.

Every function takes any leading batch shape and works on NumPy arrays and on torch tensors
alike (torch is optional: the NumPy inference path inside Blender runs without it).
"""
from __future__ import annotations

from typing import Any

import numpy as np

try:  # torch is optional for the numpy inference path
    import torch
except ImportError:  # pragma: no cover - exercised only in the Blender extension
    torch = None

Array = Any  # np.ndarray | torch.Tensor


def _is_torch(x: Array) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def _stack(xs: list, axis: int) -> Array:
    if _is_torch(xs[0]):
        return torch.stack(xs, dim=axis)
    if axis >= 0:
        return np.stack(xs, axis=axis)
    # np.stack's own computation without its checks (np.stack costs ~16 us a call)
    key = (..., None) + (slice(None),) * (-axis - 1)
    return np.concatenate([x[key] for x in xs], axis=axis)


def _norm(x: Array, keepdims: bool = True) -> Array:
    if _is_torch(x):
        return torch.linalg.vector_norm(x, dim=-1, keepdim=keepdims)
    if x.dtype.kind == "f":  # np.linalg.norm's own computation, without its wrapper
        return np.sqrt(np.add.reduce(x * x, axis=-1, keepdims=keepdims))
    return np.linalg.norm(x, axis=-1, keepdims=keepdims)


def _cross(a: Array, b: Array) -> Array:
    """Cross product over the last axis, written out (np.cross costs ~50 us a call)."""
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return _stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], axis=-1)


def _sqrt_pos(x: Array) -> Array:
    """sqrt(max(x, 0)) with a zero (not NaN) gradient at 0."""
    if _is_torch(x):
        ret = torch.zeros_like(x)
        pos = x > 0
        ret[pos] = torch.sqrt(x[pos])
        return ret
    return np.sqrt(np.maximum(x, 0))


_EPS: dict = {}  # (dtype, eps) -> 0-d array (np.maximum with a Python float costs ~6 us)


def _normalize(x: Array, eps: float = 1e-8) -> Array:
    n = _norm(x)
    if _is_torch(x):
        return x / n.clamp_min(eps)
    key = (n.dtype, eps)
    floor = _EPS.get(key)
    if floor is None:
        floor = _EPS[key] = np.array(eps, dtype=n.dtype)
    return x / np.maximum(n, floor)


def rotation_6d_to_matrix(d6: Array) -> Array:
    """(..., 6) -> (..., 3, 3). Gram-Schmidt on the two columns; a proper rotation whenever
    the columns are not parallel, at any scale (the second is normalised before its projection
    is removed, so a tiny column does not meet the normaliser's floor)."""
    a1, a2 = d6[..., 0:3], _normalize(d6[..., 3:6])
    b1 = _normalize(a1)
    b2 = _normalize(a2 - (b1 * a2).sum(-1)[..., None] * b1)
    b3 = _cross(b1, b2)
    return _stack([b1, b2, b3], axis=-1)  # columns


def matrix_to_rotation_6d(m: Array) -> Array:
    """(..., 3, 3) -> (..., 6): the first two columns."""
    if _is_torch(m):
        return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def quaternion_to_matrix(q: Array) -> Array:
    """(..., 4) w,x,y,z (need not be unit: it is normalised) -> (..., 3, 3)."""
    q = _normalize(q)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    out = _stack(rows, axis=-1)
    return out.reshape(out.shape[:-1] + (3, 3))


def standardize_quaternion(q: Array) -> Array:
    """(..., 4) -> (..., 4) with w >= 0 (q and -q are the same rotation)."""
    return q * (1 - 2 * (q[..., :1] < 0))


def _candidate_weights() -> tuple[np.ndarray, np.ndarray]:
    """(9, 16) weights and (16,) constant: the four candidate quaternions (4 x 4, rows) of
    :func:`matrix_to_quaternion` as one linear map of the 9 matrix entries (row-major)."""
    w = np.zeros((9, 16))
    const = np.zeros(16)
    e = {name: i for i, name in enumerate(("m00", "m01", "m02", "m10", "m11", "m12",
                                             "m20", "m21", "m22"))}
    terms = {  # candidate entry -> {matrix entry: coefficient}; the diagonal also + 1
        0: {"m00": 1, "m11": 1, "m22": 1}, 5: {"m00": 1, "m11": -1, "m22": -1},
        10: {"m00": -1, "m11": 1, "m22": -1}, 15: {"m00": -1, "m11": -1, "m22": 1},
    }
    a, b, c = {"m21": 1, "m12": -1}, {"m02": 1, "m20": -1}, {"m10": 1, "m01": -1}
    d, f_, g = {"m10": 1, "m01": 1}, {"m02": 1, "m20": 1}, {"m12": 1, "m21": 1}
    for k, t in zip((1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14), (a, b, c, a, d, f_, b, d, g, c, f_, g)):
        terms[k] = t
    for k, t in terms.items():
        for name, coef in t.items():
            w[e[name], k] = coef
    const[[0, 5, 10, 15]] = 1.0
    return w, const


_CAND_W, _CAND_C = _candidate_weights()
_CAND_CAST: dict = {}  # dtype -> (weights, constant) in that dtype


def matrix_to_quaternion(m: Array) -> Array:
    """(..., 3, 3) -> (..., 4) w,x,y,z with w >= 0. Stable for all rotations (incl. pi)."""
    if not _is_torch(m):
        return _matrix_to_quaternion_np(np.asarray(m))
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    abs4 = _sqrt_pos(_stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                             1 - m00 + m11 - m22, 1 - m00 - m11 + m22], axis=-1))
    # Four candidate quaternions (rows), each accurate when its own component is large.
    sq = abs4 ** 2
    a, b, c = m21 - m12, m02 - m20, m10 - m01
    d, e, f = m10 + m01, m02 + m20, m12 + m21
    cands = _stack([sq[..., 0], a, b, c, a, sq[..., 1], d, e,
                    b, d, sq[..., 2], f, c, e, f, sq[..., 3]], axis=-1)
    cands = cands.reshape(cands.shape[:-1] + (4, 4))  # (..., 4, 4)
    denom = 2.0 * abs4[..., None].clamp_min(0.1)
    best = abs4.argmax(dim=-1)
    q = torch.gather(cands / denom, -2, best[..., None, None].expand(best.shape + (1, 4)))[..., 0, :]
    return standardize_quaternion(_normalize(q))


def _matrix_to_quaternion_np(m: np.ndarray) -> np.ndarray:
    """NumPy :func:`matrix_to_quaternion`: the same four candidates (4 x 4, rows; each
    accurate when its diagonal entry, 4 x its component squared, is large) from one product
    (..., 9) @ (9, 16) plus a constant; the row with the largest diagonal entry is kept,
    normalised."""
    dtype = m.dtype if m.dtype.kind == "f" else np.dtype(np.float64)
    wc = _CAND_CAST.get(dtype)
    if wc is None:
        wc = _CAND_CAST[dtype] = (_CAND_W.astype(dtype), _CAND_C.astype(dtype))
    lead = m.shape[:-2]
    flat = m.reshape(lead + (9,)) @ wc[0] + wc[1]                            # (..., 16)
    sq = flat[..., ::5]                                                      # the diagonal
    best = sq.argmax(axis=-1)[..., None]
    q = np.take_along_axis(flat.reshape(lead + (4, 4)), best[..., None], axis=-2)[..., 0, :]
    # the row is the quaternion times 2 sqrt(its diagonal entry) (>= 1: the four sum to 4),
    # a positive scale that the normalisation removes
    return standardize_quaternion(_normalize(q))


def quaternion_multiply(a: Array, b: Array) -> Array:
    """Hamilton product a * b of (..., 4) w,x,y,z quaternions (rotation b, then a)."""
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return _stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def quaternion_to_rotation_6d(q: Array) -> Array:
    """(..., 4) w,x,y,z -> (..., 6)."""
    return matrix_to_rotation_6d(quaternion_to_matrix(q))


def rotation_6d_to_quaternion(d6: Array) -> Array:
    """(..., 6) -> (..., 4) w,x,y,z, w >= 0."""
    return matrix_to_quaternion(rotation_6d_to_matrix(d6))


def geodesic_angle(m1: Array, m2: Array) -> Array:
    """Angle in radians of the rotation taking m1 to m2: (..., 3, 3) x2 -> (...,), in [0, pi]."""
    if _is_torch(m1):
        tr = (m1 * m2).sum(dim=(-1, -2))  # trace(m1^T m2)
        return torch.acos(((tr - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7))
    tr = (m1 * m2).sum(axis=(-1, -2))
    return np.arccos(np.clip((tr - 1) / 2, -1.0, 1.0))


def axis_angle_to_matrix(axis_angle: Array) -> Array:
    """(..., 3) rotation vector (axis * angle, radians) -> (..., 3, 3) (Rodrigues)."""
    angle = _norm(axis_angle)
    if _is_torch(axis_angle):
        half = angle * 0.5
        small = angle < 1e-6
        s = torch.where(small, 0.5 - angle ** 2 / 48, torch.sin(half) / torch.where(small, torch.ones_like(angle), angle))
        q = torch.cat([torch.cos(half), axis_angle * s], dim=-1)
    else:
        half = angle * 0.5
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(angle < 1e-6, 0.5 - angle ** 2 / 48, np.sin(half) / np.where(angle < 1e-6, 1, angle))
        q = np.concatenate([np.cos(half), axis_angle * s], axis=-1)
    return quaternion_to_matrix(q)


def slerp(q0: np.ndarray, q1: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit quaternions (..., 4) with weights w (...,) in [0, 1]."""
    dot = (q0 * q1).sum(-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    theta = np.arccos(np.clip(np.abs(dot), 0.0, 1.0))
    s = np.sin(theta)
    w = np.asarray(w, dtype=q0.dtype)[..., None]
    small = s < 1e-6
    s_safe = np.where(small, 1.0, s)
    a = np.where(small, 1.0 - w, np.sin((1.0 - w) * theta) / s_safe)
    b = np.where(small, w, np.sin(w * theta) / s_safe)
    q = a * q0 + b * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


#: Reflection of the camera x axis (left/right mirror): R_mirrored = MIRROR_X @ R @ MIRROR_X.
MIRROR_X = np.diag([-1.0, 1.0, 1.0]).astype(np.float32)
