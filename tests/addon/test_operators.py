"""Registration, the Animate job (thread, cancel, errors), the operator's apply step, and a
real video through EXEC_DEFAULT."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from blaze2cap_addon import operators, preferences
from blaze2cap_addon.job import AnimateJob, AnimateSettings, JobCancelled, JobState
from engine import retarget as rt
from engine.errors import VideoError

bpy = pytest.importorskip("bpy")


def settings(tmp_path: Path) -> AnimateSettings:
    return AnimateSettings(video=tmp_path / "v.mp4", landmarks_path=tmp_path / "v.npy")


def test_register_and_unregister_cleanly(addon):
    assert hasattr(bpy.types, "B2C_PT_main") and hasattr(bpy.types.Scene, "b2c")
    assert bpy.ops.b2c.animate_from_video.get_rna_type().identifier == "B2C_OT_animate_from_video"
    addon.unregister()
    try:
        assert not hasattr(bpy.types, "B2C_PT_main") and not hasattr(bpy.types.Scene, "b2c")
        with pytest.raises(KeyError):
            bpy.ops.b2c.export_bvh.get_rna_type()
    finally:
        addon.register()
    assert bpy.ops.b2c.export_fbx.get_rna_type().identifier == "B2C_OT_export_fbx"


def test_job_runs_on_a_thread_and_cancels(tmp_path):
    started = threading.Event()

    def slow_pipeline(s, progress, cancel):
        progress(0.5, "half way")
        started.set()
        while not cancel.wait(0.01):
            pass
        raise JobCancelled("cancelled")

    job = AnimateJob(settings(tmp_path), pipeline=slow_pipeline)
    job.start()
    assert started.wait(5.0)
    assert job.progress == (0.5, "half way") and not job.finished
    job.cancel()
    job.join(5.0)
    assert job.state is JobState.CANCELLED and job.result is None and job.error is None


def test_job_errors_are_one_sentence(tmp_path):
    def bad_video(s, progress, cancel):
        raise VideoError("cannot open v.mp4: not a video")

    def bug(s, progress, cancel):
        raise ZeroDivisionError("division by zero")

    job = AnimateJob(settings(tmp_path), pipeline=bad_video)
    job.run()
    assert job.state is JobState.FAILED and job.error == "cannot open v.mp4: not a video"
    job = AnimateJob(settings(tmp_path), pipeline=bug)
    job.run()
    assert job.state is JobState.FAILED and "\n" not in job.error
    assert job.error.startswith("unexpected ZeroDivisionError")


def test_cancelled_or_failed_run_leaves_the_scene_unchanged(context, tmp_path, make_result,
                                                            snapshot):
    before = snapshot()
    result, _ = make_result()

    def finishes_then_cancelled(s, progress, cancel):
        cancel.set()  # ESC pressed while the last stage was finishing
        return result

    job = AnimateJob(settings(tmp_path), pipeline=finishes_then_cancelled)
    job.run()
    assert job.state is JobState.CANCELLED
    status, message = operators.finish_job(context, job, None)
    assert status == 'CANCELLED' and "not changed" in message
    job = AnimateJob(settings(tmp_path), pipeline=lambda s, progress, cancel: 1 / 0)
    job.run()
    assert operators.finish_job(context, job, None)[0] == 'CANCELLED'
    assert snapshot() == before

    job = AnimateJob(settings(tmp_path), pipeline=lambda s, progress, cancel: result)
    job.run()
    status, message = operators.finish_job(context, job, None)
    assert status == 'FINISHED' and "clip" in bpy.data.objects
    obj = bpy.data.objects["clip"]
    bpy.data.objects.remove(obj)
    assert operators.finish_job(context, job, "clip") == (
        'CANCELLED', "the armature clip was deleted during the run")


def test_missing_video_is_reported_in_one_sentence(context, snapshot, tmp_path):
    before = snapshot()
    missing = tmp_path / "nope.mp4"
    with pytest.raises(RuntimeError) as err:
        bpy.ops.b2c.animate_from_video('EXEC_DEFAULT', video=str(missing))
    assert str(err.value).strip() == f"Error: video not found: {missing}"
    context.scene.b2c.target = 'SELECTED'
    with pytest.raises(RuntimeError, match="select a Blaze2Cap armature"):
        bpy.ops.b2c.animate_from_video('EXEC_DEFAULT', video=__file__, target='SELECTED',
                                       checkpoint=__file__)
    assert snapshot() == before


def test_operator_animates_a_real_video(context, sports2d_video, tiny_checkpoint, read_pose,
                                       monkeypatch, tmp_path):
    monkeypatch.setattr(preferences, "user_dir", lambda: tmp_path)
    sc = context.scene
    sc.b2c.video = str(sports2d_video)  # the panel's settings, as the Animate button uses
    sc.b2c.frame_start, sc.b2c.frame_end = 0, 20
    assert bpy.ops.b2c.animate_from_video('EXEC_DEFAULT', checkpoint=str(tiny_checkpoint),
                                          smoothing=1.0) == {'FINISHED'}
    obj = context.object
    assert obj.name == sports2d_video.stem and len(obj.data.bones) == 22
    assert (sc.frame_start, sc.frame_end, sc.render.fps) == (1, 20, 30)
    assert obj.animation_data.action.frame_range[:] == pytest.approx((1.0, 20.0))
    rig = rt.build_rig()
    feet = []
    for frame in range(1, 21):  # the floor is a low percentile over all frames
        world = read_pose(obj, frame)
        rots = world[None, 1:, :3, :3] @ rig.corrections.swapaxes(-1, -2)
        feet.append(rt.foot_contact_points(rots, world[None, 1:, :3, 3])[..., 2].min())
    assert min(feet) == pytest.approx(0.0, abs=0.05) and np.isfinite(feet).all()
    # A second run on the same (selected) armature replaces its action.
    assert bpy.ops.b2c.animate_from_video('EXEC_DEFAULT', checkpoint=str(tiny_checkpoint),
                                          target='SELECTED', frame_end=10) == {'FINISHED'}
    assert len(bpy.data.actions) == 1 and len(bpy.data.objects) == 1
    assert sc.frame_end == 10
    # Landmarks are kept per video and range: re-running with other settings reuses them.
    cached = sorted((tmp_path / "landmarks").glob("*.landmarks.npy"))
    assert len(cached) == 2
    stamps = [p.stat().st_mtime_ns for p in cached]
    assert bpy.ops.b2c.animate_from_video('EXEC_DEFAULT', checkpoint=str(tiny_checkpoint),
                                          target='SELECTED', frame_end=10,
                                          use_root_motion=False) == {'FINISHED'}
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    from capture.blazepose import read_sidecar

    assert {read_sidecar(p)["pose_config"]["model"] for p in cached} == {"heavy"}  # the default
    # The Full tracker is another extraction, kept beside the heavy one.
    assert bpy.ops.b2c.animate_from_video('EXEC_DEFAULT', checkpoint=str(tiny_checkpoint),
                                          target='SELECTED', frame_end=10,
                                          pose_model='FULL') == {'FINISHED'}
    models = sorted(read_sidecar(p)["pose_config"]["model"]
                    for p in (tmp_path / "landmarks").glob("*.landmarks.npy"))
    assert models == ["full", "heavy", "heavy"]
    assert bpy.ops.b2c.animate_from_video('EXEC_DEFAULT', checkpoint=str(tiny_checkpoint),
                                          target='SELECTED', frame_end=10,
                                          use_root_motion=False) == {'FINISHED'}
    for frame in (1, 10):  # no root motion: the Root bone stays on the origin
        assert np.abs(read_pose(obj, frame)[0, :2, 3]).max() < 1e-6
    # The keyed pose is the engine's output (this run: no smoothing, the heavy landmarks).
    from engine.inference import Predictor

    landmarks = next(p for p in cached if read_sidecar(p)["frames"] == 10)
    prediction = Predictor.from_checkpoint(tiny_checkpoint).predict(
        np.load(landmarks), aspect=read_sidecar(landmarks)["aspect"], fps=30.0)
    camera = rt.retarget(prediction.global_quats, prediction.root_translation,
                       prediction.valid).placement.rotation
    for i in (0, 4, 9):
        back = rt.bone_world_to_camera_quats(read_pose(obj, 1 + i)[None], rig, camera)[0]
        q = prediction.global_quats[i]
        assert np.minimum(np.abs(back - q).max(-1), np.abs(back + q).max(-1)).max() < 1e-4


@pytest.mark.parametrize("running", [False, True])
def test_panel_draws_existing_properties_and_operators(context, running, draw_recorded):
    from blaze2cap_addon.panel import B2C_PT_main

    context.window_manager.b2c_progress.running = running
    try:
        calls = draw_recorded(B2C_PT_main, context)
    finally:
        context.window_manager.b2c_progress.running = False
    props = [(args[0], args[1]) for name, args, _ in calls if name == "prop"]
    assert {p for _, p in props} >= {"video", "frame_start", "frame_end", "target",
                                     "use_root_motion", "smoothing"}
    for data, prop in props:
        assert prop in data.bl_rna.properties
    ops = [args[0] for name, args, _ in calls if name == "operator"]
    for op in ops:
        module, name = op.split(".")
        getattr(getattr(bpy.ops, module), name).get_rna_type()
    assert ("b2c.animate_from_video" in ops) is not running
    assert any(name == "progress" for name, _, _ in calls) is running
