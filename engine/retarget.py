"""Engine output -> Blender keyframes: camera frame to Blender world, joints to bones.

Plain NumPy (no ``bpy``): the add-on only writes the arrays made here, so all the geometry is
tested without Blender.

Frames and conventions
----------------------
* **Camera frame** (engine output): x right, y down, z forward, metres.
* **Blender world**: Z up, metres; a person facing the camera faces Blender's front view
  (-Y), so the person's left hand is on +X (as in Rigify and Mixamo rigs).
* **TotalCapture joint frame** of joint j: ``G_j`` maps joint-local vectors to the camera
  frame (``engine.skeleton``); in joint-local axes the body's right is +x, up is -z and
  forward is -y (checked on the shared GT: -y matches the walking direction).
* **Blender bones** point along their local +Y. ``B_j`` (3, 3) is bone j's rest matrix
  (bone-local -> armature space, the armature object sits at the origin unrotated);
  the pose bone's armature-space rotation is ``M_j = M_p B_p^T B_j L_j`` with ``L_j`` the
  keyed local rotation (``matrix_basis``) and p the parent bone.

The rig has 22 bones: "Root" (on the floor, carries the trajectory as its location) and the
21 TotalCapture joints with the same names and hierarchy (Hips is a child of Root). Its rest
pose is the T-pose of ``engine.skeleton.DEFAULT_OFFSETS``, standing on Z = 0 and facing -Y:
every joint frame maps to the world by ``JOINT_REST_TO_WORLD``. The constant correction
``C_j = JOINT_REST_TO_WORLD^T B_j`` (bone-local -> joint-local) makes the keyed pose reproduce
the engine's rotations exactly: ``W_j = T G_j C_j`` with ``T`` the camera -> world rotation.
For the non-root joints this gives ``L_j = C_j^T (G_p^T G_j) C_j``, a change of basis of the
TotalCapture local rotation.

Camera -> world: the camera's tilt and roll are estimated from the poses themselves (a robust
average of the body's vertical axis over the upright frames: the sum of the hips->neck and
feet->hips directions, weighted by how straight the legs and trunk are; within 2.5 degrees of
the true vertical on every TotalCapture GT sequence), then the smallest rotation that makes
that axis the camera's up keeps the viewing direction: the camera looks along +Y. The floor
is a low percentile of the lowest foot contact point (heel or toe) per frame, and the
trajectory starts above the world origin.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from . import rotations as rot
from .errors import InputError
from .kinematics import forward_kinematics
from .skeleton import DEFAULT_OFFSETS, JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS

log = logging.getLogger(__name__)

ROOT_BONE = "Root"
BONE_NAMES: tuple[str, ...] = (ROOT_BONE,) + JOINT_NAMES  # 22
NUM_BONES = len(BONE_NAMES)
#: Parent bone index of each bone (-1 for Root; Hips -> Root; joint j -> its joint parent).
BONE_PARENTS: tuple[int, ...] = (-1,) + tuple(p + 1 for p in PARENTS)

#: A level camera: camera axes (x right, y down, z forward) -> Blender world (X, Y, Z up).
LEVEL_CAMERA_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
#: Rest T-pose: TotalCapture joint axes -> Blender world (right +x -> -X, up -z -> +Z,
#: forward -y -> -Y): a 180 degree turn about Y.
JOINT_REST_TO_WORLD = np.diag([-1.0, 1.0, -1.0])
#: The camera's own up direction in camera axes.
CAMERA_UP = np.array([0.0, -1.0, 0.0])

ROOT_BONE_LENGTH = 0.25  # m, Root points along +Y (rest matrix = identity)
#: Tails of the leaf bones in their joint's local frame (m): head and hands continue their
#: parent bone, the feet point to the toe (forward and down to the sole).
LEAF_TAILS: dict[str, tuple[float, float, float]] = {
    "Head": (0.0, -0.02, -0.16),
    "RightHand": (0.08, 0.0, 0.0),
    "LeftHand": (-0.08, 0.0, 0.0),
    "RightFoot": (0.0, -0.14, 0.05),
    "LeftFoot": (0.0, -0.14, 0.05),
}
#: Points of each foot that touch the floor, in the foot joint's local frame (m): the heel
#: (below the ankle) and the toe (the foot bone's tail).
FOOT_CONTACTS: tuple[tuple[float, float, float], ...] = ((0.0, 0.02, 0.05), (0.0, -0.14, 0.05))
FOOT_JOINTS: tuple[int, int] = (JOINT_INDEX["RightFoot"], JOINT_INDEX["LeftFoot"])


def _unit(v: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), eps)


def _bone_frame(y_axis: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rotation (3, 3) with columns (x, y, z): y along ``y_axis``, z as close as possible to
    ``reference`` (the bone's roll)."""
    y = _unit(y_axis)
    z = _unit(reference - (reference @ y) * y)
    return np.stack([np.cross(y, z), y, z], axis=-1)


@dataclass(frozen=True)
class Rig:
    """The Blaze2Cap armature in its rest pose (armature space = Blender world, metres).

    bone_names (22,), parents (22,) bone indices; heads, tails (22, 3); rest (22, 3, 3) bone
    rest matrices (bone-local -> armature); corrections (21, 3, 3) ``C_j`` bone-local ->
    TotalCapture joint-local for joints 0..20 (bones 1..21); connected (22,) bool (head at the
    parent's tail); offsets (21, 3) the body's joint offsets.
    """

    heads: np.ndarray
    tails: np.ndarray
    rest: np.ndarray
    corrections: np.ndarray
    connected: tuple[bool, ...]
    offsets: np.ndarray
    bone_names: tuple[str, ...] = BONE_NAMES
    parents: tuple[int, ...] = BONE_PARENTS

    def with_rest(self, rest: np.ndarray) -> "Rig":
        """The same rig with rest matrices read back from Blender (float32 there): the keys
        are computed against the armature as it really is."""
        rest = np.asarray(rest, dtype=np.float64).reshape(NUM_BONES, 3, 3)
        return replace(self, rest=rest, corrections=JOINT_REST_TO_WORLD.T @ rest[1:])


def build_rig(offsets: np.ndarray = DEFAULT_OFFSETS) -> Rig:
    """The rest T-pose of a body with joint ``offsets`` (21, 3) m: standing on Z = 0 (lowest
    foot contact point), Hips above the origin, facing -Y, Z up."""
    offsets = np.asarray(offsets, dtype=np.float64)
    q = JOINT_REST_TO_WORLD
    joints = forward_kinematics(np.broadcast_to(q, (NUM_JOINTS, 3, 3)).copy(), offsets)
    contacts = [joints[f] + q @ np.array(c) for f in FOOT_JOINTS for c in FOOT_CONTACTS]
    joints = joints - [0.0, 0.0, min(c[2] for c in contacts)]
    joints[:, :2] -= joints[0, :2]
    children = {j: [c for c in range(NUM_JOINTS) if PARENTS[c] == j] for j in range(NUM_JOINTS)}
    heads = np.zeros((NUM_BONES, 3))
    tails = np.zeros((NUM_BONES, 3))
    rest = np.zeros((NUM_BONES, 3, 3))
    connected = [False] * NUM_BONES
    tails[0] = (0.0, ROOT_BONE_LENGTH, 0.0)
    rest[0] = np.eye(3)
    up, forward = np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])
    for j, name in enumerate(JOINT_NAMES):
        b = j + 1
        heads[b] = joints[j]
        if children[j]:
            child = children[j][0]  # Hips -> Spine, Spine3 -> Neck: the chain's continuation
            tails[b] = joints[child]
            connected[child + 1] = True
        else:
            tails[b] = joints[j] + q @ np.array(LEAF_TAILS[name])
        direction = _unit(tails[b] - heads[b])
        # Roll: local Z points forward on vertical bones, up on the others (arms, feet).
        rest[b] = _bone_frame(direction, forward if abs(direction[2]) > 0.7 else up)
    return Rig(heads=heads, tails=tails, rest=rest, corrections=q.T @ rest[1:],
               connected=tuple(connected), offsets=offsets)


# ---------------------------------------------------------------------------------------------
# Camera -> world
# ---------------------------------------------------------------------------------------------
def _minimal_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation (3, 3) taking unit vector a to unit vector b."""
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(a @ b)
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        perp = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        return rot.axis_angle_to_matrix(_unit(perp) * np.pi)
    return rot.axis_angle_to_matrix(axis / s * np.arctan2(s, c))


def estimate_up(global_rots: np.ndarray, valid: np.ndarray | None = None,
                offsets: np.ndarray = DEFAULT_OFFSETS, scale_deg: float = 15.0) -> np.ndarray:
    """World up in camera axes (3,), unit, estimated from the poses.

    global_rots (F, 21, 3, 3) joint -> camera; valid (F,) bool. Per frame the body's vertical
    is the sum of the feet->hips and hips->neck directions, weighted by how straight the legs
    are and how well the trunk lines up with them (upright frames); the frames are averaged
    with Cauchy reweighting (``scale_deg``) so bent-over or lying frames barely count.
    Returns the camera's own up (0, -1, 0) when there is no valid frame.
    """
    glob = np.asarray(global_rots, dtype=np.float64)
    if valid is not None:
        glob = glob[np.asarray(valid, dtype=bool)]
    if len(glob) == 0:
        return CAMERA_UP.copy()
    p = forward_kinematics(glob, offsets)
    j = JOINT_INDEX
    feet = 0.5 * (p[:, j["RightFoot"]] + p[:, j["LeftFoot"]])
    trunk, legs = _unit(p[:, j["Neck"]] - p[:, j["Hips"]]), _unit(p[:, j["Hips"]] - feet)
    vertical = _unit(trunk + legs)

    def straightness(a: str, b: str, c: str) -> np.ndarray:
        cos = np.sum(_unit(p[:, j[b]] - p[:, j[a]]) * _unit(p[:, j[c]] - p[:, j[b]]), axis=-1)
        lo = np.cos(np.radians(25.0))
        return np.clip((cos - lo) / (1 - lo), 0.0, 1.0)

    weight = (straightness("RightUpLeg", "RightLeg", "RightFoot")
              * straightness("LeftUpLeg", "LeftLeg", "LeftFoot")
              * np.clip((np.sum(trunk * legs, -1) - np.cos(np.radians(25.0)))
                        / (1 - np.cos(np.radians(25.0))), 0.0, 1.0)) + 1e-3
    up = _unit((vertical * weight[:, None]).sum(0))
    scale = np.radians(scale_deg)
    for _ in range(8):
        angle = np.arccos(np.clip(vertical @ up, -1.0, 1.0))
        w = weight / (1.0 + (angle / scale) ** 2)
        up = _unit((vertical * w[:, None]).sum(0))
    return up


def camera_to_world_rotation(up_camera: np.ndarray, max_tilt_deg: float = 60.0) -> np.ndarray:
    """Rotation (3, 3) camera axes -> Blender world for a camera whose world up, in camera
    axes, is ``up_camera`` (3,). The smallest correction of a level camera: the viewing
    direction stays in the vertical plane of +Y. Tilts beyond ``max_tilt_deg`` are clamped
    (a pose lying down the whole clip cannot tell the camera's tilt)."""
    up = _unit(np.asarray(up_camera, dtype=np.float64))
    tilt = np.degrees(np.arccos(np.clip(up @ CAMERA_UP, -1.0, 1.0)))
    if tilt > max_tilt_deg:
        log.warning("estimated camera tilt %.0f deg is implausible; using %.0f deg",
                    tilt, max_tilt_deg)
        axis = np.cross(CAMERA_UP, up)
        if np.linalg.norm(axis) < 1e-9:
            axis = np.array([1.0, 0.0, 0.0])
        up = rot.axis_angle_to_matrix(_unit(axis) * np.radians(max_tilt_deg)) @ CAMERA_UP
    return LEVEL_CAMERA_TO_WORLD @ _minimal_rotation(up, CAMERA_UP)


def foot_contact_points(world_rots: np.ndarray, world_joints: np.ndarray) -> np.ndarray:
    """Heel and toe of both feet: (F, 21, 3, 3) joint -> world rotations and (F, 21, 3)
    world joint positions -> (F, 4, 3) world points (right heel, right toe, left heel, left
    toe)."""
    contacts = np.asarray(FOOT_CONTACTS, dtype=np.float64)  # (2, 3) joint-local
    pts = [world_joints[:, f, None, :] + np.einsum("fij,cj->fci", world_rots[:, f], contacts)
           for f in FOOT_JOINTS]
    return np.concatenate(pts, axis=1)


@dataclass(frozen=True)
class RetargetConfig:
    root_motion: bool = True        # keep the horizontal travel (off: the hips stay above 0)
    smoothing: float = 0.0          # Gaussian sigma in frames on the keys (0 = off)
    floor_percentile: float = 2.0   # percentile of the per-frame lowest foot point = floor
    up_scale_deg: float = 15.0      # Cauchy scale of the robust vertical average
    max_tilt_deg: float = 60.0      # camera tilts beyond this are clamped

    def __post_init__(self):
        if not (self.smoothing >= 0 and 0 <= self.floor_percentile <= 100):
            raise InputError(f"invalid retarget settings: {self}")


@dataclass(frozen=True)
class Placement:
    """Where the clip lands in the world: ``world = rotation @ camera - origin``.

    rotation (3, 3) camera -> world; up_camera (3,) the estimated world up in camera axes;
    origin (3,) metres: the first valid frame's hips position on the floor (x, y) and the
    floor height (z), in rotated camera coordinates.
    """

    rotation: np.ndarray
    up_camera: np.ndarray
    origin: np.ndarray

    def points(self, camera_points: np.ndarray) -> np.ndarray:
        """(..., 3) camera-frame points -> (..., 3) world points."""
        return np.asarray(camera_points, dtype=np.float64) @ self.rotation.T - self.origin


@dataclass(frozen=True)
class BoneAnimation:
    """Keyframe arrays for the 22 bones of :class:`Rig` (frame i = the i-th predicted frame).

    local_quats (F, 22, 4) w,x,y,z pose-bone rotations (``rotation_quaternion``), signs made
    continuous over time; root_location (F, 3) the Root bone's ``location`` (bone-local =
    world axes, metres); world_joints (F, 21, 3) and world_rots (F, 21, 3, 3) the joints in
    the world (before smoothing), for checks and previews.
    """

    local_quats: np.ndarray
    root_location: np.ndarray
    world_joints: np.ndarray
    world_rots: np.ndarray
    placement: Placement
    rig: Rig = field(repr=False)
    bone_names: tuple[str, ...] = BONE_NAMES

    @property
    def num_frames(self) -> int:
        return len(self.local_quats)


def world_to_local_quats(world_rots: np.ndarray, rig: Rig) -> np.ndarray:
    """(F, 21, 3, 3) bone -> world rotations of bones 1..21 (Root unrotated) -> (F, 22, 4)
    keyed local quaternions, Root = identity: ``L_j = B_j^T B_p W_p^T W_j``."""
    f = world_rots.shape[0]
    full = np.concatenate([np.broadcast_to(rig.rest[0], (f, 1, 3, 3)), world_rots], axis=1)
    mats = np.empty_like(full)
    mats[:, 0] = np.eye(3)
    for b in range(1, NUM_BONES):
        p = rig.parents[b]
        rest_rel = rig.rest[b].T @ rig.rest[p]  # B_j^T B_p
        mats[:, b] = rest_rel @ np.swapaxes(full[:, p], -1, -2) @ full[:, b]
    return rot.matrix_to_quaternion(mats)


def continuous_quaternions(q: np.ndarray) -> np.ndarray:
    """(F, ..., 4) -> same rotations with each quaternion in the hemisphere of the previous
    frame's (so per-component interpolation between keys takes the short way)."""
    q = np.array(q, dtype=np.float64, copy=True)
    for i in range(1, len(q)):
        flip = np.sum(q[i] * q[i - 1], axis=-1) < 0
        q[i][flip] *= -1
    return q


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase Gaussian filter along axis 0 (frames), sigma in frames, edges reflected.
    (F, ...) -> (F, ...); sigma <= 0 returns a copy."""
    x = np.asarray(x, dtype=np.float64)
    if sigma <= 0 or len(x) < 2:
        return x.copy()
    radius = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    pad = [(radius, radius)] + [(0, 0)] * (x.ndim - 1)
    xp = np.pad(x, pad, mode="reflect" if len(x) > radius else "edge")
    out = np.zeros_like(x)
    for k, w in enumerate(kernel):
        out += w * xp[k:k + len(x)]
    return out


def estimate_placement(global_rots: np.ndarray, root_translation: np.ndarray,
                       valid: np.ndarray, rig: Rig, config: RetargetConfig,
                       rotation: np.ndarray | None = None) -> Placement:
    """Camera -> world rotation, floor and start point of a clip (see :class:`Placement`).

    global_rots (F, 21, 3, 3) joint -> camera; root_translation (F, 3) Hips in the camera
    frame (m); valid (F,) bool; rotation (3, 3) a known camera -> world rotation (default:
    estimated from the poses).
    """
    if rotation is None:
        up = estimate_up(global_rots, valid, rig.offsets, config.up_scale_deg)
        rotation = camera_to_world_rotation(up, config.max_tilt_deg)
    else:
        rotation = np.asarray(rotation, dtype=np.float64)
        up = rotation.T @ [0.0, 0.0, 1.0]
    sel = np.asarray(valid, dtype=bool)
    if not sel.any():
        sel = np.ones(len(global_rots), dtype=bool)
    world_rots = rotation @ global_rots[sel]
    hips = root_translation[sel] @ rotation.T
    joints = forward_kinematics(world_rots, rig.offsets) + hips[:, None, :]
    lowest = foot_contact_points(world_rots, joints)[..., 2].min(axis=1)  # (F_valid,)
    floor = float(np.percentile(lowest, config.floor_percentile))
    origin = np.array([hips[0, 0], hips[0, 1], floor])
    return Placement(rotation=rotation, up_camera=up, origin=origin)


def retarget(global_quats: np.ndarray, root_translation: np.ndarray,
             valid: np.ndarray | None = None, rig: Rig | None = None,
             config: RetargetConfig = RetargetConfig(),
             placement: Placement | None = None) -> BoneAnimation:
    """Engine output -> keyframe arrays for the rig.

    global_quats (F, 21, 4) w,x,y,z joint -> camera rotations; root_translation (F, 3) Hips
    position in the camera frame, metres; valid (F,) bool frames with a detection (used to
    place the clip; every frame is keyed). ``placement`` overrides the estimated one.
    """
    q = np.asarray(global_quats, dtype=np.float64)
    t = np.asarray(root_translation, dtype=np.float64)
    if q.ndim != 3 or q.shape[1:] != (NUM_JOINTS, 4) or t.shape != (len(q), 3) or len(q) == 0:
        raise InputError(f"expected global quaternions (F, {NUM_JOINTS}, 4) and root "
                         f"translation (F, 3) with F > 0, got {q.shape} and {t.shape}")
    if not (np.isfinite(q).all() and np.isfinite(t).all()):
        raise InputError("the predicted rotations or translations contain NaN or inf values")
    rig = rig or build_rig()
    valid = np.ones(len(q), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    glob = rot.quaternion_to_matrix(q)
    placement = placement or estimate_placement(glob, t, valid, rig, config)
    world_rots = placement.rotation @ glob                                   # joint -> world
    hips = placement.points(t)                                               # (F, 3)
    if not config.root_motion:
        hips[:, :2] = 0.0
    world_joints = forward_kinematics(world_rots, rig.offsets) + hips[:, None, :]
    local = continuous_quaternions(world_to_local_quats(world_rots @ rig.corrections, rig))
    root_location = (hips - rig.heads[1]) @ rig.rest[0]                     # B_r^T (h - head)
    if config.smoothing > 0:
        local = _unit(gaussian_smooth(local, config.smoothing))
        root_location = gaussian_smooth(root_location, config.smoothing)
    return BoneAnimation(local_quats=local, root_location=root_location,
                         world_joints=world_joints, world_rots=world_rots,
                         placement=placement, rig=rig)


# ---------------------------------------------------------------------------------------------
# Inverse (tests, checks): what Blender shows -> engine frame
# ---------------------------------------------------------------------------------------------
def pose_world_rotations(local_quats: np.ndarray, rig: Rig) -> np.ndarray:
    """Forward pose evaluation as Blender does it: (F, 22, 4) keyed local quaternions ->
    (F, 22, 3, 3) bone -> world rotations ``M_j = M_p B_p^T B_j L_j``."""
    local = rot.quaternion_to_matrix(np.asarray(local_quats, dtype=np.float64))
    out = np.empty_like(local)
    for b in range(NUM_BONES):
        p = rig.parents[b]
        if p < 0:
            out[:, b] = rig.rest[b] @ local[:, b]
        else:
            out[:, b] = out[:, p] @ (rig.rest[p].T @ rig.rest[b]) @ local[:, b]
    return out


def bone_world_to_camera_quats(bone_world: np.ndarray, rig: Rig,
                               camera_rotation: np.ndarray) -> np.ndarray:
    """Inverse of the retarget: (F, 22, 3, 3) (or 4x4) bone -> world matrices ->
    (F, 21, 4) joint -> camera quaternions ``G_j = T^T W_j C_j^T`` (w >= 0)."""
    w = np.asarray(bone_world, dtype=np.float64)[..., :3, :3]
    # Pose matrices may carry scale (never keyed here, but be safe): normalise the columns.
    w = w / np.linalg.norm(w, axis=-2, keepdims=True)
    glob = camera_rotation.T @ w[:, 1:] @ np.swapaxes(rig.corrections, -1, -2)
    return rot.matrix_to_quaternion(glob)
