"""The data engine end to end on one tiny clip: determinism, resume, ground truth, format."""
from __future__ import annotations

import json

import numpy as np

from engine.kinematics import forward_kinematics
from engine.skeleton import EVAL_BLAZEPOSE_INDICES, EVAL_JOINT_INDICES, JOINT_INDEX


def _entries(out):
    from dataengine.engine import read_manifest

    return [{k: v for k, v in e.items() if k != "seconds"} for e in read_manifest(out)]


def test_same_seed_same_manifest_and_ground_truth(synth_cfg, synth_run, tmp_path):
    from dataengine.engine import generate, read_clip

    generate(synth_cfg, tmp_path, clips=1, workers=1)
    a, b = _entries(synth_run), _entries(tmp_path)
    assert len(a) == 1 and a == b
    ca, cb = (read_clip(d / "clips" / "clip_000000.npz") for d in (synth_run, tmp_path))
    for key in ("positions", "rotations", "offsets", "camera"):
        np.testing.assert_array_equal(ca[key], cb[key])
    k = synth_cfg.frames_per_clip
    assert ca["landmarks"].shape == (k, 33, 10) and ca["landmarks"].dtype == np.float32


def test_another_seed_gives_another_clip(synth_cfg, synth_run, maker):
    from dataclasses import replace

    maker.cfg = replace(synth_cfg, seed=8)
    try:
        other, _ = maker.plan(0)
    finally:
        maker.cfg = synth_cfg
    assert other["body"] != _entries(synth_run)[0]["body"]


def test_resume_skips_finished_clips_and_recovers_lost_lines(synth_cfg, synth_run, tmp_path):
    import shutil

    from dataengine.engine import MANIFEST_NAME, generate

    out = tmp_path / "run"
    shutil.copytree(synth_run, out)
    clip0 = out / "clips" / "clip_000000.npz"
    stamp = clip0.stat().st_mtime_ns
    # a run killed after writing clip 0 but before its manifest line, with a torn line
    (out / MANIFEST_NAME).write_text('{"clip": 5, "na', encoding="utf-8")
    summary = generate(synth_cfg, out, clips=2, workers=1)
    assert (summary["made"], summary["skipped"]) == (1, 1)
    assert clip0.stat().st_mtime_ns == stamp
    assert [e["clip"] for e in _entries(out)] == [0, 1]
    assert generate(synth_cfg, out, clips=2, workers=1)["made"] == 0


def test_other_settings_into_the_same_folder_are_refused(synth_cfg, synth_run, tmp_path):
    import shutil
    from dataclasses import replace

    import pytest

    from dataengine.engine import generate
    from engine.errors import InputError

    shutil.copytree(synth_run, tmp_path / "run")
    with pytest.raises(InputError, match="frames_per_clip"):
        generate(replace(synth_cfg, frames_per_clip=synth_cfg.frames_per_clip + 1), tmp_path / "run", clips=1)


def test_pose_model_is_a_setting_of_the_folder(synth_cfg, synth_run, maker, tmp_path):
    """The landmarks come from the run's BlazePose model (heavy by default, as extract); a
    folder made before the setting existed holds full-model clips and says so."""
    import shutil
    from dataclasses import replace

    import pytest

    from dataengine.engine import SETTINGS_NAME, generate, read_clip
    from engine.errors import InputError

    assert synth_cfg.pose_model == "heavy"
    settings = json.loads((synth_run / SETTINGS_NAME).read_text())
    assert settings["pose_model"] == "heavy"
    full = replace(synth_cfg, pose_model="full")
    with pytest.raises(InputError, match="pose_model"):
        generate(full, synth_run, clips=1)
    maker.cfg = full  # the session's Blender scene: one ClipMaker per process
    try:
        b = maker.make(0)["arrays"]
    finally:
        maker.cfg = synth_cfg
    a = read_clip(synth_run / "clips" / "clip_000000.npz")
    np.testing.assert_array_equal(a["positions"], b["positions"])  # the same clip, ...
    assert not np.array_equal(a["landmarks"], b["landmarks"])      # ... another model's landmarks
    old = tmp_path / "old"                                          # made before the setting
    shutil.copytree(synth_run, old)
    del settings["pose_model"]
    (old / SETTINGS_NAME).write_text(json.dumps(settings))
    assert generate(full, old, clips=1)["skipped"] == 1            # read as full: accepted
    with pytest.raises(InputError, match="pose_model"):
        generate(synth_cfg, old, clips=1)


def test_ground_truth_is_the_rendered_body(synth_run):
    """FK with the stored offsets reproduces the stored joints; rotations are proper."""
    from dataengine.engine import read_clip

    c = read_clip(synth_run / "clips" / "clip_000000.npz")
    pos, rot = c["positions"].astype(np.float64), c["rotations"].astype(np.float64)
    fk = forward_kinematics(rot, c["offsets"].astype(np.float64)) + pos[:, :1]
    assert np.abs(fk - pos).max() < 1e-4
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-4)
    assert (pos[..., 2] > 0).all()                       # in front of the camera
    legs = np.linalg.norm(c["offsets"][[JOINT_INDEX["RightLeg"], JOINT_INDEX["LeftLeg"]]], axis=1)
    assert 0.3 < legs.min() <= legs.max() < 0.52         # an adult thigh, both sides equal
    assert abs(legs[0] - legs[1]) < 1e-5


def test_blazepose_sees_the_rendered_joints_on_an_easy_view(maker):
    """A frontal view at 640x360: BlazePose's 2D landmarks land on the projected GT joints."""
    from dataengine.cameras import View, look_at

    _, posed = maker.plan(0)
    hips = posed.positions[:, JOINT_INDEX["Hips"]].mean(0)
    back = posed.rotations[0, JOINT_INDEX["Hips"]] @ np.array([0.0, 1.0, 0.0])  # TC +y = back
    front = -back[:2] / np.linalg.norm(back[:2])
    eye = np.array([hips[0] + 3.2 * front[0], hips[1] + 3.2 * front[1], hips[2] + 0.3])
    R = look_at(eye, hips)
    view = View(kind="random", tc_camera=None, R=R, t=-R @ eye, fx=0.8 * 640, cx=320.0, cy=180.0,
                width=640, height=360)
    res = maker.make(0, view=view)
    lm, pos = res["arrays"]["landmarks"], res["arrays"]["positions"]
    det = (lm != 0).any(axis=(1, 2))
    assert det.all()
    uv = view.project(pos[:, list(EVAL_JOINT_INDICES)])
    bp = lm[:, list(EVAL_BLAZEPOSE_INDICES), 5:7] * [view.width, view.height]
    err = np.linalg.norm(uv - bp, axis=-1)
    assert np.median(err) < 12.0, np.median(err, axis=0)   # px at 360 p (notes: ~5 px)
    assert json.loads(json.dumps(res["entry"]))["camera"]["width"] == 640


def test_prepare_reads_the_engine_output(synth_cfg, synth_run, totalcapture_dir, tmp_path):
    from engine.data import load_dataset_map, load_sequence
    from training.prepare import PrepareConfig, prepare_totalcapture

    cfg = PrepareConfig(sequences=("S1_freestyle1",), cameras=(4,), strides=(1,), mirror=False,
                        engine=synth_run, engine_weight=0.25)
    prepare_totalcapture(totalcapture_dir, tmp_path, cfg)
    eng = [e for e in load_dataset_map(tmp_path) if e["source_format"] == "dataengine"]
    assert len(eng) == 1 and eng[0]["weight"] == 0.25 and eng[0]["split_train"]
    seq = load_sequence(tmp_path, eng[0])
    k = synth_cfg.frames_per_clip
    assert seq["landmarks"].shape == (k, 33, 10) and seq["target"].shape == (k, 22, 6)


def test_a_clip_where_blazepose_finds_nobody_stops_early(maker, monkeypatch):
    """Camera turned away from the body: the clip stops after ABORT_AFTER frames, and its
    arrays and entry say so."""
    from dataengine import engine as E
    from dataengine.cameras import View, look_at

    _, posed = maker.plan(0)
    hips = posed.positions[:, JOINT_INDEX["Hips"]].mean(0)
    eye = hips + [4.0, 0.0, 0.0]
    R = look_at(eye, eye + [4.0, 0.0, 0.0])                  # looking away from the body
    view = View(kind="random", tc_camera=None, R=R, t=-R @ eye, fx=200.0, cx=128.0, cy=72.0,
                width=256, height=144)
    assert (view.to_camera(posed.positions[:, 0])[:, 2] < 0).all()
    monkeypatch.setattr(E, "ABORT_AFTER", 3)
    res = maker.make(0, view=view)
    assert res["entry"]["frames"] == 3 and res["entry"]["detected"] == 0
    assert "aborted" in res["entry"]
    assert res["arrays"]["landmarks"].shape == (3, 33, 10)
    assert res["arrays"]["positions"].shape == (3, 21, 3)


def test_command_line_makes_the_same_clip(synth_cfg, synth_run, tmp_path, capsys):
    from training.cli import main

    rc = main(["synth", "--totalcapture", str(synth_cfg.totalcapture), "--out", str(tmp_path),
               "--clips", "1", "--frames-per-clip", str(synth_cfg.frames_per_clip),
               "--seed", str(synth_cfg.seed), "--size", str(synth_cfg.view.size),
               "--sequences", ",".join(synth_cfg.sequences)])
    assert rc == 0
    assert "landmark frames/hour" in capsys.readouterr().out
    assert _entries(tmp_path) == _entries(synth_run)
    assert main(["synth", "--totalcapture", str(synth_cfg.totalcapture), "--out", str(tmp_path),
                 "--clips", "1", "--size", "100"]) == 2
    assert main(["synth", "--totalcapture", str(synth_cfg.totalcapture), "--out", str(tmp_path),
                 "--clips", "1", "--pose-model", "full"]) == 2  # the folder holds heavy clips
