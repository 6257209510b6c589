"""Model input features: BlazePose landmarks (F, 33, 10) -> (F, 25, 18) plus a validity mask.

Input: the (F, 33, 10) landmark format of the shared data and of ``blaze2cap extract``
(channels in ``engine.skeleton``: world xyz in metres, hip-centred, x right, y down, z away
from the camera; normalised image x, y; relative depth; visibility; anchor flag).

Per frame, for each of the 25 landmarks in ``skeleton.FEATURE_LANDMARKS`` (18 channels):

====  =====================================================================================
0-2   world position, metres, hip-centred, turned into camera axes (see below)
3-5   world velocity, metres per frame, same axes (0 on the first frame of a track)
6-7   image position relative to the hip centre, divided by the image torso length s
      (image units: x scaled by the aspect ratio so both axes are in image heights)
8-9   image velocity, same units, per frame (0 on the first frame of a track)
10    MediaPipe relative depth (channel 7), same units
11    landmark visibility
12    track-restart flag of the frame (1 on the first frame after a frame with no detection)
13-14 hip centre in the image, relative to the image centre, in image heights (the camera
      ray through the hip: view context)
15    log s (the person's image size: distance from the camera)
16    change of log s per frame (motion towards / away from the camera)
17    frames since the track started, / 64, capped at 1
====  =====================================================================================

BlazePose's world landmarks are not in camera axes: they are turned to face along the ray from
the camera to the person (measured on the shared data: their yaw about the camera's vertical
axis is about -1.1 x the azimuth of the hip ray, and undoing the ray rotation lowers the naive
baseline's MPJPE from 137 to 115 mm). Channels 0-5 undo that rotation,
``R_ray = Ry(azimuth) @ Rx(-elevation)``, with the ray through the image hip centre for a
camera of focal length ``focal`` (in units of the image's long side; 0.67 = TotalCapture's
1284 px at 1920 px, a 74 degree horizontal field of view, typical of phones too).

Channels 12-17 are per-frame context repeated over the 25 landmarks, so the layout stays
(25, 18). Frames without a detection (all channels 0), with NaN/inf values, with any value
beyond ``MAX_ABS_VALUE`` (no real BlazePose value comes near it) or with a degenerate torso
get all-zero features and ``valid = False``: the model masks them out of attention and never
treats them as a pose. ``aspect`` and ``focal`` outside their plausible ranges
(``ASPECT_RANGE``, ``FOCAL_RANGE``) raise ``InputError``. A track restart (channel 4 = 0 on a
detected frame) zeroes every velocity and resets channel 17, so nothing is differenced across
a gap.

Features are causal: frame t uses frames t and t-1 only. :class:`FeatureState` carries what
is needed across chunks, so chunked / streaming computation equals one pass over the whole
sequence.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .skeleton import (BLAZEPOSE_INDEX, CH_ANCHOR, CH_IMAGE, CH_IMAGE_Z, CH_VIS, CH_WORLD,
                       FEATURE_LANDMARK_INDICES, NUM_BLAZEPOSE, NUM_CHANNELS,
                       blazepose_mirror_permutation)

NUM_KEYPOINTS = len(FEATURE_LANDMARK_INDICES)  # 25
NUM_FEATURES = 18
DEFAULT_ASPECT = 16 / 9  # image width / height of the TotalCapture videos
MIN_TORSO = 1e-3  # image heights; below this the detection is degenerate
DEFAULT_FOCAL = 0.67  # focal length / long image side (TotalCapture: 1284 / 1920)
FEATURE_VERSION = 2  # bump when the features change (dataset caches are keyed on it)
MAX_ABS_VALUE = 100.0  # larger landmark values are not a pose (real ones stay below 2)
ASPECT_RANGE = (0.01, 100.0)  # plausible video width / height
FOCAL_RANGE = (0.05, 50.0)  # plausible focal length / long image side (175 to 1 degrees)

_IDX = np.array(FEATURE_LANDMARK_INDICES, dtype=np.intp)
_LS, _RS = BLAZEPOSE_INDEX["left_shoulder"], BLAZEPOSE_INDEX["right_shoulder"]
_LH, _RH = BLAZEPOSE_INDEX["left_hip"], BLAZEPOSE_INDEX["right_hip"]


class LandmarkError(InputError):
    """Landmarks of the wrong shape or type."""


@dataclass
class FeatureState:
    """What features of the next chunk need from the previous one."""

    prev: np.ndarray | None = None     # (33, 10) last frame, or None
    prev_valid: bool = False
    since_start: int = 0                # frames since the current track started
    # (prev, aspect, focal, world (25, 3), rel (25, 2), log s) of ``prev``: its per-frame
    # terms, kept by the single-frame path so the next frame need not compute them again
    terms: tuple | None = field(default=None, repr=False, compare=False)


def check_landmarks(lm: np.ndarray) -> np.ndarray:
    """Validate a landmark array and return it as float32 (F, 33, 10); raise LandmarkError."""
    arr = np.asarray(lm)
    if arr.dtype.kind not in "fiu":
        raise LandmarkError(f"landmarks must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[1:] != (NUM_BLAZEPOSE, NUM_CHANNELS):
        raise LandmarkError(
            f"landmarks must have shape (frames, {NUM_BLAZEPOSE}, {NUM_CHANNELS}), got {arr.shape}")
    if arr.dtype == np.float32:
        return arr
    with np.errstate(over="ignore"):  # beyond float32 becomes inf: an invalid frame
        return arr.astype(np.float32)


def check_camera(aspect: float, focal: float = DEFAULT_FOCAL) -> None:
    """Raise InputError unless ``aspect`` and ``focal`` are numbers in their plausible ranges."""
    for name, value, (lo, hi) in (("aspect ratio (video width / height)", aspect, ASPECT_RANGE),
                                  ("focal length (over the long image side)", focal, FOCAL_RANGE)):
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise InputError(f"the {name} must be a number, got {value!r}") from None
        if not lo <= v <= hi:  # NaN fails too
            raise InputError(f"the {name} must be between {lo:g} and {hi:g}, got {value!r}")


def frame_validity(lm: np.ndarray, aspect: float = DEFAULT_ASPECT) -> np.ndarray:
    """(F, 33, 10) -> (F,) bool: detected, every value finite and within ``MAX_ABS_VALUE``,
    and a non-degenerate image torso."""
    return _validity(lm, aspect)[0]


def _validity(lm: np.ndarray, aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """(F, 33, 10) -> (valid (F,) bool, landmarks with implausible values set to 0)."""
    plausible_vals = np.abs(lm) <= MAX_ABS_VALUE  # False for NaN and inf too
    if plausible_vals.all():  # the common case: no copy
        plausible, clean = np.ones(lm.shape[0], dtype=bool), lm
    else:
        plausible = plausible_vals.all(axis=(1, 2))
        clean = np.where(plausible_vals, lm, 0).astype(lm.dtype, copy=False)
    detected = clean.reshape(len(clean), NUM_BLAZEPOSE * NUM_CHANNELS).any(axis=1)
    # Frames with an implausible value are invalid whatever their torso: zeros stand in for them.
    return plausible & detected & (_torso_length(clean, aspect) > MIN_TORSO), clean


def _torso_length(lm: np.ndarray, aspect: float) -> np.ndarray:
    img = lm[:, :, CH_IMAGE] * np.array([aspect, 1.0], dtype=np.float32)
    sh = 0.5 * (img[:, _LS] + img[:, _RS])
    hp = 0.5 * (img[:, _LH] + img[:, _RH])
    return np.linalg.norm(sh - hp, axis=-1)


def ray_rotation(hip_xy: np.ndarray, aspect: float, focal: float = DEFAULT_FOCAL) -> np.ndarray:
    """Rotation (F, 3, 3) from BlazePose's ray-aligned world axes to camera axes.

    hip_xy: (F, 2) hip centre in the image relative to the image centre, in image heights
    (x right, y down). ``focal`` in units of the image's long side.
    """
    f = focal * max(aspect, 1.0)  # in image heights
    dx, dy = hip_xy[:, 0].astype(np.float64), hip_xy[:, 1].astype(np.float64)
    az = np.arctan2(dx, f)
    el = np.arctan2(dy, np.hypot(dx, f))
    ca, sa, ce, se = np.cos(az), np.sin(az), np.cos(-el), np.sin(-el)
    # Ry(az) = [[ca, 0, sa], [0, 1, 0], [-sa, 0, ca]] times Rx(-el) = [[1, 0, 0], [0, ce, -se],
    # [0, se, ce]], written out (every entry is one product: the same numbers as the matmul)
    r = np.zeros((len(az), 3, 3), dtype=np.float32)
    r[:, 0, 0], r[:, 0, 1], r[:, 0, 2] = ca, sa * se, sa * ce
    r[:, 1, 1], r[:, 1, 2] = ce, -se
    r[:, 2, 0], r[:, 2, 1], r[:, 2, 2] = -sa, ca * se, ca * ce
    return r


def _rotate(rotation: np.ndarray, points: np.ndarray) -> np.ndarray:
    """rotation (F, 3, 3) applied to points (F, K, 3) -> (F, K, 3) (``R @ p`` per frame)."""
    r = rotation[:, None]                                        # (F, 1, 3, 3)
    return (r[..., 0] * points[..., 0:1] + r[..., 1] * points[..., 1:2]
            + r[..., 2] * points[..., 2:3])


def world_landmarks_in_camera_axes(lm: np.ndarray, aspect: float = DEFAULT_ASPECT,
                                   focal: float = DEFAULT_FOCAL) -> np.ndarray:
    """BlazePose world landmarks (F, 33, 3), metres, hip-centred, turned from BlazePose's
    ray-aligned axes into camera axes (the rotation of the ray through the image hip centre).

    lm: (F, 33, 10) landmarks; frames without a detection give zeros.
    """
    scale = np.array([aspect, 1.0], dtype=np.float32)
    img = lm[:, :, CH_IMAGE] * scale
    hip = 0.5 * (img[:, _LH] + img[:, _RH])
    return np.einsum("fij,fkj->fki", ray_rotation(hip - 0.5 * scale, aspect, focal), lm[:, :, CH_WORLD])


def compute_features(lm: np.ndarray, aspect: float = DEFAULT_ASPECT,
                     state: FeatureState | None = None, focal: float = DEFAULT_FOCAL
                     ) -> tuple[np.ndarray, np.ndarray, FeatureState]:
    """Landmarks (F, 33, 10) -> features (F, 25, 18) float32, valid (F,) bool, next state.

    ``aspect`` is the video's width / height, ``focal`` the focal length over the long image
    side. ``state`` continues a previous chunk.
    """
    lm = check_landmarks(lm)
    check_camera(aspect, focal)
    state = state or FeatureState()
    n = lm.shape[0]
    if n == 1:
        return _one_frame(lm[0], aspect, focal, state)
    valid, clean = _validity(lm, aspect)
    idx = _IDX

    # Frame -1 (from the state) followed by the chunk's frames; every per-frame term is
    # computed once on these n + 1 frames and read shifted for the previous frame.
    ext = np.zeros((n + 1, NUM_BLAZEPOSE, NUM_CHANNELS), dtype=np.float32)
    if state.prev is not None:
        ext[0] = state.prev
    np.copyto(ext[1:], clean, where=valid[:, None, None])
    lm = ext[1:]
    prev_valid = np.concatenate([[state.prev_valid], valid[:-1]]) if n else valid
    restart = valid & ((lm[:, 0, CH_ANCHOR] == 0) | ~prev_valid)
    cont = valid & ~restart  # velocities are defined

    # Frames since the track started, carried across chunks.
    frame = np.arange(n)
    last_reset = np.maximum.accumulate(np.where(~valid | restart, frame, -1)) if n else frame
    since = np.where(last_reset >= 0, frame - last_reset, state.since_start + frame + 1)

    scale_xy = np.array([aspect, 1.0], dtype=np.float32)
    img = ext[:, :, CH_IMAGE] * scale_xy                             # (F+1, 33, 2)
    hip = 0.5 * (img[:, _LH] + img[:, _RH])                          # (F+1, 2)
    shoulder = 0.5 * (img[:, _LS] + img[:, _RS])
    s = np.maximum(np.linalg.norm(shoulder - hip, axis=-1), MIN_TORSO)   # (F+1,)
    rel = (img[:, idx] - hip[:, None]) / s[:, None, None]             # (F+1, 25, 2)
    ray = ray_rotation(hip - 0.5 * scale_xy, aspect, focal)
    world = _rotate(ray, ext[:, idx, CH_WORLD])                       # (F+1, 25, 3)
    log_s = np.log(s)
    c = cont[:, None, None].astype(np.float32)

    feats = np.empty((n, NUM_KEYPOINTS, NUM_FEATURES), dtype=np.float32)
    feats[:, :, 0:3] = world[1:]
    feats[:, :, 3:6] = (world[1:] - world[:-1]) * c
    feats[:, :, 6:8] = rel[1:]
    feats[:, :, 8:10] = (rel[1:] - rel[:-1]) * c
    feats[:, :, 10] = lm[:, idx, CH_IMAGE_Z] * aspect / s[1:, None]
    feats[:, :, 11] = lm[:, idx, CH_VIS]
    feats[:, :, 12] = restart[:, None]
    feats[:, :, 13:15] = (hip[1:] - 0.5 * scale_xy)[:, None, :]
    feats[:, :, 15] = log_s[1:, None]
    feats[:, :, 16] = (log_s[1:] - log_s[:-1])[:, None] * c[:, :, 0]
    feats[:, :, 17] = np.minimum(since, 64)[:, None] / 64.0
    feats[~valid] = 0

    new_state = FeatureState(
        prev=lm[-1].copy() if n else state.prev,
        prev_valid=bool(valid[-1]) if n else state.prev_valid,
        since_start=int(since[-1]) if n else state.since_start,
    )
    return feats, valid, new_state


_ROWS = np.concatenate([[_LH, _RH, _LS, _RS], _IDX])  # the landmarks one frame needs
_MIN_TORSO32 = np.float32(MIN_TORSO)
_SCALES: dict = {}  # aspect -> (scale_xy, 0.5 * scale_xy), float32 (2,)


def _scales(aspect: float) -> tuple[np.ndarray, np.ndarray]:
    sc = _SCALES.get(aspect)
    if sc is None:
        if len(_SCALES) > 64:
            _SCALES.clear()
        scale_xy = np.array([aspect, 1.0], dtype=np.float32)
        sc = _SCALES[aspect] = (scale_xy, 0.5 * scale_xy)
    return sc


def _ray_rotation_one(hip_xy: np.ndarray, aspect: float, focal: float) -> np.ndarray:
    """:func:`ray_rotation` of one frame: hip_xy (2,) -> (3, 3) float32, the same numbers."""
    f = focal * max(aspect, 1.0)
    dxy = hip_xy.astype(np.float64)
    dx = dxy[0:1]
    az = np.arctan2(dx, f)
    el = np.arctan2(dxy[1:2], np.hypot(dx, f))
    ang = np.concatenate([az, -el])
    (ca, ce), (sa, se) = np.cos(ang).tolist(), np.sin(ang).tolist()  # float64 as Python floats
    return np.array([[ca, sa * se, sa * ce], [0.0, ce, -se], [-sa, ca * se, ca * ce]],
                    dtype=np.float32)


def _frame_terms(frame: np.ndarray, aspect: float, focal: float
                 ) -> tuple[np.ndarray, ...]:
    """One frame (33, 10) float32 -> world (25, 3), rel (25, 2), hip (2,), s (1,), log s (1,),
    the frame's 25 feature landmarks (25, 10): the per-frame terms of
    :func:`compute_features`, the same operations on one frame."""
    scale_xy, half_scale = _scales(aspect)
    rows = frame[_ROWS]                                              # (4 + 25, 10)
    img = rows[:, CH_IMAGE] * scale_xy                               # (29, 2)
    mid = 0.5 * (img[0:4:2] + img[1:4:2])                            # hip, shoulder (2, 2)
    hip = mid[0]
    d = mid[1] - hip
    s = np.maximum(np.sqrt(np.add.reduce(d * d, axis=-1, keepdims=True)), _MIN_TORSO32)  # (1,)
    rel = (img[4:] - hip) / s                                        # (25, 2)
    ray = _ray_rotation_one(hip - half_scale, aspect, focal)
    p = rows[4:, CH_WORLD]                                           # (25, 3)
    world = ray[:, 0] * p[:, 0:1] + ray[:, 1] * p[:, 1:2] + ray[:, 2] * p[:, 2:3]
    return world, rel, hip, s, np.log(s), rows[4:]


def _one_frame(frame: np.ndarray, aspect: float, focal: float, state: FeatureState
               ) -> tuple[np.ndarray, np.ndarray, FeatureState]:
    """:func:`compute_features` of one frame (33, 10) float32: the same numbers (tested) with
    a fraction of its per-call overhead (streaming), the previous frame's terms from ``state``."""
    feats = np.zeros((1, NUM_KEYPOINTS, NUM_FEATURES), dtype=np.float32)
    valid = False
    top = np.abs(frame).max()
    if 0 < top <= MAX_ABS_VALUE:  # detected (some value not 0), plausible; NaN fails too
        world, rel, hip, s, log_s, rows = _frame_terms(frame, aspect, focal)
        # s is the torso length floored at MIN_TORSO; compared in float32
        valid = bool(s[0] > _MIN_TORSO32)
    if not valid:
        return feats, np.array([False]), FeatureState(
            prev=np.zeros_like(frame), prev_valid=False, since_start=0)

    terms = state.terms
    if terms is not None and terms[0] is state.prev and terms[1:3] == (aspect, focal):
        p_world, p_rel, p_log_s = terms[3:]
    else:  # frame -1 as compute_features sees it: zeros when there is none
        prev = np.zeros_like(frame)
        if state.prev is not None:
            prev[...] = state.prev
        p_world, p_rel, _, _, p_log_s, _ = _frame_terms(prev, aspect, focal)
    restart = bool(frame[0, CH_ANCHOR] == 0) or not state.prev_valid
    since = 0 if restart else state.since_start + 1
    c = 0.0 if restart else 1.0

    f = feats[0]
    d_world, d_rel = world - p_world, rel - p_rel
    if restart:  # times 0 (not just 0: the same signed zeros and NaN as compute_features)
        d_world, d_rel = d_world * c, d_rel * c
    np.concatenate([world, d_world, rel, d_rel,
                    rows[:, CH_IMAGE_Z, None] * aspect / s, rows[:, CH_VIS, None]],
                   axis=1, out=f[:, :12])
    hx, hy = (hip - _scales(aspect)[1]).tolist()  # float32 values as Python floats: exact
    f[:, 12:] = np.array([restart, hx, hy, log_s[0], (log_s - p_log_s)[0] * c,
                          min(since, 64) / 64.0], dtype=np.float32)
    new_prev = frame.copy()
    return feats, np.array([True]), FeatureState(
        prev=new_prev, prev_valid=True, since_start=since,
        terms=(new_prev, aspect, focal, world, rel, log_s))


def mirror_landmarks(lm: np.ndarray) -> np.ndarray:
    """Left/right mirror of (F, 33, 10) landmarks (camera x flipped, sides swapped).

    Frames without a detection stay all zero.
    """
    out = lm[:, blazepose_mirror_permutation()].copy()
    detected = (lm != 0).any(axis=(1, 2))
    out[:, :, 0] *= -1
    out[:, :, 5] = np.where(detected[:, None], 1.0 - out[:, :, 5], 0.0)
    return out
