"""The skeleton, declared once as data.

Joints follow the TotalCapture hierarchy (21 joints). The engine's output has 22 *slots*
per frame, each a 6-vector:

    slot 0      root translation: (dx, dy, dz, x, y, z) = per-frame displacement of the Hips
                joint and its position, metres, camera frame (x right, y down, z forward)
    slot 1      root rotation: global rotation of Hips (bone-local -> camera), 6D
    slot 2..21  local rotations of joints 1..20 (Spine .. LeftFoot) relative to their
                parent, 6D (see ``engine.rotations`` for the 6D convention)

Forward kinematics convention (TotalCapture, verified on the shared data):
``p[child] = p[parent] + G[parent] @ offset[child]`` with ``G`` the global (bone-local ->
camera/world) rotation of a joint and ``offset`` in the parent's bone-local frame, metres.
Bone-local axes: the spine chain runs along local -z, legs along +z, the right arm along +x
and the left arm along -x.

BlazePose landmark indices are named here too, so no other module uses magic numbers.
"""
from __future__ import annotations

import numpy as np

# (name, parent name, default offset in the parent's frame in metres).
# Default body = mean over the five TotalCapture subjects of ``offsets_m_typical_per_subject``
# in shared/data/totalcapture/skeleton.json (tests/engine/test_skeleton.py re-derives it).
_JOINTS: tuple[tuple[str, str | None, tuple[float, float, float]], ...] = (
    ("Hips", None, (0.0, 0.0, 0.0)),
    ("Spine", "Hips", (0.0, 0.04401, -0.06602)),
    ("Spine1", "Spine", (0.0, 0.01529, -0.08669)),
    ("Spine2", "Spine1", (0.0, 0.00767, -0.08769)),
    ("Spine3", "Spine2", (0.0, 0.0, -0.08802)),
    ("Neck", "Spine3", (0.0, -0.03301, -0.23106)),
    ("Head", "Neck", (0.0, -0.02102, -0.11919)),
    ("RightShoulder", "Spine3", (0.02927, -0.04878, -0.15805)),
    ("RightArm", "RightShoulder", (0.14537, 0.0, 0.0)),
    ("RightForeArm", "RightArm", (0.27551, 0.0, 0.0)),
    ("RightHand", "RightForeArm", (0.22324, 0.0, 0.0)),
    ("LeftShoulder", "Spine3", (-0.02927, -0.04878, -0.15805)),
    ("LeftArm", "LeftShoulder", (-0.14537, 0.0, 0.0)),
    ("LeftForeArm", "LeftArm", (-0.27551, 0.0, 0.0)),
    ("LeftHand", "LeftForeArm", (-0.22324, 0.0, 0.0)),
    ("RightUpLeg", "Hips", (0.08683, 0.0, 0.02537)),
    ("RightLeg", "RightUpLeg", (0.0, 0.0, 0.39640)),
    ("RightFoot", "RightLeg", (0.0, 0.0, 0.39602)),
    ("LeftUpLeg", "Hips", (-0.08683, 0.0, 0.02537)),
    ("LeftLeg", "LeftUpLeg", (0.0, 0.0, 0.39640)),
    ("LeftFoot", "LeftLeg", (0.0, 0.0, 0.39602)),
)

JOINT_NAMES: tuple[str, ...] = tuple(j[0] for j in _JOINTS)
NUM_JOINTS = len(JOINT_NAMES)  # 21
JOINT_INDEX: dict[str, int] = {n: i for i, n in enumerate(JOINT_NAMES)}
PARENTS: tuple[int, ...] = tuple(-1 if p is None else JOINT_INDEX[p] for _, p, _ in _JOINTS)
DEFAULT_OFFSETS = np.array([j[2] for j in _JOINTS], dtype=np.float32)  # (21, 3) metres
DEFAULT_OFFSETS.setflags(write=False)

NUM_SLOTS = 22
ROOT_TRANSLATION_SLOT = 0
ROOT_ROTATION_SLOT = 1
#: slot of joint j's rotation: Hips -> 1 (global), joint j >= 1 -> j + 1 (local).
SLOT_NAMES: tuple[str, ...] = ("RootTranslation",) + JOINT_NAMES

LEFT_RIGHT_JOINT_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (JOINT_INDEX[n], JOINT_INDEX["Right" + n[4:]]) for n in JOINT_NAMES if n.startswith("Left")
)


def mirror_joint_permutation() -> np.ndarray:
    """Index array p such that ``x_mirrored = x[..., p, :]`` swaps left and right joints."""
    perm = np.arange(NUM_JOINTS)
    for a, b in LEFT_RIGHT_JOINT_PAIRS:
        perm[a], perm[b] = b, a
    return perm


# ---------------------------------------------------------------------------------------------
# BlazePose (MediaPipe Pose, 33 landmarks)
# ---------------------------------------------------------------------------------------------
BLAZEPOSE_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
BLAZEPOSE_INDEX: dict[str, int] = {n: i for i, n in enumerate(BLAZEPOSE_NAMES)}
NUM_BLAZEPOSE = 33

#: Channels of the (F, 33, 10) landmark format (shared data and ``blaze2cap extract``).
CH_WORLD = slice(0, 3)       # world landmarks, metres, hip-centred, x right, y down, z away
CH_WORLD_VIS = 3
CH_ANCHOR = 4                # 1 when the previous frame had a detection (0 = track restart)
CH_IMAGE = slice(5, 7)       # normalised image x, y (0..1, origin top-left)
CH_IMAGE_Z = 7               # MediaPipe relative depth
CH_VIS = 8                   # landmark visibility
CH_ANCHOR_COPY = 9
NUM_CHANNELS = 10

#: The 25 landmarks the model sees (eyes and mouth dropped: ears and nose carry head pose).
FEATURE_LANDMARKS: tuple[str, ...] = (
    "nose", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
FEATURE_LANDMARK_INDICES: tuple[int, ...] = tuple(BLAZEPOSE_INDEX[n] for n in FEATURE_LANDMARKS)


def blazepose_mirror_permutation() -> np.ndarray:
    """Index array p with ``lm_mirrored = lm[..., p, :]`` swapping left/right landmarks (33)."""
    perm = np.arange(NUM_BLAZEPOSE)
    for n, i in BLAZEPOSE_INDEX.items():
        if n.startswith("left_"):
            perm[i] = BLAZEPOSE_INDEX["right_" + n[5:]]
        elif n.startswith("right_"):
            perm[i] = BLAZEPOSE_INDEX["left_" + n[6:]]
    return perm


#: Evaluation protocol: TotalCapture joints and the BlazePose landmark that matches each.
EVAL_JOINTS: tuple[str, ...] = (
    "RightArm", "RightForeArm", "RightHand", "LeftArm", "LeftForeArm", "LeftHand",
    "RightUpLeg", "RightLeg", "RightFoot", "LeftUpLeg", "LeftLeg", "LeftFoot",
)
EVAL_JOINT_INDICES: tuple[int, ...] = tuple(JOINT_INDEX[n] for n in EVAL_JOINTS)
EVAL_BLAZEPOSE_INDICES: tuple[int, ...] = (12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27)
#: Root of the evaluation protocol: midpoint of these two joints (BlazePose's own origin).
EVAL_ROOT_JOINTS: tuple[int, int] = (JOINT_INDEX["RightUpLeg"], JOINT_INDEX["LeftUpLeg"])
