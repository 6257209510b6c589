"""Motion sources of the data engine: TotalCapture ground truth and BVH files.

A :class:`Motion` is what a clip needs from its performer: TC global rotations
(``G_j``: TC bone-local -> TC world, see :mod:`dataengine.bodies`), the Hips path in the TC
world (y up) and the performer's leg length in the same unit as the path (the engine scales
the path by ``body leg / performer leg``, so a BVH file's unit never has to be known).

BVH retarget (plain numpy; no Blender scene). A BVH joint's global rotation ``Q_j`` (its
channels composed down the hierarchy, identity in the rest pose) maps rest-pose world
directions to posed ones. With ``B`` the TC body frame of the BVH rest pose (columns: the
subject's right, back and down in BVH world, from the hip line and the Hips -> Head line),
``W`` the rotation taking BVH world to a y-up TC world, and ``S_j`` the swing taking the TC
rest direction of a limb (arms along the subject's sides, legs down) onto the BVH rest
direction of that bone (so T-, A- or any other rest pose works)::

    G_j = W @ Q_j @ S_j @ B

Torso, neck, head and feet keep their rest orientation (``S = I``, as in the Anny retarget),
hands take their forearm's swing. Joints are found by name (TC, Mixamo, CMU and common
aliases; namespace prefixes such as ``mixamorig:`` are ignored); the spine, neck and
shoulders may be missing (they then move with their TC parent), the Hips, Head and the
12 limb joints may not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import DatasetError, InputError
from engine.rotations import axis_angle_to_matrix
from engine.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS

from .bodies import HAND_SWINGS, LIMB_SWINGS, swing_rotation
#: TC joints that a BVH file may lack (they then follow their TC parent).
OPTIONAL_JOINTS = ("Spine", "Spine1", "Spine2", "Spine3", "Neck", "RightShoulder", "LeftShoulder")

_SIDE_ALIASES = {
    "Shoulder": ("shoulder", "collar", "clavicle"),
    "Arm": ("arm", "upperarm", "uparm", "humerus"),
    "ForeArm": ("forearm", "lowerarm", "elbow"),
    "Hand": ("hand", "wrist"),
    "UpLeg": ("upleg", "upperleg", "thigh", "femur"),
    "Leg": ("leg", "lowerleg", "shin", "calf", "knee"),
    "Foot": ("foot", "ankle"),
}
#: Normalised BVH joint names (lower case, no ``_ . - space``) of each TC joint, best first.
ALIASES: dict[str, tuple[str, ...]] = {
    "Hips": ("hips", "hip", "pelvis"),
    "Spine": ("spine", "lowerback", "spine0"),
    "Spine1": ("spine1",),
    "Spine2": ("spine2", "chest"),
    "Spine3": ("spine3", "upperchest"),
    "Neck": ("neck", "neck1"),
    "Head": ("head",),
    **{f"{side}{part}": tuple(f"{p}{a}" for a in names for p in prefixes)
       for side, prefixes in (("Right", ("right", "r")), ("Left", ("left", "l")))
       for part, names in _SIDE_ALIASES.items()},
}
#: Largest BVH file read (bytes): a guard against feeding the engine something that is not one.
MAX_BVH_BYTES = 512 * 1024 * 1024


@dataclass
class Motion:
    """One performer's motion.

    rotations (F, 21, 3, 3) float64 TC global rotations in the TC world; root (F, 3) float64
    Hips path in the TC world (y up), in the unit of ``leg_length``; leg_length: thigh +
    shank of the right leg; fps: frames per second.
    """

    name: str
    rotations: np.ndarray
    root: np.ndarray
    leg_length: float
    fps: float

    @property
    def frames(self) -> int:
        return int(len(self.rotations))


@dataclass
class Bvh:
    """A parsed BVH file: joints in file order (End Sites dropped).

    names (J,); parents (J,) int (-1 for the root); offsets (J, 3) float64 (file unit);
    channels: per joint the channel names in file order; motion (F, C) float64 (degrees and
    file unit); frame_time seconds.
    """

    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    channels: list[list[str]]
    motion: np.ndarray
    frame_time: float


_CHANNELS = {"xposition", "yposition", "zposition", "xrotation", "yrotation", "zrotation"}


def read_bvh(path: Path) -> Bvh:
    """Parse a BVH file; :class:`InputError` with a one-line reason when it is not a usable one."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BVH_BYTES:
            raise InputError(f"{path} is {size} bytes: larger than any BVH motion this reads")
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read BVH file {path}: {err}") from err
    tokens = text.split()
    pos = 0

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise InputError(f"{path}: the BVH file ends early")
        pos += 1
        return tokens[pos - 1]

    def number(tok: str) -> float:
        try:
            v = float(tok)
        except ValueError:
            raise InputError(f"{path}: '{tok[:40]}' is not a number") from None
        if not np.isfinite(v):
            raise InputError(f"{path}: a value is not finite ({tok[:40]})")
        return v

    if not tokens or tokens[0].upper() != "HIERARCHY":
        raise InputError(f"{path} is not a BVH file (it does not start with HIERARCHY)")
    pos = 1
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    stack: list[int] = []
    current: int | None = None      # joint whose block is open (-2: an End Site)
    while True:
        tok = take()
        up = tok.upper()
        if up in ("ROOT", "JOINT"):
            if (up == "ROOT") != (not stack and not names):
                raise InputError(f"{path}: one ROOT joint must come first")
            names.append(take())
            parents.append(stack[-1] if stack else -1)
            offsets.append([0.0, 0.0, 0.0])
            channels.append([])
            current = len(names) - 1
        elif up == "END":
            take()  # "Site"
            current = -2
        elif tok == "{":
            if current is None:
                raise InputError(f"{path}: '{{' without a joint")
            stack.append(current)
            current = None
        elif tok == "}":
            if not stack:
                raise InputError(f"{path}: unbalanced '}}'")
            stack.pop()
            if not stack:
                break
        elif up == "OFFSET":
            vals = [number(take()) for _ in range(3)]
            if stack and stack[-1] >= 0:
                offsets[stack[-1]] = vals
        elif up == "CHANNELS":
            if not stack or stack[-1] < 0:
                raise InputError(f"{path}: CHANNELS outside a joint")
            n = int(number(take()))
            chans = [take() for _ in range(n)]
            if any(c.lower() not in _CHANNELS for c in chans):
                raise InputError(f"{path}: unknown channel in {' '.join(chans)}")
            channels[stack[-1]] = chans
        else:
            raise InputError(f"{path}: unexpected '{tok[:40]}' in the hierarchy")
    if take().upper() != "MOTION" or take().lower() != "frames:":
        raise InputError(f"{path}: MOTION / Frames: expected after the hierarchy")
    frames = int(number(take()))
    if take().lower() != "frame" or take().lower() != "time:":
        raise InputError(f"{path}: 'Frame Time:' expected")
    frame_time = number(take())
    if frames < 1 or not frame_time > 0:
        raise InputError(f"{path}: needs at least one frame and a positive frame time")
    width = sum(len(c) for c in channels)
    rest = tokens[pos:]
    if len(rest) < frames * width:
        raise InputError(f"{path}: {frames} frames of {width} channels announced, "
                         f"{len(rest)} values found")
    try:
        motion = np.asarray(rest[:frames * width], dtype=np.float64).reshape(frames, width)
    except ValueError:
        raise InputError(f"{path}: the motion holds something that is not a number") from None
    if not np.isfinite(motion).all():
        raise InputError(f"{path}: the motion holds NaN or infinite values")
    return Bvh(names, np.asarray(parents), np.asarray(offsets, np.float64), channels, motion,
               frame_time)


def bvh_globals(bvh: Bvh) -> tuple[np.ndarray, np.ndarray]:
    """Global rotations (F, J, 3, 3) and positions (F, J, 3) of every joint (BVH world, file
    unit; the rotations are identity in the rest pose). Rotation channels compose in file
    order (``Zrotation Xrotation Yrotation`` is ``Rz @ Rx @ Ry``), as Blender and
    MotionBuilder read them; root position channels add to the root's offset."""
    f, n = len(bvh.motion), len(bvh.names)
    glob = np.zeros((f, n, 3, 3))
    root = np.repeat(bvh.offsets[0][None], f, axis=0).copy()
    col = 0
    for j in range(n):
        local = np.repeat(np.eye(3)[None], f, axis=0)
        for ch in bvh.channels[j]:
            kind, axis = ch.lower(), "xyz".index(ch[0].lower())
            if kind.endswith("rotation"):
                angle = np.radians(bvh.motion[:, col])[:, None] * np.eye(3)[axis]
                local = local @ axis_angle_to_matrix(angle)
            elif j == 0:
                root[:, axis] = bvh.offsets[0][axis] + bvh.motion[:, col]
            col += 1
        p = bvh.parents[j]
        glob[:, j] = local if p < 0 else glob[:, p] @ local
    pos = np.zeros((f, n, 3))
    for j in range(n):
        p = bvh.parents[j]
        pos[:, j] = root if p < 0 else pos[:, p] + glob[:, p] @ bvh.offsets[j]
    return glob, pos


def _normalise(name: str) -> str:
    return re.sub(r"[\s_.\-]", "", re.split(r"[:|]", name)[-1]).lower()


def map_joints(names: list[str]) -> dict[str, int]:
    """{TC joint: BVH joint index} by name; :class:`InputError` naming what is missing."""
    norm = [_normalise(n) for n in names]
    out: dict[str, int] = {}
    for tc_name, aliases in ALIASES.items():
        for a in aliases:
            if a in norm and norm.index(a) not in out.values():
                out[tc_name] = norm.index(a)
                break
    missing = [j for j in JOINT_NAMES if j not in out and j not in OPTIONAL_JOINTS]
    if missing:
        raise InputError(f"BVH joints for {', '.join(missing)} not found among "
                         f"{', '.join(names[:30])}: name them like TotalCapture or Mixamo")
    return out


def bvh_motion(path: Path, name: str | None = None) -> Motion:
    """A BVH file as a :class:`Motion` (TC global rotations, Hips path centred on the TC
    origin in the ground plane)."""
    bvh = read_bvh(path)
    joints = map_joints(bvh.names)
    glob, pos = bvh_globals(bvh)
    heads = np.zeros((len(bvh.names), 3))                   # rest pose, BVH world
    for j in range(len(bvh.names)):
        p = bvh.parents[j]
        heads[j] = bvh.offsets[j] + (heads[p] if p >= 0 else 0.0)
    h = {k: heads[v] for k, v in joints.items()}
    up = h["Head"] - h["Hips"]
    right = h["RightUpLeg"] - h["LeftUpLeg"]
    if np.linalg.norm(up) < 1e-9 or np.linalg.norm(right) < 1e-9:
        raise InputError(f"{path}: the rest pose has no Hips -> Head line or no hip width")
    up /= np.linalg.norm(up)
    right = right - (right @ up) * up
    if np.linalg.norm(right) < 1e-9:
        raise InputError(f"{path}: the hip line of the rest pose is parallel to the spine")
    right /= np.linalg.norm(right)
    back = np.cross(-up, right)
    body = np.stack([right, back, -up], axis=1)             # B: TC body axes -> BVH world
    world = np.stack([right, up, np.cross(right, up)])      # W: BVH world -> TC world (y up)
    swings = np.repeat(np.eye(3)[None], NUM_JOINTS, axis=0)
    for j, (end, direction) in LIMB_SWINGS.items():
        if j in joints and end in joints:
            rest_dir = h[end] - h[j]
            if np.linalg.norm(rest_dir) < 1e-9:
                raise InputError(f"{path}: {j} and {end} sit at the same place in the rest pose")
            try:
                swings[JOINT_INDEX[j]] = swing_rotation(body @ np.asarray(direction), rest_dir)
            except ValueError:
                raise InputError(f"{path}: {j} points the wrong way in the rest pose "
                                 f"(left and right swapped?)") from None
    for j, like in HAND_SWINGS.items():
        swings[JOINT_INDEX[j]] = swings[JOINT_INDEX[like]]
    rot = np.zeros((len(glob), NUM_JOINTS, 3, 3))
    for j, tc_name in enumerate(JOINT_NAMES):               # parents come first
        if tc_name in joints:
            rot[:, j] = world @ glob[:, joints[tc_name]] @ swings[j] @ body
        else:
            rot[:, j] = rot[:, PARENTS[j]]
    path_w = pos[:, joints["Hips"]] @ world.T
    path_w[:, [0, 2]] -= path_w[:, [0, 2]].mean(axis=0)
    leg = float(np.linalg.norm(h["RightLeg"] - h["RightUpLeg"])
                + np.linalg.norm(h["RightFoot"] - h["RightLeg"]))
    if not leg > 0:
        raise InputError(f"{path}: the right leg has no length in the rest pose")
    return Motion(name=name or f"bvh:{Path(path).stem}", rotations=rot, root=path_w,
                  leg_length=leg, fps=1.0 / bvh.frame_time)


def tc_motion(tc_dir: Path, sequence: str) -> Motion:
    """A TotalCapture ground-truth sequence (60 fps) as a :class:`Motion`."""
    from training import totalcapture as tc

    gt = tc.load_gt(tc_dir, sequence)
    offsets = tc.load_skeleton_offsets(tc_dir)[sequence]
    leg = float(np.linalg.norm(offsets[[JOINT_INDEX["RightLeg"], JOINT_INDEX["RightFoot"]]],
                               axis=1).sum())
    return Motion(name=sequence, rotations=tc.gt_rotations_world(gt),
                  root=gt.positions[:, 0].astype(np.float64), leg_length=leg, fps=60.0)


def file_digest(path: Path) -> str:
    """sha256 of a file (the settings of a run name its BVH files by content)."""
    from capture.samples import file_sha256

    try:
        return file_sha256(path)
    except OSError as err:
        raise InputError(f"cannot read {path}: {err}") from err


def bvh_names(paths: tuple[Path, ...]) -> dict[str, Path]:
    """{motion name ``bvh:<stem>``: path}; :class:`DatasetError` on two files with one stem."""
    out: dict[str, Path] = {}
    for p in paths:
        name = f"bvh:{Path(p).stem}"
        if name in out:
            raise DatasetError(f"two BVH files are named {Path(p).stem}: rename one")
        out[name] = Path(p)
    return out
