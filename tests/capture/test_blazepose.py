"""capture.blazepose: the (F, 33, 10) layout of the shared data, streaming, cancel, no person."""
from __future__ import annotations

import os
import stat
import threading
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from capture.blazepose import (ExtractionCancelled, NoPersonError, NpyRowWriter, PoseConfig,
                               extract_landmarks, iter_landmarks, landmarks_to_row, read_sidecar)
from capture.video import iter_frames
from engine.errors import InputError
from engine.skeleton import BLAZEPOSE_INDEX as BI

N_FRAMES = 30


@pytest.fixture(scope="module")
def extracted(sports2d_video, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm") / "demo.npy"
    calls: list[tuple[int, int | None]] = []
    result = extract_landmarks(sports2d_video, out, end=N_FRAMES,
                               progress=lambda d, t: calls.append((d, t)))
    return result, np.load(out), calls


def blank_video(path: Path, n: int = 5) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (96, 64))
    for _ in range(n):
        w.write(np.zeros((64, 96, 3), np.uint8))
    w.release()
    return path


def layout_facts(lm: np.ndarray) -> dict[str, bool]:
    """Conventions of the (F, 33, 10) format, checked the same way on ours and the shared data."""
    det = lm.any(axis=(1, 2))
    d = lm[det]
    hip_mid = 0.5 * (d[:, BI["left_hip"], 0:3] + d[:, BI["right_hip"], 0:3])
    prev = np.concatenate([[False], det[:-1]])

    def y(ch, a, b):
        return np.median(d[:, BI[a], ch] - d[:, BI[b], ch])

    return {
        "undetected rows all zero": bool((lm[~det] == 0).all()),
        "world origin at the hip midpoint": bool(
            np.median(np.linalg.norm(hip_mid, axis=-1)) < 0.01),
        "world y down (ankles below shoulders)": bool(y(1, "left_ankle", "left_shoulder") > 0.5),
        "image y down": bool(y(6, "left_ankle", "left_shoulder") > 0.05),
        "world metres (shoulder width 0.2-0.6)": bool(0.2 < np.median(np.linalg.norm(
            d[:, BI["left_shoulder"], 0:3] - d[:, BI["right_shoulder"], 0:3], axis=-1)) < 0.6),
        "image normalised": bool(np.median(d[:, :, 5:7]) > 0 and np.median(d[:, :, 5:7]) < 1),
        "ch3 == ch8": bool(np.array_equal(lm[..., 3], lm[..., 8])),
        "ch9 == ch4": bool(np.array_equal(lm[..., 9], lm[..., 4])),
        "anchor = previous frame detected": bool(
            np.array_equal(lm[det, :, 4], np.repeat(prev[det, None], 33, 1).astype(np.float32))),
        "visibility in 0..1": bool(((d[..., 8] >= 0) & (d[..., 8] <= 1)).all()),
    }


def test_extract_first_frames(extracted):
    result, lm, calls = extracted
    assert lm.shape == (N_FRAMES, 33, 10) and lm.dtype == np.float32
    detected = int(lm.any(axis=(1, 2)).sum())
    assert result.frames == N_FRAMES and result.detected == detected > N_FRAMES // 2
    assert (result.width, result.height, result.fps) == (1768, 994, 30.0)
    assert result.coverage == pytest.approx(detected / N_FRAMES)
    assert calls[0] == (1, N_FRAMES) and calls[-1] == (N_FRAMES, N_FRAMES)
    assert len(calls) == N_FRAMES
    side = read_sidecar(result.out_path)
    assert side["frames"] == N_FRAMES and side["detected"] == detected
    assert side["source_video"] == "demo.mp4" and side["aspect"] == pytest.approx(1768 / 994)
    assert (side["fps"], side["width"], side["height"]) == (30.0, 1768, 994)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(result.out_path.stat().st_mode) == 0o666 & ~umask  # not a 0600 temp
    assert sorted(p.name for p in result.out_path.parent.iterdir()) == ["demo.npy", "demo.npy.json"]


def test_layout_matches_shared_data(extracted, totalcapture_dir):
    _, ours, _ = extracted
    shared = np.load(totalcapture_dir / "blazepose" / "S1_freestyle1_cam4.npy", mmap_mode="r")
    ref = layout_facts(np.asarray(shared[:300]))
    assert all(ref.values()), ref  # the checks themselves hold on the shared data
    assert layout_facts(ours) == ref


def test_person_leaves_and_reenters(sports2d_video):
    real = list(iter_frames(sports2d_video, 10, 26, max_side=640))
    frames = real[:8] + [np.zeros_like(real[0])] * 3 + real[8:]
    rows = np.stack(list(iter_landmarks(frames)))
    det = rows.any(axis=(1, 2))
    assert det[:8].sum() >= 4 and not det[8:11].any() and det[11:].sum() >= 4
    assert (rows[8:11] == 0).all()  # the person has left: all-zero rows
    prev = np.concatenate([[False], det[:-1]])
    np.testing.assert_array_equal(rows[det, 0, 4], prev[det])  # anchor = previous detected
    back = 11 + int(np.argmax(det[11:]))
    assert rows[back, :, 4].max() == 0 and rows[back, :, 9].max() == 0  # track restart
    assert (rows[back + 1:][det[back + 1:], :, 4] == 1).all()


def test_blank_video_has_no_person_and_writes_nothing(tmp_path):
    video = blank_video(tmp_path / "black.mp4")
    with pytest.raises(NoPersonError, match="no person was detected in any of the 5 frames"):
        extract_landmarks(video, tmp_path / "out.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["black.mp4"]


def test_cancel_leaves_no_file(sports2d_video, tmp_path):
    cancel = threading.Event()

    def progress(done, total):
        if done == 3:
            cancel.set()

    with pytest.raises(ExtractionCancelled, match="cancelled after 3 frames"):
        extract_landmarks(sports2d_video, tmp_path / "x.npy", progress=progress, cancel=cancel)
    assert list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name == "blaze2cap-prefetch"]


def test_writer_streams_rows_with_bounded_memory(tmp_path):
    n = 5000  # 6.6 MB of rows
    rng = np.random.default_rng(0)
    block = rng.standard_normal((50, 33, 10)).astype(np.float32)
    tracemalloc.start()
    with NpyRowWriter(tmp_path / "big.npy") as w:
        for i in range(n):
            w.write(block[i % 50] + i)
        w.commit()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 200_000  # bytes: a few rows, never the whole array
    arr = np.load(tmp_path / "big.npy")
    assert arr.shape == (n, 33, 10) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr[1234], block[1234 % 50] + 1234)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npy"]


def test_writer_abort_and_shape_check(tmp_path):
    with NpyRowWriter(tmp_path / "a.npy") as w:
        w.write(np.zeros((33, 10)))
        with pytest.raises(ValueError, match="shape"):
            w.write(np.zeros((33, 9)))
    assert list(tmp_path.iterdir()) == []  # left without commit: nothing remains


def test_landmarks_to_row_channels():
    def pt(i, s):
        return SimpleNamespace(x=s * i, y=s * i + 1, z=s * i + 2, visibility=0.5)

    world = [pt(i, 0.01) for i in range(33)]
    image = [pt(i, 0.001) for i in range(33)]
    row = landmarks_to_row(world, image, anchor=True)
    assert row.shape == (33, 10) and row.dtype == np.float32
    np.testing.assert_allclose(row[7], [0.07, 1.07, 2.07, 0.5, 1, 0.007, 1.007, 2.007, 0.5, 1],
                               rtol=1e-6)
    assert (landmarks_to_row(world, image, anchor=False)[:, [4, 9]] == 0).all()


def test_pose_config_is_checked():
    with pytest.raises(InputError):
        PoseConfig(max_side=0)
    with pytest.raises(InputError):
        PoseConfig(min_detection_confidence=2.0)
