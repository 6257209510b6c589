"""Helpers of the robustness matrix: the command line in-process, tiny weights, videos made
from real frames (including a variable frame rate MP4), Blender's Animate operator."""
from __future__ import annotations

import importlib.util
import re
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from training.cli import main

#: tqdm progress bars of the commands (not part of the one-line error)
_PROGRESS = re.compile(r"^\s*(BlazePose|animate|train):\s")

VIDEO_SIZE = (640, 360)  # the real frames are downscaled to this for speed
HAS_BPY = importlib.util.find_spec("bpy") is not None


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------
def run_cli(capsys, *argv) -> tuple[int, str, list[str]]:
    """``blaze2cap ARGV`` in-process -> (exit code, stdout, stderr lines without progress bars).
    Fails the test on a traceback."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.replace("\r", "\n").splitlines()
             if ln.strip() and not _PROGRESS.match(ln)]
    return code, out, lines


def cli_error(capsys, *argv) -> str:
    """Run a command that must fail: exit code 2 and exactly one line on stderr; returns it."""
    code, out, lines = run_cli(capsys, *argv)
    assert code == 2, (code, out, lines)
    assert len(lines) == 1, lines
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Weights and videos
# ---------------------------------------------------------------------------------------------
def tiny_model(seed: int = 0):
    from engine.model import ModelConfig, MotionTransformer

    torch.manual_seed(seed)
    return MotionTransformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64,
                                         window=16, dropout=0.0)).eval()


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0,
                fourcc: str = "mp4v") -> Path:
    """BGR frames -> a video file written by OpenCV's FFmpeg."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


_MP4_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts")


def _rewrite_boxes(data: bytes, edit) -> bytes:
    """MP4 boxes with ``edit(type, body) -> body`` applied inside moov; parent sizes fixed."""
    out, off = bytearray(), 0
    while off < len(data):
        size, kind = struct.unpack(">I4s", data[off:off + 8])
        body = data[off + 8:off + size]
        body = _rewrite_boxes(body, edit) if kind in _MP4_CONTAINERS else edit(kind, body)
        out += struct.pack(">I4s", 8 + len(body), kind) + body
        off += size
    return bytes(out)


def retime_mp4(src: Path, dst: Path, deltas: list[tuple[int, int]]) -> Path:
    """Copy of an OpenCV-written MP4 (index after the media data) whose frame durations are
    ``deltas`` = [(frames, duration in the track's time units), ...]: a variable (or any
    constant) frame rate, as phones record. Frame data are untouched."""
    media = sum(n * d for n, d in deltas)
    scales = {}

    def u32(body: bytes, at: int, value: int) -> bytes:
        return body[:at] + struct.pack(">I", value) + body[at + 4:]

    def media_boxes(kind: bytes, body: bytes) -> bytes:
        if kind == b"mvhd":
            scales["movie"] = struct.unpack(">I", body[12:16])[0]
        elif kind == b"mdhd":
            scales["track"] = struct.unpack(">I", body[12:16])[0]
            return u32(body, 16, media)
        elif kind == b"stts":
            return struct.pack(">II", 0, len(deltas)) + b"".join(
                struct.pack(">II", n, d) for n, d in deltas)
        return body

    def movie_boxes(kind: bytes, body: bytes) -> bytes:
        movie = round(media / scales["track"] * scales["movie"])
        at = {b"mvhd": 16, b"tkhd": 20, b"elst": 8}.get(kind)
        return body if at is None else u32(body, at, movie)

    data = _rewrite_boxes(_rewrite_boxes(src.read_bytes(), media_boxes), movie_boxes)
    dst.write_bytes(data)
    return dst


def plausible_landmarks(frames: int, rng: np.random.Generator | int = 0) -> np.ndarray:
    """(frames, 33, 10) float32 landmarks every frame of which is a valid detection (random
    world points, image points around the centre with the torso upright, visibility 0.9, one
    track from frame 0)."""
    from engine.skeleton import BLAZEPOSE_INDEX

    rng = np.random.default_rng(rng)
    lm = np.zeros((frames, 33, 10), dtype=np.float32)
    lm[:, :, 0:3] = rng.normal(scale=0.3, size=(frames, 33, 3))
    lm[:, :, 5:7] = 0.5 + rng.normal(scale=0.05, size=(frames, 33, 2))
    for joint, y in (("left_shoulder", 0.3), ("right_shoulder", 0.3), ("left_hip", 0.6),
                     ("right_hip", 0.6)):
        lm[:, BLAZEPOSE_INDEX[joint], 6] = y
    lm[:, :, 3] = lm[:, :, 8] = 0.9
    lm[1:, :, 4] = lm[1:, :, 9] = 1
    return lm


def tiny_dataset(root: Path, frames: int = 24, seed: int = 0) -> Path:
    """A prepared dataset folder: train entry ``src/a.npy`` / ``tgt/a.npy`` and test entry
    ``src/b.npy`` / ``tgt/b.npy`` of plausible landmarks (``engine.data`` layout)."""
    from engine import data as D
    from engine.kinematics import rotations_to_slots
    from engine.rotations import axis_angle_to_matrix

    rng = np.random.default_rng(seed)
    entries = []
    for name, split in (("a", "train"), ("b", "test")):
        lm = plausible_landmarks(frames, rng)
        rots = axis_angle_to_matrix(rng.normal(scale=0.4, size=(frames, 21, 3)))
        target = rotations_to_slots(rots, rng.normal(scale=0.1, size=(frames, 3)) + [0, 0, 4])
        paths = {"source": f"src/{name}.npy", "target": f"tgt/{name}.npy"}
        D.save_npy_atomic(root / paths["source"], lm)
        D.save_npy_atomic(root / paths["target"], target.astype(np.float32))
        entries.append({**paths, "subject": "S1", "split_train": split == "train",
                        "split_test": split == "test", "aspect": 16 / 9, "fps": 60.0})
    D.write_json_atomic(root / D.MAP_NAME, entries)
    return root


def train_args(data: Path, run: Path) -> list:
    """``blaze2cap train`` on :func:`tiny_dataset` with the tiny recipe, in seconds."""
    return ["train", "--data", data, "--out", run, "--config", "tiny", "--device", "cpu",
            "--no-amp", "--set", "train.window=16", "--set", "eval_every=1"]


class FilePayload:
    """Unpickling this creates ``path``: what a hostile checkpoint would do."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def hostile_checkpoint(path: Path, marker: Path) -> Path:
    """A .pt that looks like a Blaze2Cap checkpoint and creates ``marker`` when unpickled."""
    torch.save({"format": "blaze2cap-checkpoint", "format_version": 1,
                "model": FilePayload(marker), "model_config": {}}, path)
    return path


# ---------------------------------------------------------------------------------------------
# Blender
# ---------------------------------------------------------------------------------------------
def blender_error(bpy, video: Path, checkpoint: Path, **props) -> str:
    """Run Animate (EXEC_DEFAULT) on ``video``; it must fail: returns the reported sentence."""
    with pytest.raises(RuntimeError) as err:
        bpy.ops.b2c.animate_from_video('EXEC_DEFAULT', video=str(video),
                                       checkpoint=str(checkpoint), **props)
    message = str(err.value)
    assert message.startswith("Error: ") and message.count("\n") <= 1, message
    return message.removeprefix("Error: ").strip()
