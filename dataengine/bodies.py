"""Anny bodies posed with TotalCapture global rotations, and the ground truth of the posed body.

Frames and conventions:

* **TotalCapture world** (TC): y up, metres. A TC global rotation ``G_j`` maps joint j's
  bone-local frame to the TC world. The bone-local axes are those of the TC skeleton in its
  rest T-pose, where every joint frame is parallel to the body frame: x = the subject's right,
  y = back, z = down (the spine runs along local -z, legs along +z, the right arm along +x).
* **Anny world** (A): z up, the rest body faces -y, its ``.L`` bones lie at +x, metres. Blender
  uses the same axes, so the mesh goes into Blender unchanged.
* ``TC_TO_ANNY`` (C) maps TC world vectors to Anny world; ``BODY_AXES`` (M) holds the body
  frame (right, back, down) of the Anny rest body as columns.

Retarget (fixed, per body): each TC joint j owns a *group* of Anny bones (its head bone and
the unmapped bones below it, e.g. ``upperarm01.R`` and ``upperarm02.R`` for RightArm). Every
bone c of the group gets the world orientation (``pose_parameterization='world-orient'``)

    D_c = Delta_j @ S_j @ R_c,     Delta_j = C @ G_j @ M^T,

with ``R_c`` the bone's rest orientation and ``S_j`` the group's *swing*: the smallest
rotation taking the group's rest direction (head to the next group's head) onto the TC rest
direction (arms horizontal, legs vertical); torso, neck, head and feet keep their rest
orientation (S = I), hands follow the forearm's swing. A group therefore moves rigidly, and
the TC rotation of the rendered body reads back exactly as ``G_j = C^T D_c R_c^T S_j^T M``.
The skeleton offsets of the rendered body, ``offset_j = M^T S_parent (h_j - h_parent)`` with
``h`` the rest heads, are constant over a clip, so forward kinematics with them reproduces the
rendered joint positions (the Anny head of each group's head bone).

``anny`` (optional dependency) is imported lazily; its cache lives in ``ANNY_CACHE_DIR``
(default ``~/.cache/blaze2cap/anny``, see :func:`load_model`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from engine.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS

log = logging.getLogger(__name__)

#: TC world -> Anny world (TC y up -> Anny z up; TC x stays x).
TC_TO_ANNY = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
#: Body frame of the Anny rest body as columns: subject's right (-x), back (+y), down (-z).
BODY_AXES = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])

#: Anny head bone of each TC joint ("{s}" = L or R).
HEAD_BONES: dict[str, str] = {
    "Hips": "root", "Spine": "spine05", "Spine1": "spine04", "Spine2": "spine03",
    "Spine3": "spine02", "Neck": "neck01", "Head": "head",
    **{f"{side}{part}": f"{bone}.{s}" for side, s in (("Right", "R"), ("Left", "L"))
       for part, bone in (("Shoulder", "clavicle"), ("Arm", "upperarm01"),
                          ("ForeArm", "lowerarm01"), ("Hand", "wrist"),
                          ("UpLeg", "upperleg01"), ("Leg", "lowerleg01"), ("Foot", "foot"))},
}
#: Groups swung onto the TC rest direction: joint -> (joint whose head ends the direction,
#: target direction in the TC body frame).
LIMB_SWINGS: dict[str, tuple[str, tuple[float, float, float]]] = {
    **{f"{side}{a}": (f"{side}{b}", (sign, 0.0, 0.0)) for side, sign in (("Right", 1.0), ("Left", -1.0))
       for a, b in (("Shoulder", "Arm"), ("Arm", "ForeArm"), ("ForeArm", "Hand"))},
    **{f"{side}{a}": (f"{side}{b}", (0.0, 0.0, 1.0)) for side in ("Right", "Left")
       for a, b in (("UpLeg", "Leg"), ("Leg", "Foot"))},
}
#: Groups that reuse another group's swing.
HAND_SWINGS = {"RightHand": "RightForeArm", "LeftHand": "LeftForeArm"}

PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")
#: Sampling ranges of the phenotypes (Anny's [0, 1] scales; age kept to adults).
PHENOTYPE_RANGES: dict[str, tuple[float, float]] = {
    "gender": (0.0, 1.0), "age": (0.5, 0.9), "muscle": (0.1, 0.9), "weight": (0.1, 0.9),
    "height": (0.1, 0.9), "proportions": (0.25, 0.75),
}
#: Standing height (metres) of sampled adults: normal, clipped. Anny's own ``height`` scale
#: spans 1.1 to 2.3 m over the phenotypes, so it is solved for the sampled stature instead.
STATURE_MEAN, STATURE_STD, STATURE_RANGE = 1.70, 0.09, (1.48, 1.98)


def default_cache_dir() -> Path:
    """``ANNY_CACHE_DIR`` if set, else ``~/.cache/blaze2cap/anny`` (outside the repository)."""
    env = os.environ.get("ANNY_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "blaze2cap" / "anny"


def load_model():
    """The Anny full-body model (``world-orient`` poses, float32). The first call on a
    machine builds Anny's cache (about a minute); later ones load it (under a second)."""
    os.environ.setdefault("ANNY_CACHE_DIR", str(default_cache_dir()))
    import warp  # anny's skinning kernels

    warp.config.log_level = warp.LOG_ERROR  # no banner, no "no CUDA" warning on CPU machines
    import anny  # optional dependency: requirements/synth.txt

    anny.paths.set_anny_cache_path(os.environ["ANNY_CACHE_DIR"])
    return anny.Anny(pose_parameterization="world-orient")


@dataclass(frozen=True)
class BodyParams:
    """Anny phenotype values, each in [0, 1]."""

    gender: float = 0.5
    age: float = 0.5
    muscle: float = 0.5
    weight: float = 0.5
    height: float = 0.5
    proportions: float = 0.5

    @staticmethod
    def sample(rng: np.random.Generator) -> "BodyParams":
        return BodyParams(**{k: round(float(rng.uniform(*PHENOTYPE_RANGES[k])), 4)
                             for k in PHENOTYPES})

    def to_dict(self) -> dict:
        return asdict(self)


def swing_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) smallest rotation taking direction a onto direction b."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if c < -0.999999:
        raise ValueError("opposite directions have no unique swing")
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


@dataclass
class PosedClip:
    """One clip of a posed body (K frames), all float64 unless said.

    vertices (K, V, 3) float32 Anny world metres; faces (T, 3) int64; positions (K, 21, 3)
    TC joints in Anny world; rotations (K, 21, 3, 3) TC global rotations in Anny world
    (TC bone-local -> Anny world, i.e. ``C @ G``); offsets (21, 3) skeleton offsets of the
    body (TC convention); face_bones (T,) int64 the dominant Anny bone of each face;
    bone_labels: Anny bone names.
    """

    vertices: np.ndarray
    faces: np.ndarray
    positions: np.ndarray
    rotations: np.ndarray
    offsets: np.ndarray
    face_bones: np.ndarray
    bone_labels: list[str]


class Retargeter:
    """TC global rotations and root positions -> a posed Anny body of given phenotype."""

    def __init__(self, model=None):
        import torch

        self.torch = torch
        self.model = model if model is not None else load_model()
        self.labels = list(self.model.bone_labels)
        self.parents = [int(p) for p in self.model.bone_parents]
        index = {n: i for i, n in enumerate(self.labels)}
        self.head_index = np.array([index[HEAD_BONES[j]] for j in JOINT_NAMES])
        # group of every Anny bone: its nearest ancestor (or itself) that is a head bone
        owner = {int(b): j for j, b in enumerate(self.head_index)}
        self.group = np.zeros(len(self.labels), dtype=np.int64)
        for b in range(len(self.labels)):
            a = b
            while a not in owner:
                a = self.parents[a]
                if a < 0:
                    raise ValueError(f"Anny bone {self.labels[b]} has no mapped ancestor")
            self.group[b] = owner[a]
        self.faces = self.model.get_triangular_faces().cpu().numpy().astype(np.int64)
        # dominant bone per vertex, then per face (first vertex's bone on ties)
        idx = self.model.vertex_bone_indices.cpu().numpy()
        w = self.model.vertex_bone_weights.cpu().numpy()
        vbone = idx[np.arange(len(idx)), w.argmax(1)]
        self.face_bones = vbone[self.faces[:, 0]]
        fb = vbone[self.faces]
        agree = fb[:, 1] == fb[:, 2]
        self.face_bones[agree] = fb[agree, 1]

    def rest(self, body: BodyParams) -> tuple[np.ndarray, object]:
        """(B, 4, 4) float64 rest bone poses of a body, and the torch phenotype kwargs."""
        t = self.torch
        ph = {k: t.tensor([float(v)], dtype=t.float32) for k, v in body.to_dict().items()}
        with t.no_grad():
            rest = self.model(pose_parameters=None, phenotype_kwargs=ph)["rest_bone_poses"]
        return rest[0].double().cpu().numpy(), ph

    def stature(self, body: BodyParams) -> float:
        """Standing height of the rest body (metres, lowest to highest vertex)."""
        t = self.torch
        ph = {k: t.tensor([float(v)], dtype=t.float32) for k, v in body.to_dict().items()}
        with t.no_grad():
            z = self.model(pose_parameters=None, phenotype_kwargs=ph)["rest_vertices"][0, :, 2]
        return float(z.max() - z.min())

    def with_stature(self, body: BodyParams, stature: float, iterations: int = 10) -> BodyParams:
        """``body`` with its ``height`` phenotype solved (bisection) for a standing height in
        metres; clipped to what the phenotype reaches."""
        lo, hi = 0.0, 1.0
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            if self.stature(replace(body, height=mid)) < stature:
                lo = mid
            else:
                hi = mid
        return replace(body, height=round(0.5 * (lo + hi), 4))

    def alignment(self, rest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Swings (21, 3, 3) S_j in Anny world and offsets (21, 3) of the body (TC frame)."""
        heads = rest[:, :3, 3]
        jh = heads[self.head_index]                                   # (21, 3)
        swings = np.repeat(np.eye(3)[None], NUM_JOINTS, axis=0)
        for j, (end, target) in LIMB_SWINGS.items():
            ji, ei = JOINT_INDEX[j], JOINT_INDEX[end]
            swings[ji] = swing_rotation(jh[ei] - jh[ji], BODY_AXES @ np.asarray(target))
        for j, like in HAND_SWINGS.items():
            swings[JOINT_INDEX[j]] = swings[JOINT_INDEX[like]]
        offsets = np.zeros((NUM_JOINTS, 3))
        for j in range(1, NUM_JOINTS):
            p = PARENTS[j]
            offsets[j] = BODY_AXES.T @ swings[p] @ (jh[j] - jh[p])
        return swings, offsets

    def pose(self, body: BodyParams, rotations_tc: np.ndarray, root_tc: np.ndarray,
             root_scale: float = 1.0) -> PosedClip:
        """Pose a body.

        rotations_tc (K, 21, 3, 3) TC global rotations (TC world); root_tc (K, 3) TC Hips
        positions (TC world, metres), scaled by ``root_scale`` (body size / TC subject size)
        so that steps match the legs; the Anny root head follows them.
        """
        t = self.torch
        rest, ph = self.rest(body)
        swings, offsets = self.alignment(rest)
        R = rest[:, :3, :3]                                           # (B, 3, 3)
        k = len(rotations_tc)
        delta = TC_TO_ANNY @ np.asarray(rotations_tc, np.float64) @ BODY_AXES.T   # (K, 21, 3, 3)
        d = delta[:, self.group] @ swings[self.group] @ R[None]        # (K, B, 3, 3)
        params = np.zeros((k, len(self.labels), 4, 4))
        params[..., :3, :3] = d
        params[..., 3, 3] = 1.0
        params[:, 0, :3, 3] = (np.asarray(root_tc, np.float64) * root_scale) @ TC_TO_ANNY.T
        with t.no_grad():
            out = self.model(pose_parameters=t.from_numpy(params).float(), phenotype_kwargs=ph)
        poses = out["bone_poses"].double().cpu().numpy()                # (K, B, 4, 4)
        hb = self.head_index
        heads = poses[:, hb][..., :3, 3]                               # (K, 21, 3)
        rot = poses[:, hb][..., :3, :3] @ np.swapaxes(R[hb], -1, -2) @ np.swapaxes(swings, -1, -2)
        rot = rot @ BODY_AXES                                          # C @ G, (K, 21, 3, 3)
        return PosedClip(vertices=out["vertices"].cpu().numpy().astype(np.float32),
                         faces=self.faces, positions=heads, rotations=rot, offsets=offsets,
                         face_bones=self.face_bones, bone_labels=self.labels)

    def leg_length(self, body: BodyParams) -> float:
        """Hip-to-ankle length of the body's right leg (metres, rest)."""
        rest, _ = self.rest(body)
        _, off = self.alignment(rest)
        return float(np.linalg.norm(off[JOINT_INDEX["RightLeg"]])
                     + np.linalg.norm(off[JOINT_INDEX["RightFoot"]]))
