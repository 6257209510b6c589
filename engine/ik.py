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

Version 2 (:data:`PRIOR_V2_SPEC`, the default of new models) keeps the bone direction but
blends each joint's twist from several references weighted by how well conditioned they are
(straight limbs: the foot, the hand, the torso); version 1 (above) stays for weights trained
on it (``ModelConfig.prior_version``).

Works on NumPy arrays and torch tensors (any leading batch shape), like ``engine.rotations``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import rotations as rot
from .skeleton import FEATURE_LANDMARKS, JOINT_NAMES

Array = Any
PRIOR_VERSIONS = (1, 2)  # see prior_rotations
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


def _observed_definitions(p) -> dict[str, tuple[Array, Array]]:
    """Per joint, the two observed directions of :func:`observed_directions`, written with
    ``p(name)``, a landmark's position (linear: :data:`_V1_ROWS` is evaluated from it)."""
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


def _coefficients(definitions) -> dict:
    """Evaluate directions written with ``p(name)`` (linear in the landmarks) on the unit
    landmarks: each becomes its (25,) row of coefficients, float64."""
    basis = np.eye(len(FEATURE_LANDMARKS))
    return definitions(lambda name: basis[_K[name]])


def _apply_rows(rows: np.ndarray, x: Array) -> Array:
    """rows (R, 25) constant coefficients, x (..., 25, 3) -> (..., R, 3): the R linear
    combinations of the landmarks, in one matrix product (one GEMM for any batch)."""
    xt = x.swapaxes(-1, -2)                                        # (..., 3, 25)
    if rot._is_torch(x):
        import torch
        return (xt @ torch.as_tensor(rows.T, dtype=x.dtype, device=x.device)).swapaxes(-1, -2)
    flat = xt.reshape(-1, rows.shape[1]) @ _cast(rows.T, x.dtype)
    return flat.reshape(xt.shape[:-1] + (rows.shape[0],)).swapaxes(-1, -2)


_CASTS: dict = {}


def _cast(table: np.ndarray, dtype) -> np.ndarray:
    """A constant NumPy table in ``dtype`` (cached: tables are made once per dtype)."""
    key = (id(table), np.dtype(dtype))
    if key not in _CASTS:
        _CASTS[key] = (table, np.ascontiguousarray(table, dtype=dtype))
    return _CASTS[key][1]


_V1_DEFS = _coefficients(_observed_definitions)
#: (42, 25): rows 0..20 the first observed direction of each joint (``JOINT_NAMES`` order),
#: rows 21..41 the second.
_V1_ROWS = np.array([_V1_DEFS[n][k] for k in range(2) for n in JOINT_NAMES])


def observed_directions(x: Array) -> dict[str, tuple[Array, Array]]:
    """x (..., 25, 3): the feature landmarks (``skeleton.FEATURE_LANDMARKS``) in camera axes.
    Returns, per joint, the two observed (unnormalised) directions (..., 3)."""
    y = _apply_rows(_V1_ROWS, x)
    n = len(JOINT_NAMES)
    return {name: (y[..., j, :], y[..., n + j, :]) for j, name in enumerate(JOINT_NAMES)}


def _triad(v1: Array, v2: Array) -> Array:
    """(..., 3) x2 -> (..., 3, 3) orthonormal frame with columns v1, v1 x v2, v1 x (v1 x v2)."""
    t1 = rot._normalize(v1)
    t2 = rot._normalize(rot._cross(t1, v2))
    return rot._stack([t1, t2, rot._cross(t1, t2)], axis=-1)


def _local_triads() -> np.ndarray:
    a = np.array([LOCAL_AXES[n] for n in JOINT_NAMES], dtype=np.float64)  # (21, 2, 3)
    return _triad(a[:, 0], a[:, 1])  # (21, 3, 3)


_LOCAL_TRIADS = _local_triads()
_LOCAL_TRIADS_T = np.ascontiguousarray(np.swapaxes(_LOCAL_TRIADS, -1, -2))


def prior_rotations(x: Array, version: int = 1) -> Array:
    """Global joint rotations (..., 21, 3, 3) (bone-local -> camera) from the feature
    landmarks x (..., 25, 3) in camera axes. Degenerate input (e.g. all zeros) gives finite
    values; callers mask frames without a detection.

    ``version`` (:data:`PRIOR_VERSIONS`): 1 = one TRIAD per joint (:data:`LOCAL_AXES`), the
    prior of the weights shipped before version 2; 2 = the twist blended from several
    references (:data:`PRIOR_V2_SPEC`), better conditioned for straight limbs.
    """
    if version == 2:
        return _prior_rotations_v2(x)
    if version != 1:
        raise ValueError(f"unknown prior version {version!r}; known: {PRIOR_VERSIONS}")
    obs = _apply_rows(_V1_ROWS, x)                               # (..., 42, 3)
    n = len(JOINT_NAMES)
    world = _triad(obs[..., :n, :], obs[..., n:, :])              # (..., 21, 3, 3)
    return world @ _as(_LOCAL_TRIADS_T, world)


#: The six products of the determinant of a 3x3 matrix (flattened row-major): + the first
#: three, - the last three.
_DET_TERMS = (np.array([0, 1, 2, 2, 0, 1]), np.array([4, 5, 3, 4, 5, 3]),
              np.array([8, 6, 7, 6, 7, 8]))


def _det3(m: Array) -> Array:
    """Determinant of (..., 3, 3), written out (no LU: works in any dtype, fast for 3x3)."""
    from .kinematics import _take

    m9 = m.reshape(m.shape[:-2] + (9,))
    a, b, c = (_take(m9, i, -1) for i in _DET_TERMS)
    p = a * b * c                                                  # (..., 6)
    return p[..., :3].sum(-1) - p[..., 3:].sum(-1)


def apply_prior(rot6d: Array, x: Array, version: int = 1) -> Array:
    """Compose the network's residual rotations with the prior.

    rot6d (..., 21, 6): slot 1 (Hips, global) and slots 2..21 (local) as the network outputs
    them, residuals of the identity; x (..., 25, 3) the feature landmarks in camera axes
    (feature channels 0-2, before normalisation). Returns (..., 21, 6): Hips global =
    prior_Hips @ R(res_Hips), joint j local = prior_local_j @ R(res_j), where prior_local is the
    prior's global rotations turned local. Frames whose prior is degenerate (no detection:
    all-zero landmarks) keep the residual alone. ``version``: that of :func:`prior_rotations`
    (``ModelConfig.prior_version``: weights keep the prior they were trained with).
    """
    m = apply_prior_matrices(rot6d, x, version)
    if rot._is_torch(m):
        return rot.matrix_to_rotation_6d(m)
    return rot.matrix_to_rotation_6d(m).astype(rot6d.dtype, copy=False)


def apply_prior_matrices(rot6d: Array, x: Array, version: int = 1) -> Array:
    """:func:`apply_prior` as rotation matrices (..., 21, 3, 3) (Hips global, joints 1..20
    local, bone-local -> parent), before their conversion to 6D (torch: float32). NumPy: in
    the dtype of ``rot6d`` and ``x`` (the streaming path keeps them to skip decoding)."""
    from .kinematics import global_to_local

    if rot._is_torch(x):
        import torch
        # float32 and no autocast: the prior is geometry, not learned (bf16 has no det on CPU)
        with torch.autocast(device_type=x.device.type, enabled=False):
            g = prior_rotations(x.detach().float(), version)
            eye = torch.eye(3, dtype=g.dtype, device=g.device)
            g = torch.where((_det3(g) > 0.5)[..., None, None], g, eye)
            prior = torch.cat([g[..., :1, :, :], global_to_local(g)], dim=-3)
            return prior @ rot.rotation_6d_to_matrix(rot6d.float())
    g = prior_rotations(x, version)
    g = np.where((_det3(g) > 0.5)[..., None, None], g, np.eye(3, dtype=g.dtype))
    prior = np.concatenate([g[..., :1, :, :], global_to_local(g)], axis=-3)
    return prior @ rot.rotation_6d_to_matrix(rot6d)


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


# --- Version 2: the twist about each bone blended from several references ------------------
#
# Version 1 takes a joint's twist from one second direction, ill-conditioned whenever that
# direction is nearly parallel to the bone (a straight arm or leg: elbow -> wrist along the
# upper arm). Version 2 keeps the bone direction t (matched exactly to the local axis a) and
# estimates the camera-frame direction d of a local axis b (perpendicular to a) as
#     d = sum_k  q_k0 n_k + q_k1 (t x n_k),    n_k = t x normalise(u_k),
# over several twist references u_k (neighbouring bones, the foot, the hand line, the torso).
# |n_k| = sin(angle between t and u_k), so a reference parallel to the bone drops out by
# itself and the best-conditioned ones dominate. The coefficients q are a linear least-squares
# fit (:func:`fit_prior_v2`) on the training sequences. The rotation is then TRIAD(t, d)
# matched to (a, b). Held-out S2_freestyle2 (8 views, tracked frames), prior alone on the
# default body: MARE 0.679 -> 0.486 rad (legs 38-44 -> 18-21 deg, feet 33-64 -> 29, arms
# 45 -> 34-40, hands 65-80 -> 48-57), MPJPE 118.1 -> 117.8 mm, PA-MPJPE 79.8 -> 78.2 mm.
# The hands use the forearm as their bone direction: BlazePose's wrist -> hand direction
# measured worse (80 vs 65 deg).

#: Per joint: the bone direction and the twist references, names of :func:`named_directions`
#: ("{s}" is the joint's side). Chosen on the training sequences (S2_freestyle2 held out).
PRIOR_V2_SPEC: dict[str, tuple[str, tuple[str, ...]]] = {
    "Hips": ("hip_line", ("up", "shoulder_line", "torso_normal", "right_thigh", "left_thigh")),
    "Spine": ("up", ("shoulder_line", "hip_line", "torso_normal")),
    "Spine1": ("up", ("shoulder_line", "hip_line", "torso_normal")),
    "Spine2": ("up", ("shoulder_line", "hip_line", "torso_normal")),
    "Spine3": ("up", ("shoulder_line", "hip_line", "torso_normal")),
    "Neck": ("shoulder_line", ("up", "neck", "nose")),
    "Head": ("nose", ("ear_line", "neck")),
    **{f"{S}Shoulder": (f"{s}_clavicle", ("up", "torso_normal", "hip_line"))
       for s, S in (("right", "Right"), ("left", "Left"))},
    **{f"{S}Arm": (f"{s}_upper_arm", (f"{s}_forearm", "up", "torso_normal", "hip_line",
                                      f"{s}_hand_line", f"{s}_palm_normal", f"{s}_thumb"))
       for s, S in (("right", "Right"), ("left", "Left"))},
    **{f"{S}ForeArm": (f"{s}_forearm", (f"{s}_upper_arm", f"{s}_hand_line", f"{s}_palm_normal",
                                        "up", "torso_normal"))
       for s, S in (("right", "Right"), ("left", "Left"))},
    **{f"{S}Hand": (f"{s}_forearm", (f"{s}_hand_line", f"{s}_palm_normal", f"{s}_upper_arm",
                                     "up", "torso_normal"))
       for s, S in (("right", "Right"), ("left", "Left"))},
    **{f"{S}UpLeg": (f"{s}_thigh", (f"{s}_shin", f"{s}_foot", "hip_line", "torso_normal"))
       for s, S in (("right", "Right"), ("left", "Left"))},
    **{f"{S}Leg": (f"{s}_shin", (f"{s}_thigh", f"{s}_foot", "hip_line", "torso_normal"))
       for s, S in (("right", "Right"), ("left", "Left"))},
    **{f"{S}Foot": (f"{s}_foot", (f"{s}_foot_up", f"{s}_shin", f"{s}_thigh"))
       for s, S in (("right", "Right"), ("left", "Left"))},
}


def _named_definitions(p) -> tuple[dict[str, Array], dict[str, tuple[Array, Array]]]:
    """The directions of :func:`named_directions` written with ``p(name)``, a landmark's
    position: (name -> linear direction, name -> the two linear factors of a cross product)."""
    hip = 0.5 * (p("left_hip") + p("right_hip"))
    sh = 0.5 * (p("left_shoulder") + p("right_shoulder"))
    ear = 0.5 * (p("left_ear") + p("right_ear"))
    d = {"up": sh - hip, "hip_line": p("left_hip") - p("right_hip"),
         "shoulder_line": p("left_shoulder") - p("right_shoulder"), "neck": ear - sh,
         "ear_line": p("left_ear") - p("right_ear"), "nose": p("nose") - ear}
    crossed = {"torso_normal": (d["hip_line"] + d["shoulder_line"], d["up"])}
    for s in ("right", "left"):
        sho, elb, wri = p(s + "_shoulder"), p(s + "_elbow"), p(s + "_wrist")
        idx, pinky = p(s + "_index"), p(s + "_pinky")
        toe, heel = p(s + "_foot_index"), p(s + "_heel")
        d[s + "_clavicle"] = sho - sh
        d[s + "_upper_arm"] = elb - sho
        d[s + "_forearm"] = wri - elb
        d[s + "_hand_line"] = idx - pinky
        crossed[s + "_palm_normal"] = (idx - wri, pinky - wri)
        d[s + "_thumb"] = p(s + "_thumb") - wri
        d[s + "_thigh"] = p(s + "_knee") - p(s + "_hip")
        d[s + "_shin"] = p(s + "_ankle") - p(s + "_knee")
        d[s + "_foot"] = toe - heel
        d[s + "_foot_up"] = p(s + "_ankle") - 0.5 * (toe + heel)
    return d, crossed


_NAMED_LINEAR, _NAMED_CROSSED = _coefficients(_named_definitions)
#: The names of :func:`named_directions`, in the order of :func:`_directions`' rows: the
#: linear ones, then the cross products.
_DIR_NAMES = tuple(_NAMED_LINEAR) + tuple(_NAMED_CROSSED)
#: (L + 2C, 25): the L linear directions, the C first factors, the C second factors.
_NAMED_ROWS = np.array(list(_NAMED_LINEAR.values()) + [a for a, _ in _NAMED_CROSSED.values()]
                       + [b for _, b in _NAMED_CROSSED.values()])


def _directions(x: Array) -> Array:
    """x (..., 25, 3) -> (..., D, 3) the unnormalised directions named in :data:`_DIR_NAMES`."""
    y = _apply_rows(_NAMED_ROWS, x)
    n_lin, n_cross = len(_NAMED_LINEAR), len(_NAMED_CROSSED)
    crossed = rot._cross(y[..., n_lin:n_lin + n_cross, :], y[..., n_lin + n_cross:, :])
    from .kinematics import _cat

    return _cat([y[..., :n_lin, :], crossed], -2)


def named_directions(x: Array) -> dict[str, Array]:
    """x (..., 25, 3) feature landmarks in camera axes -> name -> unnormalised direction
    (..., 3) between landmarks (the vocabulary of :data:`PRIOR_V2_SPEC`)."""
    dirs = _directions(x)
    return {n: dirs[..., i, :] for i, n in enumerate(_DIR_NAMES)}


def _twist_basis(t: Array, u: Array) -> Array:
    """t (..., 3) unit bone direction, u (..., 3) any twist reference -> (..., 3, 2) columns
    n = t x normalise(u) (length sin of their angle) and t x n."""
    n = rot._cross(t, rot._normalize(u))
    return rot._stack([n, rot._cross(t, n)], axis=-1)


def fit_prior_v2(pairs: list[tuple[np.ndarray, np.ndarray]],
                 spec: dict[str, tuple[str, tuple[str, ...]]] = PRIOR_V2_SPEC) -> dict:
    """Fit :data:`PRIOR_V2` from (x (F, 25, 3) landmarks in camera axes, G (F, 21, 3, 3)
    ground-truth global rotations, bone-local -> camera) pairs of tracked frames.

    Per joint: a = normalise(sum G^T t) (as :func:`fit_local_axes`), b a fixed unit vector
    perpendicular to a, and q the least-squares coefficients taking the references' twist
    bases to G b's component perpendicular to t. Returns name -> (a (3,), b (3,), q (K, 2)).
    """
    acc = {n: [np.zeros(3), None, None] for n in JOINT_NAMES}
    dirs = [named_directions(x.astype(np.float64)) for x, _ in pairs]
    for j, n in enumerate(JOINT_NAMES):  # pass 1: the bone axis a
        for dd, (_, g) in zip(dirs, pairs):
            acc[n][0] += np.einsum("fji,fj->i", g[:, j], rot._normalize(dd[spec[n][0]]))
    out = {}
    for j, n in enumerate(JOINT_NAMES):  # pass 2: b, then q by least squares
        bone, refs = spec[n]
        a = acc[n][0] / np.linalg.norm(acc[n][0])
        e = np.eye(3)[int(np.argmin(np.abs(a)))]
        b = rot._normalize(e - a * (a @ e))
        m, y = np.zeros((2 * len(refs),) * 2), np.zeros(2 * len(refs))
        for dd, (_, g) in zip(dirs, pairs):
            t = rot._normalize(dd[bone])
            basis = np.concatenate([_twist_basis(t, dd[r]) for r in refs], axis=-1)  # (F, 3, 2K)
            target = g[:, j].astype(np.float64) @ b
            target = target - t * (target * t).sum(-1, keepdims=True)
            m += np.einsum("fik,fil->kl", basis, basis)
            y += np.einsum("fik,fi->k", basis, target)
        q = np.linalg.solve(m + 1e-9 * np.trace(m) * np.eye(len(y)), y)
        out[n] = (a, b, q.reshape(-1, 2))
    return out


#: Fitted by :func:`fit_prior_v2` on the tracked frames of the 25 training views (every
#: view of S1_freestyle1/2, S2_freestyle1, S2_acting1 cam6; S2_freestyle2 held out):
#: per joint, the local bone axis a, the local axis b whose camera direction is blended, and
#: per twist reference of :data:`PRIOR_V2_SPEC` its coefficients (q_n, q_tn).
PRIOR_V2: dict[str, tuple[tuple[float, float, float], tuple[float, float, float],
                            tuple[tuple[float, float], ...]]] = {
    "Hips": ((-0.9896, 0.0999, 0.1033), (0.0994, 0.9950, -0.0104),
              ((-0.2291, -0.5329), (-0.3007, 0.0026), (0.6502, 0.4471), (0.2518, 0.0446), (0.0721, 0.0069))),
    "Spine": ((-0.0043, -0.0732, -0.9973), (1.0000, -0.0003, -0.0043),
               ((0.2121, -0.7231), (0.1858, -0.0323), (-1.6970, -0.3126))),
    "Spine1": ((-0.0048, -0.0528, -0.9986), (1.0000, -0.0003, -0.0048),
                ((0.2109, -0.7174), (0.1833, -0.0289), (-1.6881, -0.3110))),
    "Spine2": ((-0.0252, 0.0531, -0.9983), (0.9997, 0.0013, -0.0252),
                ((-0.4220, -0.5970), (-0.2310, -0.1577), (-1.6914, 0.7171))),
    "Spine3": ((-0.0355, 0.0693, -0.9970), (0.9994, 0.0025, -0.0354),
                ((-0.4958, -0.5802), (-0.2863, -0.1864), (-1.7027, 0.8320))),
    "Neck": ((-0.9941, 0.0599, 0.0905), (0.0596, 0.9982, -0.0054),
              ((-0.2098, -0.1263), (-0.1632, 0.0132), (-0.0478, 0.6187))),
    "Head": ((0.0331, -0.9448, -0.3260), (0.9995, 0.0312, 0.0108),
              ((0.2244, 0.7697), (0.1805, 0.0025))),
    "RightShoulder": ((0.9720, 0.1982, -0.1261), (0.1236, 0.0252, 0.9920),
                       ((0.7962, 0.8156), (-0.1427, -0.6706), (-0.0218, -0.2971))),
    "RightArm": ((0.9955, 0.0515, 0.0798), (-0.0513, 0.9987, -0.0041),
                  ((0.0014, 0.2316), (0.2534, 0.0132), (-0.1299, 0.3094), (-0.2530, 0.1635), (-0.0115, 0.1320), (0.0950, -0.0245), (-0.0262, 0.1827))),
    "RightForeArm": ((0.9986, 0.0438, 0.0282), (-0.0282, -0.0012, 0.9996),
                      ((0.4413, 0.2727), (-0.1488, -0.1957), (-0.0066, 0.0704), (-0.1814, 0.7522), (-0.3777, 0.0003))),
    "RightHand": ((0.8783, 0.0103, 0.4781), (-0.0090, 0.9999, -0.0049),
                   ((-0.1945, 0.1242), (0.0392, 0.0317), (0.2308, -0.4647), (0.2950, -0.0012), (-0.1035, 0.4854))),
    "LeftShoulder": ((-0.9470, 0.2344, 0.2197), (0.2132, -0.0528, 0.9756),
                      ((-0.4473, 0.1796), (0.7647, -0.3723), (0.0003, -0.2217))),
    "LeftArm": ((-0.9819, -0.1884, -0.0207), (-0.0203, -0.0039, 0.9998),
                 ((0.3454, 0.0894), (-0.0733, 0.2498), (0.3429, -0.0452), (-0.2338, 0.1099), (0.2006, 0.0768), (0.0922, 0.0487), (-0.0608, -0.0818))),
    "LeftForeArm": ((-0.9747, 0.2148, 0.0617), (0.0602, -0.0133, 0.9981),
                     ((-0.5495, 0.1201), (0.1729, 0.0565), (0.1065, 0.0532), (0.1149, 0.4129), (0.3239, 0.0579))),
    "LeftHand": ((-0.9038, 0.1378, 0.4051), (0.1257, 0.9905, -0.0563),
                  ((-0.0652, 0.1172), (-0.0847, 0.1361), (-0.1393, -0.5659), (-0.1791, 0.1140), (0.0073, 0.3446))),
    "RightUpLeg": ((0.0232, -0.0303, 0.9993), (0.9997, 0.0007, -0.0232),
                    ((-0.1181, 0.0504), (0.2260, -0.0361), (0.0194, 0.6161), (0.1324, 0.1111))),
    "RightLeg": ((-0.0284, -0.1008, 0.9945), (0.9996, -0.0029, 0.0282),
                  ((0.0164, -0.0508), (0.2845, -0.0296), (0.0037, 0.5206), (0.1988, 0.0814))),
    "RightFoot": ((0.0953, -0.9728, -0.2113), (0.9954, 0.0931, 0.0202),
                   ((-0.1258, 0.0790), (-0.8321, 0.0191), (-0.1677, -0.0759))),
    "LeftUpLeg": ((-0.0174, -0.0584, 0.9981), (0.9998, -0.0010, 0.0174),
                   ((-0.1819, -0.2361), (0.1974, 0.0028), (0.1445, 0.5573), (0.1821, -0.0439))),
    "LeftLeg": ((-0.0186, -0.0653, 0.9977), (0.9998, -0.0012, 0.0185),
                 ((0.0256, 0.1561), (0.2596, 0.0093), (0.1714, 0.6177), (0.1058, -0.0190))),
    "LeftFoot": ((0.0593, -0.9978, 0.0284), (-0.0017, 0.0284, 0.9996),
                  ((-0.0005, 0.0564), (-0.0674, -0.6948), (-0.0281, -0.2711))),
}


def _v2_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bone (21,): each joint's bone direction, an index of :data:`_DIR_NAMES`; blend
    (42, D): rows 0..20 sum q_n of each joint's references, rows 21..41 sum q_tn; the local
    triads (21, 3, 3) of (a, b), transposed)."""
    names = list(_DIR_NAMES)
    bone = np.array([names.index(PRIOR_V2_SPEC[n][0]) for n in JOINT_NAMES])
    n = len(JOINT_NAMES)
    blend = np.zeros((2 * n, len(names)))
    for j, name in enumerate(JOINT_NAMES):
        for r, q in zip(PRIOR_V2_SPEC[name][1], PRIOR_V2[name][2], strict=True):
            blend[j, names.index(r)] += q[0]
            blend[n + j, names.index(r)] += q[1]
    a = np.array([PRIOR_V2[n][0] for n in JOINT_NAMES], dtype=np.float64)
    b = np.array([PRIOR_V2[n][1] for n in JOINT_NAMES], dtype=np.float64)
    return bone, blend, np.ascontiguousarray(np.swapaxes(_triad(a, b), -1, -2))


_V2_BONE, _V2_BLEND, _V2_LOCAL_T = _v2_tables()


def _as(arr: np.ndarray, like: Array) -> Array:
    """A constant table as an array of ``like``'s backend, dtype and device."""
    if rot._is_torch(like):
        import torch
        return torch.as_tensor(arr, dtype=like.dtype, device=like.device)
    return _cast(arr, like.dtype)


def _prior_rotations_v2(x: Array) -> Array:
    """Version 2 of :func:`prior_rotations` (see :data:`PRIOR_V2_SPEC`).

    For a joint with bone direction t and references r_k (unit), the blended direction
    d = sum_k q_k0 (t x r_k) + q_k1 (t x (t x r_k)) is computed as
    t x (u0 + t x u1), u0 = sum_k q_k0 r_k, u1 = sum_k q_k1 r_k (the cross product is linear):
    one (42, D) product for all joints instead of two cross products per reference. Equal to
    ``_triad(t, d)`` to float rounding (tests: the written-out previous implementation).
    """
    from .kinematics import _take

    dirs = rot._normalize(_directions(x))                                      # (..., D, 3)
    unit = rot._normalize(dirs)                   # as the references and TRIAD normalise them
    t = _take(dirs, _V2_BONE, -2)                                              # (..., 21, 3)
    u = _apply_rows(_V2_BLEND, unit)                                           # (..., 42, 3)
    n = len(JOINT_NAMES)
    w = u[..., :n, :] + rot._cross(t, u[..., n:, :])                           # d = t x w
    # TRIAD(t, d): t1 = normalise(t); its second column normalise(t1 x d) is that of
    # t1 x (t1 x w) = t1 (t1 . w) - w (t1 parallel to t), without the two cross products.
    t1 = _take(unit, _V2_BONE, -2)
    t2 = rot._normalize(t1 * (t1 * w).sum(-1)[..., None] - w)
    world = rot._stack([t1, t2, rot._cross(t1, t2)], axis=-1)                 # (..., 21, 3, 3)
    return world @ _as(_V2_LOCAL_T, x)
