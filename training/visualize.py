"""``blaze2cap visualize``: an .mp4 of the predicted skeleton beside the ground truth.

    blaze2cap visualize --data DS --entry NAME_OR_INDEX --out clip.mp4 [--frames A:B]
    blaze2cap visualize --landmarks clip.npy --out clip.mp4      (no ground truth)

Each frame shows two panels, each with a front view (camera x right, y down) and a side view
(camera z to the right, y down), orthographic, relative to the Hips: the model's skeleton (on
the default body, as a user gets it) and the ground truth (forward kinematics with the entry's
own offsets) or, without ground truth, BlazePose's own world landmarks. The header shows the
frame number and the frame's MPJPE (``engine.metrics`` protocol). Frames without a
detection are marked; their pose is the bridged one (``engine.inference``).
Drawn with OpenCV (fast), written atomically.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from engine import metrics as mt
from engine.atomic import AtomicFile
from engine.data import load_dataset_map, load_sequence
from engine.errors import InputError
from engine.features import DEFAULT_FOCAL
from engine.inference import Predictor
from engine.kinematics import forward_kinematics, slots_to_rotations
from engine.skeleton import BLAZEPOSE_INDEX, CH_WORLD, JOINT_NAMES, PARENTS
from training.evaluate import entry_name
from training.predict import load_landmarks, parse_aspect

VIEW_W, VIEW_H = 320, 420          # pixels per view; a panel is two views side by side
HEADER = 36
PX_PER_M = 170.0
HIPS_Y = 0.42                      # the Hips joint at this fraction of the view height
LEFT, RIGHT, CENTRE = (230, 120, 40), (40, 60, 220), (170, 170, 170)  # BGR


def _side_colour(name: str):
    n = name.lower()
    return LEFT if n.startswith("left") else RIGHT if n.startswith("right") else CENTRE


SKELETON_BONES = tuple((PARENTS[j], j, _side_colour(JOINT_NAMES[j])) for j in range(1, len(PARENTS)))
_BP = BLAZEPOSE_INDEX
BLAZEPOSE_BONES = tuple(
    (_BP[a], _BP[b], _side_colour(b if b.startswith(("left", "right")) else a))
    for a, b in [("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
                 ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
                 ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
                 ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
                 ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
                 ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
                 ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"),
                 ("right_ankle", "right_heel"), ("right_heel", "right_foot_index"),
                 ("nose", "left_ear"), ("nose", "right_ear")])


def draw_view(img: np.ndarray, pts: np.ndarray, bones, axes: tuple[int, int]) -> None:
    """Draw points (J, 3) metres relative to the root, projected on ``axes``, into img."""
    uv = pts[:, list(axes)] * PX_PER_M + np.array([VIEW_W / 2, VIEW_H * HIPS_Y])
    uv = np.round(uv).astype(np.int32)
    for a, b, colour in bones:
        cv2.line(img, tuple(map(int, uv[a])), tuple(map(int, uv[b])), colour, 3, cv2.LINE_AA)
    used = sorted({i for a, b, _ in bones for i in (a, b)})
    for i in used:
        cv2.circle(img, tuple(map(int, uv[i])), 3, (250, 250, 250), -1, cv2.LINE_AA)


def draw_panel(pts: np.ndarray, bones, title: str) -> np.ndarray:
    """(VIEW_H, 2 VIEW_W, 3) image: front and side views of one skeleton."""
    panel = np.full((VIEW_H, 2 * VIEW_W, 3), 28, np.uint8)
    draw_view(panel[:, :VIEW_W], pts, bones, (0, 1))
    draw_view(panel[:, VIEW_W:], pts, bones, (2, 1))
    cv2.line(panel, (VIEW_W, 0), (VIEW_W, VIEW_H), (70, 70, 70), 1)
    cv2.putText(panel, title, (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (230, 230, 230), 1, cv2.LINE_AA)
    for x, label in ((10, "front"), (VIEW_W + 10, "side")):
        cv2.putText(panel, label, (x, VIEW_H - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (150, 150, 150), 1)
    return panel


def render_frame(index: int, pred: np.ndarray, other: np.ndarray, other_bones, other_title: str,
                 valid: bool, error_mm: float | None) -> np.ndarray:
    """One video frame (HEADER + VIEW_H, 4 VIEW_W, 3) uint8 BGR."""
    frame = np.zeros((HEADER + VIEW_H, 4 * VIEW_W, 3), np.uint8)
    frame[HEADER:, :2 * VIEW_W] = draw_panel(pred, SKELETON_BONES, "prediction")
    frame[HEADER:, 2 * VIEW_W:] = draw_panel(other, other_bones, other_title)
    text = f"frame {index}"
    if error_mm is not None:
        text += f"   MPJPE {error_mm:6.1f} mm"
    if not valid:
        text += "   no detection (bridged)"
    cv2.putText(frame, text, (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    return frame


def write_video(path: Path, frames, fps: float, size: tuple[int, int]) -> int:
    """Encode frames (iterable of BGR uint8 images of ``size`` = (w, h)) to an .mp4,
    atomically. Returns the number of frames written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = AtomicFile(path, open_file=False, suffix=".mp4")  # OpenCV picks the format by suffix
    try:
        writer = cv2.VideoWriter(str(out.tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
        if not writer.isOpened():
            raise InputError(f"cannot write an mp4 video at {path}")
        n = 0
        try:
            for img in frames:
                writer.write(img)
                n += 1
        finally:
            writer.release()
        out.commit()
    except BaseException:
        out.abort()
        raise
    return n


def parse_frames(text: str | None, n: int) -> range:
    """'A:B' (either side optional, Python slice semantics) -> frame range within n frames."""
    if text is None:
        return range(n)
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        a = int(parts[0]) if parts[0] else None
        b = int(parts[1]) if parts[1] else None
    except ValueError:
        raise InputError(f"--frames must look like A:B, got {text!r}") from None
    r = range(n)[slice(a, b)]
    if len(r) == 0:
        raise InputError(f"--frames {text} selects no frames of {n}")
    return r


def find_entry(entries: list[dict], key: str) -> dict:
    """An entry by index into the map or by name (the landmark file's stem)."""
    if key.isdigit():
        i = int(key)
        if i >= len(entries):
            raise InputError(f"entry index {i} is out of range (the map has {len(entries)})")
        return entries[i]
    for e in entries:
        if entry_name(e) == key:
            return e
    names = ", ".join(entry_name(e) for e in entries[:5])
    raise InputError(f"no entry named {key!r} (e.g. {names})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=None, metavar="CKPT",
                        help=".pt checkpoint or .safetensors weights (default: the shipped weights)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, metavar="DS", help="a prepared dataset (with --entry)")
    src.add_argument("--landmarks", type=Path, metavar="F.npy",
                     help="(F, 33, 10) landmarks without ground truth")
    parser.add_argument("--entry", default=None, metavar="NAME_OR_INDEX",
                        help="entry of the dataset map: its index or its landmark file's stem")
    parser.add_argument("--out", type=Path, required=True, metavar="F.mp4")
    parser.add_argument("--frames", default=None, metavar="A:B", help="frame range (default: all)")
    parser.add_argument("--aspect", type=parse_aspect, default=16 / 9, metavar="W/H",
                        help="with --landmarks: video width / height")
    parser.add_argument("--fps", type=float, default=30.0, help="with --landmarks: frame rate")
    parser.add_argument("--backend", choices=("auto", "torch", "numpy"), default="auto")


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.out.suffix.lower() != ".mp4":
        raise InputError(f"--out {args.out} must end in .mp4")
    if args.data is not None:
        if args.entry is None:
            raise InputError("--data needs --entry NAME_OR_INDEX")
        entry = find_entry(load_dataset_map(args.data), args.entry)
        seq = load_sequence(args.data, entry)
        lm, aspect, fps = seq["landmarks"], seq["aspect"], seq["fps"]
        focal = float(entry.get("focal") or DEFAULT_FOCAL)
        _, gt_rots = slots_to_rotations(seq["target"].astype(np.float64))
        other = forward_kinematics(gt_rots, seq["offsets"].astype(np.float64))
        other_bones, other_title = SKELETON_BONES, f"ground truth, {entry_name(entry)}"[:44]
    else:
        lm, aspect, fps, focal = load_landmarks(args.landmarks), args.aspect, args.fps, DEFAULT_FOCAL
        world = lm[:, :, CH_WORLD].astype(np.float64)
        other = world - 0.5 * (world[:, _BP["left_hip"]] + world[:, _BP["right_hip"]])[:, None]
        other_bones, other_title = BLAZEPOSE_BONES, "BlazePose world landmarks (input)"
        seq = None
    frames = parse_frames(args.frames, lm.shape[0])
    predictor = Predictor.from_checkpoint(args.checkpoint, backend=args.backend)
    pred = predictor.predict(lm, aspect=aspect, fps=fps, focal=focal)  # whole clip: causal context
    joints = pred.joints.astype(np.float64)
    errors = None
    if seq is not None:
        errors = mt.mpjpe(mt.center_eval_joints(joints), mt.center_eval_joints(other))
        aligned = (seq["flags"] & 1) == 1
        errors = np.where(aligned, errors, np.nan)
    size = (4 * VIEW_W, HEADER + VIEW_H)
    images = (render_frame(i, joints[i], other[i], other_bones, other_title, bool(pred.valid[i]),
                           None if errors is None or np.isnan(errors[i]) else float(errors[i]))
              for i in frames)
    n = write_video(args.out, images, fps, size)
    print(f"wrote {args.out}: {n} frames at {fps:g} fps ({time.perf_counter() - t0:.1f} s)")
    return 0
