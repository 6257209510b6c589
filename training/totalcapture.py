"""The shared TotalCapture package (``../shared/data/totalcapture``), loaded with plain NumPy.

Conventions (documented and verified in the package's README):

* GT positions: (F, 21, 3) metres, TotalCapture world frame (y up). GT orientations: (F, 21, 4)
  global unit quaternions (w, x, y, z), bone-local -> world. Some sequences have none.
* Cameras: ``X_c = R @ X_w + t`` (R as stored, t in metres); camera frame x right, y down,
  z forward; pinhole ``u = fx x / z + cx``, ``v = fy y / z + cy`` in pixels of the 1920x1080
  image, origin top-left. A global rotation moves to the camera frame as ``G_c = R @ G_w``.
* Alignment: BlazePose frame ``i`` shows GT frame ``i + offset_frames``.
* BlazePose files: (F, 33, 10) float32 (channels in ``engine.skeleton``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import rotations as rot
from engine.data import FLAG_ALIGNED, FLAG_CLEAN, FLAG_IN_VIEW, FLAG_TRACKED
from engine.errors import DatasetError
from engine.skeleton import CH_IMAGE, EVAL_BLAZEPOSE_INDICES, EVAL_JOINT_INDICES, NUM_JOINTS

IMAGE_WIDTH = 1920
IMAGE_HEIGHT = 1080
GT_FPS = 60
#: Median 2D distance (px, 12 eval joints) under which BlazePose is on the subject.
TRACKED_MAX_PX = 150.0
#: Stricter bound for frames used as training targets (drops S1_freestyle1_cam5's bad stretch).
CLEAN_MAX_PX = 100.0

_BLAZE_NAME = re.compile(r"^(S\d+)_([a-z]+\d+)_cam(\d+)$")


@dataclass(frozen=True)
class Camera:
    """One calibrated TotalCapture camera (world metres -> camera frame -> pixels)."""

    camera_id: int
    R: np.ndarray   # (3, 3) world -> camera rotation
    t: np.ndarray   # (3,) metres
    fx: float
    fy: float
    cx: float
    cy: float
    width: int = IMAGE_WIDTH
    height: int = IMAGE_HEIGHT


@dataclass(frozen=True)
class GroundTruth:
    """GT of one sequence: positions (F, 21, 3) metres, world frame; orientations (F, 21, 4)
    w, x, y, z global (bone-local -> world), or None when the package has none."""

    sequence: str
    positions: np.ndarray
    orientations: np.ndarray | None


@dataclass(frozen=True)
class BlazeFile:
    """One BlazePose file of the package: ``blazepose/{subject}_{action}_cam{camera}.npy``."""

    subject: str
    action: str
    camera: int
    path: Path

    @property
    def sequence(self) -> str:
        return f"{self.subject}_{self.action}"

    @property
    def name(self) -> str:
        return f"{self.sequence}_cam{self.camera}"


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"{path} is missing: is this the shared TotalCapture folder?")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_cameras(root: Path) -> dict[int, Camera]:
    """calibration.json -> {camera id: Camera}."""
    data = _read_json(Path(root) / "calibration.json")
    cams = {}
    for c in data["cameras"]:
        cams[int(c["camera_id"])] = Camera(
            camera_id=int(c["camera_id"]), R=np.asarray(c["R"], dtype=np.float64),
            t=np.asarray(c["t_m"], dtype=np.float64), fx=float(c["fx"]), fy=float(c["fy"]),
            cx=float(c["cx"]), cy=float(c["cy"]), width=int(c["image_width"]),
            height=int(c["image_height"]))
    return cams


def load_alignment(root: Path) -> dict[str, dict]:
    """alignment.json ``files`` -> {"S1_freestyle1_cam1": {"offset_frames": -2, ...}}."""
    return _read_json(Path(root) / "alignment.json")["files"]


def load_skeleton_offsets(root: Path) -> dict[str, np.ndarray]:
    """skeleton.json -> {sequence: (21, 3) float32 offsets in the parent's frame, metres}."""
    data = _read_json(Path(root) / "skeleton.json")
    return {k: np.asarray(v, dtype=np.float32).reshape(NUM_JOINTS, 3)
            for k, v in data["offsets_m_per_sequence"].items()}


def load_gt(root: Path, sequence: str) -> GroundTruth:
    """gt/{sequence}.npz -> GroundTruth (no pickle)."""
    path = Path(root) / "gt" / f"{sequence}.npz"
    if not path.is_file():
        raise DatasetError(f"ground truth {path} is missing")
    with np.load(path, allow_pickle=False) as d:
        pos = np.asarray(d["positions"], dtype=np.float32)
        ori = np.asarray(d["orientations"], dtype=np.float32) if "orientations" in d.files else None
    return GroundTruth(sequence=sequence, positions=pos, orientations=ori)


def list_blazepose_files(root: Path) -> list[BlazeFile]:
    """All ``blazepose/*.npy`` files, sorted by subject, action and camera."""
    out = []
    for p in sorted((Path(root) / "blazepose").glob("*.npy")):
        m = _BLAZE_NAME.match(p.stem)
        if m is None:
            raise DatasetError(f"unexpected BlazePose file name {p.name}")
        out.append(BlazeFile(subject=m.group(1), action=m.group(2), camera=int(m.group(3)), path=p))
    out.sort(key=lambda b: (b.subject, b.action, b.camera))
    return out


def world_to_camera(points: np.ndarray, cam: Camera) -> np.ndarray:
    """(..., 3) world metres -> (..., 3) camera frame metres (x right, y down, z forward)."""
    return np.asarray(points, dtype=np.float64) @ cam.R.T + cam.t


def rotations_to_camera(glob_world: np.ndarray, cam: Camera) -> np.ndarray:
    """(..., 3, 3) global rotations (bone-local -> world) -> bone-local -> camera: ``R @ G``."""
    return cam.R @ np.asarray(glob_world, dtype=np.float64)


def project(points_cam: np.ndarray, cam: Camera) -> np.ndarray:
    """(..., 3) camera-frame metres -> (..., 2) pixels (u right, v down). z <= 0 gives inf."""
    p = np.asarray(points_cam, dtype=np.float64)
    z = p[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(z > 0, cam.fx * p[..., 0] / z + cam.cx, np.inf)
        v = np.where(z > 0, cam.fy * p[..., 1] / z + cam.cy, np.inf)
    return np.stack([u, v], axis=-1)


def gt_rotations_world(gt: GroundTruth) -> np.ndarray:
    """(F, 21, 3, 3) float64 global rotations (bone-local -> world); DatasetError if absent."""
    if gt.orientations is None:
        raise DatasetError(f"ground truth of {gt.sequence} has no orientations")
    return rot.quaternion_to_matrix(gt.orientations.astype(np.float64))


def overlap(n_blaze: int, n_gt: int, offset: int) -> tuple[int, int, int]:
    """Frames where both exist: (first BlazePose frame, first GT frame, count).

    BlazePose frame ``i`` <-> GT frame ``i + offset``.
    """
    b0 = max(0, -offset)
    b1 = min(n_blaze, n_gt - offset)
    n = max(0, b1 - b0)
    return b0, b0 + offset, n


def detected_frames(landmarks: np.ndarray) -> np.ndarray:
    """(F, 33, 10) -> (F,) bool: the frame has a detection (not all channels zero)."""
    return (landmarks != 0).any(axis=(1, 2))


def frame_flags(landmarks: np.ndarray, gt_positions_world: np.ndarray, cam: Camera,
                offset: int) -> np.ndarray:
    """Per-BlazePose-frame quality bitfield (F_blaze,) uint8 (bits in ``engine.data``).

    * aligned (1): a GT frame exists at ``i + offset``;
    * in_view (2): aligned and all 12 eval GT joints project inside the image (in front of
      the camera);
    * tracked (4): in view, detected, and the median 2D distance between the BlazePose image
      landmarks (channels 5, 6 in pixels) and the projected GT joints (12 eval joints) is
      under ``TRACKED_MAX_PX``;
    * clean (8): aligned, detected and that median distance under ``CLEAN_MAX_PX`` (usable as
      a training target).
    """
    n_blaze = landmarks.shape[0]
    b0, g0, n = overlap(n_blaze, gt_positions_world.shape[0], offset)
    flags = np.zeros(n_blaze, dtype=np.uint8)
    if n == 0:
        return flags
    sl = slice(b0, b0 + n)
    joints = gt_positions_world[g0:g0 + n][:, list(EVAL_JOINT_INDICES)]
    uv_gt = project(world_to_camera(joints, cam), cam)                          # (n, 12, 2)
    in_view = (np.isfinite(uv_gt).all(axis=-1) & (uv_gt[..., 0] >= 0) & (uv_gt[..., 0] < cam.width)
               & (uv_gt[..., 1] >= 0) & (uv_gt[..., 1] < cam.height)).all(axis=-1)
    lm = landmarks[sl]
    uv_bp = (lm[:, list(EVAL_BLAZEPOSE_INDICES), CH_IMAGE].astype(np.float64)
             * [cam.width, cam.height])                                         # (n, 12, 2)
    with np.errstate(invalid="ignore"):
        dist = np.median(np.linalg.norm(np.where(np.isfinite(uv_gt), uv_gt, 1e9) - uv_bp, axis=-1),
                         axis=-1)
    det = detected_frames(lm)
    f = np.full(n, FLAG_ALIGNED, dtype=np.uint8)
    f |= np.where(in_view, FLAG_IN_VIEW, 0).astype(np.uint8)
    f |= np.where(in_view & det & (dist < TRACKED_MAX_PX), FLAG_TRACKED, 0).astype(np.uint8)
    f |= np.where(det & (dist < CLEAN_MAX_PX), FLAG_CLEAN, 0).astype(np.uint8)
    flags[sl] = f
    return flags


def load_aligned_pair(root: Path, name: str) -> dict:
    """One BlazePose file (``name`` like "S1_freestyle1_cam4") and its ground truth, aligned
    frame by frame (the overlap at the measured offset), in that camera's frame:
    landmarks (F, 33, 10), pos (F, 21, 3) metres, glob (F, 21, 3, 3), flags (F,) uint8,
    camera. DatasetError when the sequence has no orientations."""
    root = Path(root)
    seq, cam_id = name.rsplit("_cam", 1)
    cam = load_cameras(root)[int(cam_id)]
    off = int(load_alignment(root)[name]["offset_frames"])
    gt = load_gt(root, seq)
    lm = np.load(root / "blazepose" / f"{name}.npy", allow_pickle=False)
    b0, g0, n = overlap(len(lm), len(gt.positions), off)
    return dict(landmarks=lm[b0:b0 + n],
                pos=world_to_camera(gt.positions[g0:g0 + n], cam),
                glob=rotations_to_camera(gt_rotations_world(gt)[g0:g0 + n], cam),
                flags=frame_flags(lm, gt.positions, cam, off)[b0:b0 + n], camera=cam)
