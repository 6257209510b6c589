"""Live mode with the real bpy module and a real video as the live source: the operator run
headless, the threaded session polled the way the modal timer polls it, the panel; and the
long-clip key writer."""
from __future__ import annotations

import time

import numpy as np
import pytest

from blaze2cap_addon import operators, scene
from blaze2cap_addon.live import LiveSession, LiveSettings
from engine import retarget as rt

bpy = pytest.importorskip("bpy")


def camera_quats(obj, frame: int, read_pose, camera: np.ndarray) -> np.ndarray:
    """(21, 4) joint -> camera rotations that the armature shows at ``frame``."""
    return rt.bone_world_to_camera_quats(read_pose(obj, frame)[None], rt.build_rig(), camera)[0]


def quat_dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(np.abs(a - b).max(-1), np.abs(a + b).max(-1)).max())


def test_live_operator_records_the_streaming_poses(context, sports2d_video, tiny_checkpoint,
                                                   read_pose, snapshot):
    sc = context.scene
    sc.b2c.video = str(sports2d_video)
    assert bpy.ops.b2c.live('EXEC_DEFAULT', source='VIDEO', use_record=True, max_frames=8,
                            use_realtime=False, checkpoint=str(tiny_checkpoint)) == {'FINISHED'}
    obj = context.object
    assert obj.name == f"{sports2d_video.stem} Live" and scene.is_blaze2cap_armature(obj)
    assert (sc.frame_start, sc.frame_end, sc.render.fps) == (1, 8, 30)
    assert obj.animation_data.action.frame_range[:] == pytest.approx((1.0, 8.0))
    # The same source again, frame by frame: the keys are its streaming poses.
    session = LiveSession(LiveSettings(video=sports2d_video, checkpoint=tiny_checkpoint,
                                       realtime=False, max_frames=8))
    frames = list(session.frames())
    assert any(f.detected for f in frames)
    camera = session.retarget.placement.rotation
    for i in (0, 3, 7):
        got = camera_quats(obj, 1 + i, read_pose, camera)
        assert quat_dist(got, frames[i].prediction.global_quats[0]) < 1e-4
    # Without recording, an existing Blaze2Cap armature is driven and keeps its action.
    before = snapshot()
    action = obj.animation_data.action
    assert bpy.ops.b2c.live('EXEC_DEFAULT', source='VIDEO', target='SELECTED', max_frames=3,
                            use_realtime=False, checkpoint=str(tiny_checkpoint)) == {'FINISHED'}
    assert snapshot() == before and obj.animation_data.action == action


def test_threaded_session_polled_like_the_modal_timer(context, sports2d_video, tiny_checkpoint,
                                                      read_pose):
    """The worker thread runs BlazePose and the engine; the main thread polls and poses the
    armature (what each timer tick does), then writes the recorded keys."""
    session = LiveSession(LiveSettings(video=sports2d_video, checkpoint=tiny_checkpoint,
                                       realtime=True, max_frames=6))
    run = operators.LiveRun(context, session, None, "threaded", record=True)
    session.start()
    ticks, deadline = 0, time.monotonic() + 60
    while session.running or ticks == 0:
        assert run.apply(session.poll())
        ticks += 1
        time.sleep(operators.LIVE_TIMER_S)
        assert time.monotonic() < deadline
    assert run.apply(session.poll()) and session.error is None
    assert run.frames == 6 and ticks > 1  # the UI thread was free while the worker ran
    last = run.recorded[-1]
    pose = [run.obj.pose.bones[n].rotation_quaternion[:] for n in rt.BONE_NAMES]
    np.testing.assert_allclose(pose, last.local_quats, atol=1e-6)  # the newest pose is shown
    assert "recorded 6 frames" in run.finish(context)
    camera = session.retarget.placement.rotation
    got = camera_quats(run.obj, 6, read_pose, camera)
    assert quat_dist(got, last.prediction.global_quats[0]) < 1e-4


def test_live_errors_and_stop(context, tmp_path, snapshot):
    before = snapshot()
    with pytest.raises(RuntimeError, match="video not found"):
        bpy.ops.b2c.live('EXEC_DEFAULT', source='VIDEO', video=str(tmp_path / "none.mp4"))
    with pytest.raises(RuntimeError, match="choose a video file first"):
        bpy.ops.b2c.live('EXEC_DEFAULT', source='VIDEO', video=" ")
    assert snapshot() == before
    wm = context.window_manager
    assert not bpy.ops.b2c.live_stop.poll()
    wm.b2c_live.running = True
    try:
        assert bpy.ops.b2c.live_stop() == {'FINISHED'} and wm.b2c_live.stop_requested
        assert not bpy.ops.b2c.live.poll() and not bpy.ops.b2c.animate_from_video.poll()
    finally:
        wm.b2c_live.running = wm.b2c_live.stop_requested = False


@pytest.mark.parametrize("running", [False, True])
def test_panel_draws_the_live_section(context, running, draw_recorded):
    from blaze2cap_addon.panel import B2C_PT_main

    context.window_manager.b2c_live.running = running
    try:
        calls = draw_recorded(B2C_PT_main, context)
    finally:
        context.window_manager.b2c_live.running = False
    props = [(args[0], args[1]) for name, args, _ in calls if name == "prop"]
    assert {p for _, p in props} >= {"live_source", "live_camera", "use_live_record"}
    for data, prop in props:
        assert prop in data.bl_rna.properties
    ops = [args[0] for name, args, _ in calls if name == "operator"]
    assert ("b2c.live" in ops) is not running and ("b2c.live_stop" in ops) is running


def test_long_clips_are_keyed_as_samples(context, make_result, read_pose, monkeypatch):
    """Beyond SAMPLED_ABOVE frames the keys are sampled F-curves: the same pose on every
    frame, linear in between; a constant curve is one key."""
    result, quats = make_result(frames=30, start=0)
    monkeypatch.setattr(scene, "SAMPLED_ABOVE", 20)
    obj = scene.apply_animation(context, result)
    channels = obj.animation_data.action.layers[0].strips[0].channelbag(
        obj.animation_data.action_slot).fcurves
    root_rot = [c for c in channels if c.data_path == 'pose.bones["Root"].rotation_quaternion']
    assert [len(c.keyframe_points) for c in root_rot] == [1] * 4  # identity all along
    hips = channels.find('pose.bones["Hips"].rotation_quaternion', index=0)
    assert len(hips.keyframe_points) == 0 and len(hips.sampled_points) == 30
    values = result.animation.local_quats[:, 1, 0]
    assert hips.evaluate(1) == pytest.approx(values[0], abs=1e-6)
    assert hips.evaluate(30) == pytest.approx(values[29], abs=1e-6)
    assert hips.evaluate(10.5) == pytest.approx(0.5 * (values[9] + values[10]), abs=1e-6)
    camera = result.animation.placement.rotation
    for i in (0, 17, 29):
        got = camera_quats(obj, 1 + i, read_pose, camera)
        assert quat_dist(got, quats[i]) < 1e-4
