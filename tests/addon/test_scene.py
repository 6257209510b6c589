"""Rig, keys, floor, replacing an action, BVH / FBX round trips, with the real bpy module."""
from __future__ import annotations

import numpy as np
import pytest

from blaze2cap_addon import exporters, scene
from engine import retarget as rt
from engine.skeleton import JOINT_NAMES, PARENTS

bpy = pytest.importorskip("bpy")


def quat_dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(np.abs(a - b).max(-1), np.abs(a + b).max(-1)).max())


def test_rig_has_22_bones_with_the_totalcapture_hierarchy(context):
    obj = scene.build_armature(context, "clip")
    bones = obj.data.bones
    assert [b.name for b in bones] == ["Root", *JOINT_NAMES]
    assert bones["Root"].parent is None and bones["Hips"].parent.name == "Root"
    for j in range(1, 21):
        assert bones[JOINT_NAMES[j]].parent.name == JOINT_NAMES[PARENTS[j]]
    rig = rt.build_rig()
    np.testing.assert_allclose(scene.rest_matrices(obj, rig.bone_names), rig.rest, atol=1e-5)
    np.testing.assert_allclose([b.head_local for b in bones], rig.heads, atol=1e-5)
    assert scene.is_blaze2cap_armature(obj) and context.object == obj
    assert all(pb.rotation_mode == 'QUATERNION' for pb in obj.pose.bones)


def test_keys_reproduce_the_engine_and_stand_on_the_floor(context, make_result, read_pose):
    result, quats = make_result(frames=12, start=4, fps=29.97)
    obj = scene.apply_animation(context, result)
    sc = context.scene
    assert obj.name == "clip" and obj.data.name == "clip"
    assert (sc.frame_start, sc.frame_end) == (5, 16)
    assert sc.render.fps / sc.render.fps_base == pytest.approx(29.97)
    assert obj.animation_data.action.name == "clip"
    camera = result.animation.placement.rotation
    lowest = []
    for i in (0, 5, 11):
        world = read_pose(obj, sc.frame_start + i)
        back = rt.bone_world_to_camera_quats(world[None], result.animation.rig, camera)[0]
        assert quat_dist(back, quats[i]) < 1e-4
        rots = world[None, 1:, :3, :3] @ result.animation.rig.corrections.swapaxes(-1, -2)
        lowest.append(rt.foot_contact_points(rots, world[None, 1:, :3, 3])[..., 2].min())
    # Root motion: the Hips follow the engine's trajectory, placed in the world.
    np.testing.assert_allclose(read_pose(obj, sc.frame_start + 11)[1, :3, 3],
                               result.animation.world_joints[11, 0], atol=1e-4)
    assert min(lowest) == pytest.approx(0.0, abs=0.02)


def test_second_run_replaces_the_action(context, make_result, read_pose):
    first, _ = make_result(seed=1)
    obj = scene.apply_animation(context, first)
    second, quats = make_result(seed=2)
    assert scene.apply_animation(context, second, target=obj) == obj
    assert len(bpy.data.actions) == 1 and len(bpy.data.objects) == 1
    action = obj.animation_data.action
    assert action.name == "clip"
    back = rt.bone_world_to_camera_quats(read_pose(obj, context.scene.frame_start)[None],
                                         second.animation.rig,
                                         second.animation.placement.rotation)[0]
    assert quat_dist(back, quats[0]) < 1e-4
    with pytest.raises(Exception, match="not a Blaze2Cap armature"):
        scene.check_target(bpy.data.objects.new("empty", None), second.animation.rig)


def test_bvh_and_fbx_reimport_with_22_bones_and_all_frames(context, tmp_path, make_result):
    result, _ = make_result(frames=10, start=0, fps=30.0)
    obj = scene.apply_animation(context, result)
    bvh, fbx = tmp_path / "clip.bvh", tmp_path / "clip.fbx"
    exporters.export_bvh(context, obj, bvh)
    exporters.export_fbx(context, obj, fbx)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.bvh", "clip.fbx"]  # no temp left
    assert "Frames: 10" in bvh.read_text()

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=str(bvh), axis_up='Z', axis_forward='-Y', frame_start=1,
                            update_scene_duration=True)
    imported = bpy.context.object
    assert [b.name for b in imported.data.bones] == list(rt.BONE_NAMES)
    assert tuple(imported.animation_data.action.frame_range) == (1.0, 10.0)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    # FBX keys carry times (frame / fps): import at the clip's rate, without the importer's
    # default one-frame offset.
    bpy.context.scene.render.fps = 30
    bpy.ops.import_scene.fbx(filepath=str(fbx), anim_offset=0.0)
    arms = [o for o in bpy.data.objects if o.type == 'ARMATURE']
    assert len(arms) == 1 and len(bpy.data.objects) == 1
    assert sorted(b.name for b in arms[0].data.bones) == sorted(rt.BONE_NAMES)  # no leaf bones
    np.testing.assert_allclose(arms[0].animation_data.action.frame_range, (1.0, 10.0), atol=1e-3)


def test_failed_export_leaves_no_file(context, tmp_path, make_result):
    obj = scene.apply_animation(context, make_result(frames=3)[0])
    with pytest.raises(Exception, match="folder does not exist"):
        exporters.export_bvh(context, obj, tmp_path / "missing" / "x.bvh")
    assert list(tmp_path.iterdir()) == []


def test_legacy_actions_of_blender_4_2_get_fcurves_on_the_action():
    """Blender 4.2/4.3 have no slots: F-curves are made with Action.fcurves.new(...,
    action_group=...) after the action is assigned (checked here with stand-ins)."""
    made = []

    class LegacyFCurves:
        def new(self, data_path, index=0, action_group=""):
            made.append((data_path, index, action_group))
            return "fcurve"

    class LegacyAction:
        fcurves = LegacyFCurves()

    class AnimData:
        action = None

    class Obj:
        animation_data = AnimData()

    obj, action = Obj(), LegacyAction()
    new = scene._new_fcurve_factory(action, obj)
    assert obj.animation_data.action is action
    assert new('pose.bones["Hips"].rotation_quaternion', 2, "Hips") == "fcurve"
    assert made == [('pose.bones["Hips"].rotation_quaternion', 2, "Hips")]
