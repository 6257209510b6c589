"""capture.video: one-sentence VideoErrors for every bad input, metadata, frame ranges, sizes."""
from __future__ import annotations

import logging
import math
import struct
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from capture.video import (DEFAULT_FPS, checked_fps, fit_max_side, iter_frames, prefetch,
                           probe_video)
from engine.errors import VideoError


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0,
                fourcc: str = "mp4v") -> Path:
    """BGR frames -> a video file written by OpenCV."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def expect_error(path: Path, *needles: str) -> str:
    with pytest.raises(VideoError) as err:
        probe_video(path)
    msg = str(err.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# --- bad inputs ------------------------------------------------------------------------------
def test_missing_path(tmp_path):
    expect_error(tmp_path / "nope.mp4", "not found", "nope.mp4")


def test_directory(tmp_path):
    expect_error(tmp_path, "is a folder")


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.touch()
    expect_error(p, "empty (0 bytes)")


def test_text_file_named_mp4(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is a shopping list, not a video\n")
    expect_error(p, "text file, not a video")


def test_random_bytes(tmp_path):
    p = tmp_path / "noise.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    expect_error(p, "not a video file")


def test_truncated_to_header_decodes_nothing(tmp_path, sports2d_video):
    p = tmp_path / "cut.mp4"
    p.write_bytes(sports2d_video.read_bytes()[:50_000])  # container header, no whole frame
    expect_error(p, "could be decoded", "truncated or corrupt")


def test_truncated_midway_stops_early_with_warning(tmp_path, sports2d_video, caplog):
    p = tmp_path / "half.mp4"
    data = sports2d_video.read_bytes()
    p.write_bytes(data[: len(data) // 10])
    info = probe_video(p)
    assert info.frame_count == 230  # the container still claims all frames
    with caplog.at_level(logging.WARNING, logger="capture.video"):
        n = sum(1 for _ in iter_frames(info, max_side=64))
    assert 0 < n < 230
    assert "truncated" in caplog.text


def test_unsupported_codec(tmp_path):
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(3)]
    good = write_video(tmp_path / "good.avi", frames, fourcc="MJPG")
    assert probe_video(good).codec == "MJPG"
    bad = tmp_path / "odd_codec.avi"
    bad.write_bytes(good.read_bytes().replace(b"MJPG", b"QQQQ"))  # a codec FFmpeg lacks
    expect_error(bad, "codec 'QQQQ'", "not supported")


def test_frame_range_errors(sports2d_video):
    info = probe_video(sports2d_video)
    with pytest.raises(VideoError, match="past the end"):
        next(iter_frames(info, start=230))
    with pytest.raises(VideoError, match="greater than start"):
        next(iter_frames(info, start=5, end=5))
    with pytest.raises(VideoError, match="non-negative"):
        next(iter_frames(info, start=-1))


# --- metadata and frames ---------------------------------------------------------------------
def test_probe_real_video(sports2d_video):
    info = probe_video(sports2d_video)
    assert (info.width, info.height, info.fps, info.frame_count) == (1768, 994, 30.0, 230)
    assert info.rotation == 0 and info.codec == "VP90" and not info.fps_is_default
    assert info.aspect == pytest.approx(1768 / 994)


def test_frame_range_matches_opencv(sports2d_video):
    frames = list(iter_frames(sports2d_video, start=5, end=8))
    cap = cv2.VideoCapture(str(sports2d_video))
    ref = [cap.read()[1] for _ in range(8)][5:]
    cap.release()
    assert len(frames) == 3
    for f, r in zip(frames, ref):
        assert f.dtype == np.uint8 and f.shape == (994, 1768, 3)
        np.testing.assert_array_equal(f, r[:, :, ::-1])  # RGB


@pytest.mark.parametrize("reported", [0.0, math.nan, -5.0, 0.5, 5000.0])
def test_missing_or_absurd_fps_falls_back(reported):
    fps, why = checked_fps(reported)
    assert fps == DEFAULT_FPS and why and f"{DEFAULT_FPS:g} fps is assumed" in why


def test_plausible_fps_is_kept():
    assert checked_fps(29.97) == (29.97, None)


def test_portrait_4k_is_downscaled_keeping_aspect(tmp_path):
    frame = np.zeros((3840, 2160, 3), np.uint8)
    frame[:1920] = 255  # top half white
    p = write_video(tmp_path / "portrait4k.mp4", [frame] * 2)
    info = probe_video(p)
    assert (info.width, info.height) == (2160, 3840)
    out = list(iter_frames(info, max_side=1280))
    assert len(out) == 2 and out[0].shape == (1280, 720, 3)
    assert out[0][100, 360].mean() > 200 and out[0][1200, 360].mean() < 50  # not flipped
    assert fit_max_side(2160, 3840, 1280) == (720, 1280)


def test_tiny_video_is_not_upscaled(tmp_path):
    p = write_video(tmp_path / "tiny.mp4", [np.full((16, 16, 3), 128, np.uint8)] * 3)
    out = list(iter_frames(p, max_side=1280))
    assert len(out) == 3 and out[0].shape == (16, 16, 3)


def test_rotation_metadata_is_applied(tmp_path):
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:10, :20] = 255  # a white block at the top left
    p = write_video(tmp_path / "flat.mp4", [frame] * 3)
    data = bytearray(p.read_bytes())
    tkhd = data.find(b"tkhd") - 4
    assert data[tkhd + 8] == 0  # version 0 track header: matrix at byte 48
    data[tkhd + 48:tkhd + 84] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    rotated = tmp_path / "phone.mp4"
    rotated.write_bytes(bytes(data))
    info = probe_video(rotated)
    assert info.rotation == 90 and (info.width, info.height) == (48, 64)
    first = next(iter_frames(info))
    assert first.shape == (64, 48, 3)
    ys, xs = np.nonzero(first[:, :, 0] > 128)
    assert xs.mean() > 24 and ys.mean() < 32  # turned 90 degrees clockwise: now top right


# --- prefetch (decoding ahead on a second thread) --------------------------------------------
def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "blaze2cap-prefetch"]


def test_prefetch_keeps_order_and_raises_producer_errors():
    assert list(prefetch(iter(range(200)), depth=3)) == list(range(200))

    def failing():
        yield 1
        yield 2
        raise VideoError("broken at frame 2")

    got = []
    with pytest.raises(VideoError, match="broken at frame 2"):
        for x in prefetch(failing()):
            got.append(x)
    assert got == [1, 2] and not _prefetch_threads()


def test_prefetch_close_stops_thread_and_source():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    it = prefetch(endless(), depth=2)
    assert [next(it), next(it)] == [0, 1]
    it.close()
    assert closed.is_set() and not _prefetch_threads()
