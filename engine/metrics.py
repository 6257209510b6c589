"""Evaluation metrics of Blaze2Cap (NumPy), the project's protocol in one place.

Protocol (``blaze2cap evaluate``):

* Joints compared: ``skeleton.EVAL_JOINT_INDICES`` of the 21 TotalCapture joints (shoulders,
  elbows, wrists, hips, knees, ankles) against ``skeleton.EVAL_BLAZEPOSE_INDICES`` of the 33
  BlazePose landmarks for the naive baseline; positions in metres in the camera frame
  (x right, y down, z forward).
* Root: each skeleton is centred on its own hip midpoint, the midpoint of RightUpLeg and
  LeftUpLeg (``skeleton.EVAL_ROOT_JOINTS``) for TotalCapture joints, of landmarks 23/24 for
  BlazePose (:func:`center_eval_joints`, :func:`center_blazepose_joints`).
* MPJPE: mean Euclidean joint distance after root centring, in mm.
* PA-MPJPE: MPJPE after a per-frame similarity Procrustes alignment of the prediction to the
  ground truth (scale, rotation, translation; reflections excluded), in mm.
* Acceleration error: mean over joints of ``|a_pred - a_gt|`` with ``a`` the second
  difference ``p[t+1] - 2 p[t] + p[t-1]`` of the root-centred joints, in mm / frame^2; only
  at frames t whose three frames t-1, t, t+1 are all in the evaluated subset.
* Jitter: mean over joints of ``|a_pred|`` on the same frames, in mm / frame^2 (how much the
  output shakes; the ground truth's own jitter is the floor to compare with).
* MARE: mean over the 21 joints of the geodesic angle between predicted and ground-truth
  global rotations (bone-local -> camera frame), radians.

Functions return per-frame values (per-triple for the acceleration metrics) so callers can
pool them over sequences; aggregate with a plain mean.
"""
from __future__ import annotations

import numpy as np

from .rotations import _is_torch, geodesic_angle
from .skeleton import BLAZEPOSE_INDEX, EVAL_BLAZEPOSE_INDICES, EVAL_JOINT_INDICES, EVAL_ROOT_JOINTS

MM = 1000.0  # metres -> millimetres
_BP_HIPS = (BLAZEPOSE_INDEX["right_hip"], BLAZEPOSE_INDEX["left_hip"])


def center_eval_joints(joints: np.ndarray) -> np.ndarray:
    """(F, 21, 3) TotalCapture joints, metres -> (F, 12, 3) evaluated joints relative to the
    midpoint of the two up-legs."""
    root = 0.5 * (joints[:, EVAL_ROOT_JOINTS[0]] + joints[:, EVAL_ROOT_JOINTS[1]])
    return joints[:, list(EVAL_JOINT_INDICES)] - root[:, None]


def center_blazepose_joints(world: np.ndarray) -> np.ndarray:
    """(F, 33, 3) BlazePose world landmarks, metres -> (F, 12, 3) evaluated landmarks relative
    to the midpoint of the hips 23/24 (BlazePose's own origin, re-centred exactly)."""
    root = 0.5 * (world[:, _BP_HIPS[0]] + world[:, _BP_HIPS[1]])
    return world[:, list(EVAL_BLAZEPOSE_INDICES)] - root[:, None]


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame mean joint error: pred, gt (F, J, 3) metres -> (F,) mm (no centring here)."""
    return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1) * MM


def similarity_fit(x, y):
    """Least-squares similarity of point sets x onto y, per set, never a reflection.

    x, y (..., J, 3), both NumPy or both torch -> (scale (...,), rot (..., 3, 3)) such that
    ``scale * (x - mean(x)) @ rot + mean(y)`` best matches y (Umeyama). For torch no gradient
    flows through the fit (``engine.losses`` holds the alignment fixed, which avoids the
    unstable gradient of the SVD); non-finite sets are fitted as if zero instead of raising.
    """
    if _is_torch(x):
        import torch
        with torch.no_grad():
            return _similarity_fit(torch, x.detach(), y.detach())
    return _similarity_fit(np, x, y)


def _similarity_fit(xp, x, y):
    x0 = x - x.mean(-2)[..., None, :]
    y0 = y - y.mean(-2)[..., None, :]
    h = xp.nan_to_num(x0.swapaxes(-1, -2) @ y0, nan=0.0, posinf=0.0, neginf=0.0)
    u, s, vt = xp.linalg.svd(h)                          # of X^T Y, (..., 3, 3)
    d = xp.where(xp.linalg.det(u @ vt) < 0, -1.0, 1.0)   # -1: the best fit is a reflection
    s[..., -1] *= d
    vt[..., -1, :] *= d[..., None]
    rot = u @ vt                                         # x0 @ rot best matches y0
    scale = s.sum(-1) / xp.clip((x0 * x0).sum(axis=(-1, -2)), 1e-12, None)
    return scale, rot


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame similarity transform of pred onto gt (least squares, no reflection).

    pred, gt (F, J, 3) -> (F, J, 3) = s R pred + t minimising |s R pred + t - gt|^2.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    scale, rot = similarity_fit(pred, gt)
    centred = pred - pred.mean(axis=1, keepdims=True)
    return scale[:, None, None] * (centred @ rot) + gt.mean(axis=1, keepdims=True)


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame MPJPE after Procrustes alignment: (F, J, 3) x2, metres -> (F,) mm."""
    return mpjpe(procrustes_align(pred, gt), np.asarray(gt, dtype=np.float64))


def triple_mask(mask: np.ndarray) -> np.ndarray:
    """(F,) bool -> (F-2,) bool: frames 1..F-2 whose neighbours and themselves are all in mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape[0] < 3:
        return np.zeros(0, dtype=bool)
    return mask[:-2] & mask[1:-1] & mask[2:]


def second_difference(x: np.ndarray) -> np.ndarray:
    """(F, ...) -> (F-2, ...): x[t+1] - 2 x[t] + x[t-1] for t = 1..F-2."""
    return x[2:] - 2.0 * x[1:-1] + x[:-2]


def accel_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Acceleration error at each valid triple: pred, gt (F, J, 3) metres, mask (F,) bool
    -> (N,) mm / frame^2, N = number of frames whose 3-frame neighbourhood is in mask."""
    if pred.shape[0] < 3:
        return np.zeros(0)
    keep = triple_mask(mask)
    diff = second_difference(pred) - second_difference(gt)
    return np.linalg.norm(diff[keep], axis=-1).mean(axis=-1) * MM


def jitter(pred: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean joint acceleration magnitude at each valid triple: (F, J, 3) metres, mask (F,)
    -> (N,) mm / frame^2."""
    if pred.shape[0] < 3:
        return np.zeros(0)
    return np.linalg.norm(second_difference(pred)[triple_mask(mask)], axis=-1).mean(axis=-1) * MM


def mare(pred_rot: np.ndarray, gt_rot: np.ndarray) -> np.ndarray:
    """Mean absolute rotation error per frame: global rotations (F, 21, 3, 3) x2 -> (F,) rad."""
    ang = geodesic_angle(np.asarray(pred_rot, np.float64), np.asarray(gt_rot, np.float64))
    return ang.mean(axis=-1)
