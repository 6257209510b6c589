"""capture.preview: the side-by-side .mp4 re-opens with the right size, frame count and content."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from capture.preview import PreviewConfig, render_preview
from engine.errors import InputError
from engine.kinematics import forward_kinematics

N = 12


def make_video(path: Path, n: int, size=(160, 90)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), 60 + 10 * i, np.uint8))
    w.release()
    return path


def make_landmarks(n: int) -> np.ndarray:
    """(n, 33, 10) plausible rows: a person in the middle of the image, frame 3 undetected."""
    rng = np.random.default_rng(0)
    lm = np.zeros((n, 33, 10), np.float32)
    lm[:, :, 0:3] = rng.normal(0, 0.3, (n, 33, 3))
    lm[:, :, 3] = lm[:, :, 8] = 1.0
    lm[:, :, 5:7] = rng.uniform(0.3, 0.7, (n, 33, 2))
    lm[1:, :, 4] = lm[1:, :, 9] = 1.0
    lm[3:4] = 0
    return lm


def read_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def skeleton_colour_pixels(img: np.ndarray) -> int:
    """Pixels close to the left-side (blue) or right-side (orange) bone colours."""
    b, g, r = (img[..., c].astype(int) for c in range(3))
    return int(((b > 180) & (r < 90)).sum() + ((r > 200) & (b < 90)).sum())


def test_preview_with_joints(tmp_path):
    video = make_video(tmp_path / "in.mp4", N)
    joints = forward_kinematics(np.tile(np.eye(3, dtype=np.float32), (N, 21, 1, 1)))
    out = tmp_path / "preview.mp4"
    res = render_preview(video, make_landmarks(N), joints, out, config=PreviewConfig(height=180))
    assert res.out_path == out and res.frames == N
    assert (res.width, res.height) == (320 + 180, 180)  # 16:9 video panel + square 3D panel
    frames = read_all(out)
    assert len(frames) == N and frames[0].shape == (180, 500, 3)
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == N and cap.get(cv2.CAP_PROP_FPS) == 25
    cap.release()
    right = [f[:, 320:] for f in frames]
    assert skeleton_colour_pixels(right[0]) > 50            # bones drawn in 3D
    assert skeleton_colour_pixels(frames[0][:, :320]) > 20  # landmarks drawn in 2D
    assert skeleton_colour_pixels(frames[3][:, :320]) == 0  # no person on frame 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "preview.mp4"]


def test_preview_without_joints_shows_world_landmarks(tmp_path):
    video = make_video(tmp_path / "in.mp4", N)
    res = render_preview(video, make_landmarks(N), None, tmp_path / "p.mp4", fps=10,
                         config=PreviewConfig(height=90))
    frames = read_all(res.out_path)
    assert len(frames) == N and res.fps == 10
    assert skeleton_colour_pixels(frames[0][:, 160:]) > 10
    assert skeleton_colour_pixels(frames[3][:, 160:]) == 0  # the undetected frame: no skeleton


def test_video_shorter_than_landmarks(tmp_path):
    video = make_video(tmp_path / "in.mp4", 5)
    res = render_preview(video, make_landmarks(N), None, tmp_path / "p.mp4",
                         config=PreviewConfig(height=90))
    assert res.frames == 5 and len(read_all(res.out_path)) == 5


def test_bad_inputs(tmp_path):
    video = make_video(tmp_path / "in.mp4", 3)
    with pytest.raises(InputError, match=r"\(F, 33, 10\)"):
        render_preview(video, np.zeros((3, 33, 9)), None, tmp_path / "p.mp4")
    with pytest.raises(InputError, match=r"\(3, 21, 3\)"):
        render_preview(video, make_landmarks(3), np.zeros((2, 21, 3)), tmp_path / "p.mp4")
    with pytest.raises(InputError, match=r"\.mp4"):
        render_preview(video, make_landmarks(3), None, tmp_path / "p.avi")
    assert [p.name for p in tmp_path.iterdir()] == ["in.mp4"]
