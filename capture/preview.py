"""Side-by-side preview video: input frames with 2D landmarks | 3D skeleton.

Left panel: the video (scaled to ``PreviewConfig.height``) with the BlazePose landmarks of
each frame drawn (left side blue, right side orange, centre white). Right panel: a square
orthographic render, from a fixed 3/4 view above the floor, of the engine's 21 joints
(TotalCapture order, ``engine.skeleton.PARENTS``; camera-frame metres, Hips at the origin,
x right, y down, z away from the camera) over a floor grid. Without joints the panel shows
BlazePose's own world landmarks (channels 0-2), which use the same axes.

Frames are read, drawn and written one at a time (``cv2.VideoWriter``, MPEG-4 Part 2 'mp4v' in
an .mp4: plays in VLC, mpv, QuickTime, Windows Media Player and Blender; browsers generally
need H.264, which OpenCV's bundled FFmpeg cannot encode). The file is written under a
temporary name and renamed into place when complete.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.atomic import AtomicFile
from engine.errors import InputError, VideoError
from engine.skeleton import (BLAZEPOSE_INDEX, BLAZEPOSE_NAMES, CH_IMAGE, CH_VIS, CH_WORLD,
                             JOINT_NAMES, NUM_BLAZEPOSE, NUM_CHANNELS, NUM_JOINTS, PARENTS)

from .video import iter_frames, probe_video, resize_frame

log = logging.getLogger(__name__)

# BlazePose edges drawn in 2D (and in 3D when no joints are given), by landmark name.
_EDGE_NAMES = (
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("nose", "left_eye"), ("left_eye", "left_ear"), ("nose", "right_eye"),
    ("right_eye", "right_ear"), ("mouth_left", "mouth_right"),
) + tuple(
    (f"{s}_{a}", f"{s}_{b}") for s in ("left", "right") for a, b in (
        ("shoulder", "elbow"), ("elbow", "wrist"), ("wrist", "pinky"), ("wrist", "index"),
        ("pinky", "index"), ("wrist", "thumb"), ("hip", "knee"), ("knee", "ankle"),
        ("ankle", "heel"), ("heel", "foot_index"), ("ankle", "foot_index")))
BLAZEPOSE_EDGES: tuple[tuple[int, int], ...] = tuple(
    (BLAZEPOSE_INDEX[a], BLAZEPOSE_INDEX[b]) for a, b in _EDGE_NAMES)
SKELETON_EDGES: tuple[tuple[int, int], ...] = tuple(
    (PARENTS[j], j) for j in range(NUM_JOINTS) if PARENTS[j] >= 0)

# BGR colours
_LEFT, _RIGHT, _CENTRE = (230, 140, 40), (40, 140, 255), (235, 235, 235)
_BACKGROUND, _GRID, _TEXT = (32, 32, 32), (80, 80, 80), (255, 255, 255)


@dataclass(frozen=True)
class PreviewConfig:
    height: int = 540                # output height in pixels (the video panel keeps its aspect)
    yaw_deg: float = 35.0            # 3/4 view: turn about the vertical axis
    pitch_deg: float = 20.0          # look down at the floor from above
    metres_visible: float = 2.6      # vertical extent of the 3D panel, metres
    grid_half_size: float = 2.0      # floor grid spans +-this many metres around the Hips
    grid_step: float = 0.5           # metres between grid lines
    min_visibility: float = 0.3      # 2D landmarks below this visibility are not drawn


@dataclass(frozen=True)
class PreviewResult:
    out_path: Path
    frames: int
    width: int
    height: int
    fps: float


def render_preview(video_path: str | os.PathLike, landmarks: np.ndarray,
                   joints: np.ndarray | None, out_mp4: str | os.PathLike,
                   fps: float | None = None, start: int = 0,
                   config: PreviewConfig = PreviewConfig()) -> PreviewResult:
    """Write the side-by-side preview .mp4 of frames [start, start + F) of a video.

    landmarks: (F, 33, 10) rows of ``capture.blazepose`` (row i = video frame start + i).
    joints: (F, 21, 3) camera-frame metres, Hips at the origin, or None to show BlazePose's
    world landmarks instead. fps: output frame rate (default: the video's).
    Returns the written file and its frame count (fewer than F only when the video is shorter).
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.ndim != 3 or lm.shape[1:] != (NUM_BLAZEPOSE, NUM_CHANNELS):
        raise InputError(f"landmarks must have shape (F, 33, 10), got {lm.shape}")
    n = lm.shape[0]
    if joints is not None:
        joints = np.asarray(joints, dtype=np.float32)
        if joints.shape != (n, NUM_JOINTS, 3):
            raise InputError(f"joints must have shape ({n}, {NUM_JOINTS}, 3), got {joints.shape}")
    if n == 0:
        raise InputError("there are no frames to preview")
    info = probe_video(video_path)
    fps = float(fps or info.fps)
    out = Path(out_mp4)
    if out.suffix.lower() != ".mp4":
        raise InputError(f"the preview must be an .mp4 file, got {out.name}")

    vid_h = _even(config.height)
    vid_w = _even(config.height * info.aspect)
    panel = vid_h  # square 3D panel
    size = (vid_w + panel, vid_h)
    view = _view_rotation(config.yaw_deg, config.pitch_deg)
    scale = vid_h / config.metres_visible
    floor = _floor_level(joints if joints is not None else lm[:, :, CH_WORLD],
                         lm.any(axis=(1, 2)) if joints is None else None)
    grid = _grid_segments(floor, config.grid_half_size, config.grid_step)
    label = "Blaze2Cap skeleton" if joints is not None else "BlazePose world landmarks"

    target = AtomicFile(out, open_file=False, suffix=".mp4")  # OpenCV picks the format by suffix
    writer = cv2.VideoWriter(str(target.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    written = 0
    try:
        if not writer.isOpened():
            raise VideoError(f"cannot create the preview video {out} (mp4v encoder unavailable)")
        for i, rgb in enumerate(iter_frames(info, start, start + n)):
            left = cv2.cvtColor(resize_frame(rgb, (vid_w, vid_h)), cv2.COLOR_RGB2BGR)
            _draw_landmarks_2d(left, lm[i], config.min_visibility)
            right = np.full((panel, panel, 3), _BACKGROUND, dtype=np.uint8)
            _draw_segments(right, grid, view, scale, _GRID, 1)
            if joints is not None:
                pts, edges, colours = joints[i], SKELETON_EDGES, _JOINT_EDGE_COLOURS
            else:
                pts, edges, colours = lm[i, :, CH_WORLD], BLAZEPOSE_EDGES, _LANDMARK_EDGE_COLOURS
            if np.isfinite(pts).all() and (joints is not None or lm[i].any()):
                segs = np.stack([pts[[a for a, _ in edges]], pts[[b for _, b in edges]]], axis=1)
                _draw_segments(right, segs, view, scale, colours, 3)
            else:
                cv2.putText(right, "no person", (10, panel - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                            _TEXT, 1, cv2.LINE_AA)
            cv2.putText(right, label, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, _TEXT, 1,
                        cv2.LINE_AA)
            cv2.putText(left, f"frame {start + i}", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                        _TEXT, 1, cv2.LINE_AA)
            writer.write(np.ascontiguousarray(np.concatenate([left, right], axis=1)))
            written += 1
        writer.release()
        if written == 0:
            raise VideoError(f"no frames of {info.path.name} could be read for the preview")
        target.commit()
    except BaseException:
        writer.release()
        target.abort()
        raise
    if written < n:
        log.warning("the video ended after %d of %d preview frames", written, n)
    return PreviewResult(out_path=out, frames=written, width=size[0], height=size[1], fps=fps)


# ---------------------------------------------------------------------------------------------
def _side_colour(name: str) -> tuple[int, int, int]:
    low = name.lower()
    return _LEFT if low.startswith("left") else _RIGHT if low.startswith("right") else _CENTRE


_JOINT_EDGE_COLOURS = tuple(_side_colour(JOINT_NAMES[j]) for _, j in SKELETON_EDGES)
_LANDMARK_EDGE_COLOURS = tuple(
    _side_colour(BLAZEPOSE_NAMES[a]) if BLAZEPOSE_NAMES[a].split("_")[0] ==
    BLAZEPOSE_NAMES[b].split("_")[0] else _CENTRE for a, b in BLAZEPOSE_EDGES)


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def _view_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """(3, 3) rotation applied to camera-frame points: yaw about y, then pitch about x.

    With y down, a positive pitch moves far points (large z) up the screen: a view from above.
    """
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return (rx @ ry).astype(np.float32)


def _floor_level(points: np.ndarray, valid: np.ndarray | None) -> float:
    """Floor height (y, metres, down positive): median over frames of the lowest point."""
    pts = points if valid is None else points[valid]
    lowest = np.nanmax(pts[..., 1], axis=-1) if len(pts) else np.array([0.9])
    lowest = lowest[np.isfinite(lowest)]
    return float(np.median(lowest)) if lowest.size else 0.9


def _grid_segments(floor: float, half: float, step: float) -> np.ndarray:
    """(K, 2, 3) floor grid line segments at y = floor, centred under the Hips."""
    ticks = np.arange(-half, half + 1e-6, step)
    segs = [((t, floor, -half), (t, floor, half)) for t in ticks]
    segs += [((-half, floor, t), (half, floor, t)) for t in ticks]
    return np.array(segs, dtype=np.float32)


def _draw_segments(img: np.ndarray, segs: np.ndarray, view: np.ndarray, scale: float,
                   colour, thickness: int) -> None:
    """Orthographic projection of (K, 2, 3) segments onto ``img``, Hips at the panel centre."""
    h, w = img.shape[:2]
    q = segs @ view.T                                           # (K, 2, 3)
    uv = q[..., :2] * scale + np.array([w / 2, h * 0.42])      # y down stays down on screen
    colours = [colour] * len(segs) if isinstance(colour[0], int) else colour
    for (p0, p1), c in zip(uv.astype(np.int32), colours):
        cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), c, thickness,
                 cv2.LINE_AA)


def _draw_landmarks_2d(img: np.ndarray, row: np.ndarray, min_vis: float) -> None:
    """Draw one (33, 10) row's image landmarks on a BGR frame (nothing for an empty row)."""
    if not row.any():
        return
    h, w = img.shape[:2]
    px = (row[:, CH_IMAGE] * np.array([w, h], dtype=np.float32)).round().astype(np.int32)
    ok = row[:, CH_VIS] >= min_vis
    for (a, b), c in zip(BLAZEPOSE_EDGES, _LANDMARK_EDGE_COLOURS):
        if ok[a] and ok[b]:
            cv2.line(img, tuple(map(int, px[a])), tuple(map(int, px[b])), c, 2, cv2.LINE_AA)
    for i in np.flatnonzero(ok):
        cv2.circle(img, tuple(map(int, px[i])), 3, _TEXT, -1, cv2.LINE_AA)
