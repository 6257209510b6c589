"""Bad videos through ``blaze2cap extract``, ``blaze2cap animate`` and Blender's Animate button:
one sentence (exit 2, scene unchanged) or a correct result. Rows ``video-*`` of the table."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from engine.features import frame_validity
from robustness_cases import CASES
from robustness_helpers import (HAS_BPY, VIDEO_SIZE, blender_error, cli_error, hostile_checkpoint,
                                run_cli)

# case key -> the video made by the ``bad_video`` fixture, and the first frame asked for
ERRORS = {
    "video-missing": ("missing.mp4", 0),
    "video-folder": ("folder", 0),
    "video-empty": ("empty.mp4", 0),
    "video-text": ("notes.mp4", 0),
    "video-noise": ("noise.mp4", 0),
    "video-header": ("header.mp4", 0),
    "video-no-index": ("no_index.mp4", 0),
    "video-codec": ("codec.avi", 0),
    "video-no-person": ("black.mp4", 0),
    "video-tiny": ("tiny.mp4", 0),
    "video-range": ("two_people.mp4", 500),
}


@pytest.mark.parametrize("key", ERRORS)
def test_bad_video_gives_one_sentence(key, bad_video, tiny_weights, tmp_path, capsys, request):
    kind, start = ERRORS[key]
    case, video = CASES[key], bad_video(kind)
    out = tmp_path / "out"
    out.mkdir()
    paths = {"video": video, "name": video.name}
    assert cli_error(capsys, "extract", video, "--out", out / "lm.npy", "--start", start) == \
        case.cli_line("extract", **paths)
    assert list(out.iterdir()) == []  # nothing written, not even a temporary file
    if HAS_BPY:  # the same sentence from `blaze2cap animate` and the Animate button
        assert cli_error(capsys, "animate", video, "--checkpoint", tiny_weights,
                         "--bvh", out / "x.bvh", "--start", start) == \
            f"blaze2cap animate: error: {case.blender_message(**paths)}"
        assert list(out.iterdir()) == []
        bpy = request.getfixturevalue("blender")
        snapshot = request.getfixturevalue("scene")
        before = snapshot()
        assert blender_error(bpy, video, tiny_weights, frame_start=start) == \
            case.blender_message(**paths)
        assert snapshot() == before


def test_missing_pose_model_gives_one_sentence(bad_video, tiny_weights, tmp_path, capsys,
                                               monkeypatch, request):
    """No download is attempted: mediapipe is never started without the pinned model."""
    from capture import models

    case, video = CASES["video-model-missing"], bad_video("two_people.mp4")
    folder = tmp_path / "modules"
    folder.mkdir()
    monkeypatch.setattr(models, "model_dir", lambda: folder)
    out = tmp_path / "out"
    out.mkdir()
    assert cli_error(capsys, "extract", video, "--out", out / "lm.npy") == \
        case.cli_line("extract")
    (folder / "pose_landmark_heavy.tflite").write_bytes(b"not the model")
    assert "checksum differs" in cli_error(capsys, "extract", video, "--out", out / "lm.npy")
    (folder / "pose_landmark_heavy.tflite").unlink()
    assert list(out.iterdir()) == []
    if HAS_BPY:
        assert cli_error(capsys, "animate", video, "--checkpoint", tiny_weights,
                         "--bvh", out / "x.bvh") == \
            f"blaze2cap animate: error: {case.blender_message()}"
        assert list(out.iterdir()) == []
        bpy = request.getfixturevalue("blender")
        snapshot = request.getfixturevalue("scene")
        before = snapshot()
        assert blender_error(bpy, video, tiny_weights) == case.blender_message()
        assert snapshot() == before


def test_truncated_midway_gives_the_decodable_frames(bad_video, tmp_path, capsys, caplog):
    assert CASES["video-midway"].code == 0
    video = bad_video("midway.mp4")
    with caplog.at_level(logging.WARNING):
        code, out, _ = run_cli(capsys, "extract", video, "--out", tmp_path / "lm.npy")
    assert code == 0
    lm = np.load(tmp_path / "lm.npy")
    assert lm.shape == (5, 33, 10) and np.isfinite(lm).all()
    assert f"{video.name} ended after 5 frames although it reports 230: the file may be " \
           "truncated" in caplog.text
    assert "5 frames" in out


def test_person_leaves_and_reenters(bad_video, tiny_weights, tmp_path, capsys):
    assert CASES["video-reenter"].code == 0
    # the full model: the heavy one misses the people in the first frames of these 640 x 360
    # clips (over the whole Sports2D video it finds more: 225 of 230 frames against 222);
    # which model finds whom is not what these tests are about
    code, out, _ = run_cli(capsys, "extract", bad_video("reenter.mp4"), "--out",
                           tmp_path / "lm.npy", "--model", "full")
    assert code == 0
    lm = np.load(tmp_path / "lm.npy")
    detected = lm.any(axis=(1, 2))
    assert lm.shape == (12, 33, 10) and detected[:4].all() and not detected[4:8].any()
    back = int(np.argmax(detected[8:])) + 8  # first frame with the person again
    assert detected[8:].any() and lm[back, 0, 4] == 0 and lm[back - 1].sum() == 0  # restart
    assert f"12 frames, {int(detected.sum())} with a person" in out
    # ... and the engine bridges the gap and reports it
    code, out, _ = run_cli(capsys, "predict", tmp_path / "lm.npy", "--out",
                           tmp_path / "p.npz", "--checkpoint", tiny_weights)
    assert code == 0 and "1 gap(s) bridged" in out
    with np.load(tmp_path / "p.npz") as z:
        assert z["valid"].tolist() == detected.tolist() and np.isfinite(z["joints"]).all()
        assert int(z["coverage_interpolated_frames"]) == back - 4  # 0.5 s at 30 fps: slerp


def test_two_people_give_one_pose_per_frame(bad_video, tmp_path, capsys):
    assert CASES["video-two-people"].code == 0
    code, out, _ = run_cli(capsys, "extract", bad_video("two_people.mp4"), "--out",
                           tmp_path / "lm.npy", "--model", "full")  # see the test above
    lm = np.load(tmp_path / "lm.npy")
    assert code == 0 and lm.shape == (4, 33, 10) and lm.any(axis=(1, 2)).all()
    assert (lm[1:, 0, 4] == 1).all()  # one track, never re-detected (which could switch)
    assert frame_validity(lm, VIDEO_SIZE[0] / VIDEO_SIZE[1]).all()


def test_4k_portrait_is_downscaled_with_its_aspect(bad_video, tmp_path, capsys, monkeypatch):
    assert CASES["video-portrait-4k"].code == 0
    from capture import blazepose

    seen = []
    real = blazepose.PoseTracker.process

    def spy(self, rgb):
        seen.append(rgb.shape)
        return real(self, rgb)

    monkeypatch.setattr(blazepose.PoseTracker, "process", spy)
    code, _, _ = run_cli(capsys, "extract", bad_video("portrait_4k.mp4"), "--out",
                         tmp_path / "lm.npy")
    side = json.loads((tmp_path / "lm.npy.json").read_text())
    assert code == 0 and seen == [(1280, 720, 3)] * 3
    assert (side["width"], side["height"]) == (2160, 3840)
    assert side["aspect"] == pytest.approx(0.5625) and side["detected"] >= 1


def test_variable_frame_rate_uses_the_average_and_warns(bad_video, tmp_path, capsys, caplog):
    assert CASES["video-vfr"].code == 0
    video = bad_video("vfr.mp4")
    with caplog.at_level(logging.WARNING):
        code, out, _ = run_cli(capsys, "extract", video, "--out", tmp_path / "lm.npy")
    side = json.loads((tmp_path / "lm.npy.json").read_text())
    assert code == 0 and np.load(tmp_path / "lm.npy").shape[0] == 12
    assert side["fps"] == 15.0 and side["fps_is_default"] is False and "at 15 fps" in out
    assert f"{video.name} has a variable frame rate (frame 2 is at 0.067 s, not 0.133 s): " \
           "frames are used in order at its average 15 fps, so the timing of the motion is " \
           "approximate" in caplog.text


def test_absurd_frame_rate_falls_back_to_30(bad_video, tmp_path, capsys, caplog):
    assert CASES["video-fps"].code == 0
    video = bad_video("absurd_fps.mp4")
    with caplog.at_level(logging.WARNING):
        code, out, _ = run_cli(capsys, "extract", video, "--out", tmp_path / "lm.npy",
                               "--model", "full")  # the small first frames: see above
    side = json.loads((tmp_path / "lm.npy.json").read_text())
    assert code == 0 and side["fps"] == 30.0 and side["fps_is_default"] is True
    assert side["fps_reported"] == pytest.approx(2194.29, abs=0.01)
    assert f"{video.name}: the video reports an implausible 2194.29 fps, so 30 fps is " \
           "assumed" in caplog.text
    assert "variable frame rate" not in caplog.text  # no second warning for the same cause


# ---------------------------------------------------------------------------------------------
# Blender
# ---------------------------------------------------------------------------------------------
def test_blender_animates_a_video_with_gaps(blender, scene, bad_video, tiny_weights, capfd):
    case = CASES["video-reenter"]
    assert "a person in N" in case.blender
    assert blender.ops.b2c.animate_from_video(
        'EXEC_DEFAULT', video=str(bad_video("reenter.mp4")),
        checkpoint=str(tiny_weights)) == {'FINISHED'}
    obj = blender.data.objects["reenter"]
    sc = blender.context.scene
    assert (sc.frame_start, sc.frame_end) == (1, 12)
    assert obj.animation_data.action.frame_range[:] == pytest.approx((1.0, 12.0))
    report = capfd.readouterr()
    found = [ln for ln in (report.out + report.err).splitlines()
             if "Blaze2Cap: animated reenter (12 frames, a person in " in ln]
    assert found, report


def test_blender_refuses_a_hostile_checkpoint(blender, scene, bad_video, tmp_path):
    case = CASES["ckpt-blender"]
    marker = tmp_path / "pwned"
    ckpt = hostile_checkpoint(tmp_path / "evil.pt", marker)
    before = scene()
    assert blender_error(blender, bad_video("two_people.mp4"), ckpt) == \
        case.blender_message(ckpt=ckpt)
    assert scene() == before and not marker.exists()
