"""Fixtures of the robustness matrix: tiny weights, bad videos made from real frames, and
Blender (the real ``bpy``) where it is installed. Helpers are in ``robustness_helpers``."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from robustness_helpers import HAS_BPY, VIDEO_SIZE, retime_mp4, tiny_model, write_video


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A tiny random MotionTransformer exported as safetensors (the tests check the plumbing,
    not the motion)."""
    from engine.checkpoint import export_weights

    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    export_weights(tiny_model(), path)
    return path


# ---------------------------------------------------------------------------------------------
# Videos
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sports2d_video() -> Path:
    """The real demo video (BSD-3, two people), downloaded once by ``capture.samples``."""
    from capture.samples import SampleDownloadError, sample_video

    try:
        return sample_video("sports2d")
    except SampleDownloadError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def real_frames(sports2d_video) -> list[np.ndarray]:
    """The first 12 frames of the demo video, BGR uint8 (994 x 1768)."""
    cap = cv2.VideoCapture(str(sports2d_video))
    frames = []
    while len(frames) < 12:
        ok, frame = cap.read()
        assert ok
        frames.append(frame)
    cap.release()
    return frames


@pytest.fixture(scope="session")
def bad_video(tmp_path_factory, real_frames, sports2d_video):
    """``bad_video(kind)`` -> path of a video of that kind (made once per session)."""
    folder = tmp_path_factory.mktemp("videos")
    small = [cv2.resize(f, VIDEO_SIZE, interpolation=cv2.INTER_AREA) for f in real_frames]
    black = np.zeros_like(small[0])
    made: dict[str, Path] = {}

    def portrait(frame: np.ndarray) -> np.ndarray:  # the middle of the picture, upright, 4K
        w = frame.shape[1]
        return cv2.resize(frame[:, w // 2 - 280:w // 2 + 280], (2160, 3840))

    def make(kind: str) -> Path:
        p = folder / kind
        if kind == "missing.mp4":
            return p
        if kind == "folder":
            p.mkdir()
        elif kind == "empty.mp4":
            p.touch()
        elif kind == "notes.mp4":
            p.write_text("a shopping list, not a video\n")
        elif kind == "noise.mp4":
            p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
        elif kind == "header.mp4":  # the container header, no whole frame
            p.write_bytes(sports2d_video.read_bytes()[:50_000])
        elif kind == "midway.mp4":  # the first few frames, then the file ends
            p.write_bytes(sports2d_video.read_bytes()[:320_000])
        elif kind == "no_index.mp4":  # an OpenCV mp4 cut before its index (moov) at the end
            full = write_video(folder / "full.mp4", small[:6])
            p.write_bytes(full.read_bytes()[:len(full.read_bytes()) // 2])
        elif kind == "codec.avi":  # a valid AVI whose codec FFmpeg does not have
            good = write_video(folder / "good.avi", small[:3], fourcc="MJPG")
            p.write_bytes(good.read_bytes().replace(b"MJPG", b"QQQQ"))
        elif kind == "black.mp4":
            write_video(p, [black] * 5)
        elif kind == "reenter.mp4":  # the people walk out (black frames) and come back
            write_video(p, small[:4] + [black] * 4 + small[4:8])
        elif kind == "two_people.mp4":
            write_video(p, small[:4])
        elif kind == "tiny.mp4":
            write_video(p, [cv2.resize(f, (32, 18), interpolation=cv2.INTER_AREA)
                            for f in real_frames[:4]])
        elif kind == "portrait_4k.mp4":
            write_video(p, [portrait(f) for f in real_frames[:3]])
        elif kind == "vfr.mp4":  # 6 frames at 30 fps, then 6 at 10 fps (15360 units / s)
            retime_mp4(write_video(folder / "cfr.mp4", small[:6] + small[:6]), p,
                       [(6, 512), (6, 1536)])
        elif kind == "absurd_fps.mp4":  # a container that claims 2194 fps
            retime_mp4(write_video(folder / "cfr2.mp4", small[:3]), p, [(3, 7)])
        else:
            raise KeyError(kind)
        return p

    def get(kind: str) -> Path:
        if kind not in made:
            made[kind] = make(kind)
        return made[kind]

    return get


# ---------------------------------------------------------------------------------------------
# Blender
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blender():
    """The real ``bpy`` with the add-on registered (skipped where bpy is not installed).
    Leaves the registration alone when another fixture (tests/addon) already made it."""
    if not HAS_BPY:
        pytest.skip("bpy is not installed")
    import bpy

    import blaze2cap_addon

    mine = not hasattr(bpy.types, "B2C_PT_main")
    if mine:
        blaze2cap_addon.register()
    yield bpy
    if mine:
        blaze2cap_addon.unregister()


@pytest.fixture
def scene(blender, tmp_path, monkeypatch):
    """A factory-fresh empty scene; the add-on's user folder (landmark cache) in tmp_path.
    Returns ``snapshot()``: what an Animate run could change."""
    from blaze2cap_addon import preferences

    monkeypatch.setattr(preferences, "user_dir", lambda: tmp_path / "user")
    blender.ops.wm.read_factory_settings(use_empty=True)

    def snapshot() -> dict:
        data, sc = blender.data, blender.context.scene
        return {"objects": sorted(o.name for o in data.objects),
                "actions": sorted(a.name for a in data.actions),
                "armatures": sorted(a.name for a in data.armatures),
                "frames": (sc.frame_start, sc.frame_end, sc.render.fps)}

    return snapshot
