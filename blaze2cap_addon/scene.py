"""Scene building: the Blaze2Cap armature, its action (keys in bulk) and the scene's timing.

Called on the main thread only. The geometry comes from ``engine.retarget``; this module
only turns its arrays into Blender data. Blender frame numbers follow the video: video frame
i is Blender frame i + 1 (Blender's own numbering of movie clips and strips).
"""
from __future__ import annotations

import logging

import bpy
import numpy as np
from mathutils import Matrix

from engine.errors import InputError
from engine.retarget import ROOT_BONE, BoneAnimation, Rig, build_rig

log = logging.getLogger(__name__)

#: Custom property marking Blaze2Cap armatures and actions (value: rig format version).
MARKER = "blaze2cap"
RIG_VERSION = 1
#: Largest difference (armature units) between an armature's rest pose and the rig's that
#: still counts as the same rig (Blender stores rest matrices in float32).
REST_TOLERANCE = 1e-4
_LINEAR = None  # enum value of Keyframe.interpolation 'LINEAR', looked up once
#: Longer clips are keyed as sampled F-curves (see ``_key``): 91 curves of Bezier keys cost
#: about 6.7 kB a frame, 1.4 GB for an hour at 60 fps; samples a fifth of that.
SAMPLED_ABOVE = 36_000


def is_blaze2cap_armature(obj) -> bool:
    """True for an armature object built by :func:`build_armature`."""
    return (obj is not None and obj.type == 'ARMATURE' and MARKER in obj
            and obj.data is not None and MARKER in obj.data)


def build_armature(context, name: str, rig: Rig | None = None):
    """New armature object ``name`` with the 22 bones of ``rig`` in the active collection;
    it becomes the active, only selected object, in Object mode."""
    rig = rig or build_rig()
    if context.object is not None and context.object.mode != 'OBJECT':
        bpy.ops.object.mode_set(mode='OBJECT')
    arm = bpy.data.armatures.new(name)
    arm[MARKER] = RIG_VERSION
    obj = bpy.data.objects.new(name, arm)
    obj[MARKER] = RIG_VERSION
    context.collection.objects.link(obj)
    for other in context.selected_objects:
        other.select_set(False)
    context.view_layer.objects.active = obj
    obj.select_set(True)
    bpy.ops.object.mode_set(mode='EDIT')
    try:
        bones = []
        for b, bone_name in enumerate(rig.bone_names):
            eb = arm.edit_bones.new(bone_name)
            eb.head, eb.tail = rig.heads[b].tolist(), rig.tails[b].tolist()
            matrix = Matrix(rig.rest[b].tolist()).to_4x4()
            matrix.translation = rig.heads[b].tolist()
            eb.matrix = matrix  # sets the roll; head and length stay
            if rig.parents[b] >= 0:
                eb.parent = bones[rig.parents[b]]
                eb.use_connect = rig.connected[b]
            bones.append(eb)
    finally:
        bpy.ops.object.mode_set(mode='OBJECT')
    for pb in obj.pose.bones:
        pb.rotation_mode = 'QUATERNION'
    arm.display_type = 'STICK'
    obj.show_in_front = True
    return obj


def rest_matrices(obj, names: tuple[str, ...]) -> np.ndarray:
    """(len(names), 3, 3) rest rotations (bone-local -> armature) of the named bones."""
    out = np.empty((len(names), 3, 3))
    for i, name in enumerate(names):
        out[i] = np.array(obj.data.bones[name].matrix_local.to_3x3())
    return out


def check_target(obj, rig: Rig) -> None:
    """Raise InputError unless ``obj`` is an unedited Blaze2Cap armature."""
    if not is_blaze2cap_armature(obj):
        raise InputError("the selected object is not a Blaze2Cap armature; select one or "
                         "animate a new armature")
    if [b.name for b in obj.data.bones] != list(rig.bone_names):
        raise InputError(f"the bones of {obj.name} were renamed, added or removed; "
                         "animate a new armature instead")
    heads = np.array([obj.data.bones[n].head_local for n in rig.bone_names])
    if (np.abs(rest_matrices(obj, rig.bone_names) - rig.rest).max() > REST_TOLERANCE
            or np.abs(heads - rig.heads).max() > REST_TOLERANCE):
        raise InputError(f"the rest pose of {obj.name} was edited; animate a new armature "
                         "instead")


def _linear_interpolation() -> int:
    global _LINEAR
    if _LINEAR is None:
        _LINEAR = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value
    return _LINEAR


def _new_fcurve_factory(action, obj):
    """Assign ``action`` to ``obj`` and return ``new(data_path, index, group) -> FCurve``.

    Blender 4.4+ has slotted (layered) actions: F-curves live in the channelbag of the
    object's slot (``Action.fcurves`` is gone in 5.0); 4.2 and 4.3 keep them on the action.
    """
    anim_data = obj.animation_data or obj.animation_data_create()
    if hasattr(action, "slots") and hasattr(action, "layers"):
        from bpy_extras import anim_utils

        slot = action.slots.new(id_type='OBJECT', name=obj.name)
        channelbag = anim_utils.action_ensure_channelbag_for_slot(action, slot)
        anim_data.action = action
        anim_data.action_slot = slot
        return lambda path, index, group: channelbag.fcurves.new(path, index=index, group_name=group)
    anim_data.action = action
    return lambda path, index, group: action.fcurves.new(path, index=index, action_group=group)


def _key(fcurve, frames: np.ndarray, values: np.ndarray, sampled: bool = False) -> None:
    """All keys of one F-curve at once (linear interpolation: one key per video frame).

    A constant curve (the Root's rotation) gets one key. ``sampled``: the keys are baked into
    sample points right away (Blender's ``FCurve.convert_to_samples``: 16 bytes a frame instead
    of a 72-byte Bezier key, the same values on every frame and linear in between), so an
    hour-long clip fits in memory; the Graph Editor turns them back into keys on demand.
    """
    values = np.asarray(values)
    if len(values) > 1 and np.all(values == values[0]):
        frames, values = frames[:1], values[:1]
    n = len(frames)
    points = fcurve.keyframe_points
    points.add(n)
    co = np.empty(2 * n, dtype=np.float32)
    co[0::2], co[1::2] = frames, values
    points.foreach_set("co", co)
    if sampled and n > 1:  # a sample per key frame is the key's value, whatever the handles
        fcurve.convert_to_samples(int(frames[0]), int(frames[-1]) + 1)
        return
    points.foreach_set("interpolation", np.full(n, _linear_interpolation(), dtype=np.int32))
    fcurve.update()


def write_action(obj, animation: BoneAnimation, frame_start: int, name: str):
    """Key ``animation`` on ``obj`` from Blender frame ``frame_start`` into a new action named
    ``name``; a previous Blaze2Cap action of ``obj`` is replaced (removed when unused).

    Clips longer than ``SAMPLED_ABOVE`` frames are stored as sampled F-curves (see
    :func:`_key`); shorter ones as editable keyframes.
    """
    old = obj.animation_data.action if obj.animation_data else None
    action = bpy.data.actions.new(name)
    action[MARKER] = RIG_VERSION
    new_fcurve = _new_fcurve_factory(action, obj)
    sampled = animation.num_frames > SAMPLED_ABOVE
    frames = np.arange(animation.num_frames, dtype=np.float64) + frame_start
    for b, bone in enumerate(animation.bone_names):
        path = f'pose.bones["{bone}"].rotation_quaternion'
        for i in range(4):
            _key(new_fcurve(path, i, bone), frames, animation.local_quats[:, b, i], sampled)
    for i in range(3):
        _key(new_fcurve(f'pose.bones["{ROOT_BONE}"].location', i, ROOT_BONE), frames,
             animation.root_location[:, i], sampled)
    if old is not None and old != action and MARKER in old and old.users == 0:
        bpy.data.actions.remove(old)
        action.name = name
    return action


def set_pose(pose_bones: list, local_quats: np.ndarray, root_location: np.ndarray) -> None:
    """Pose the armature directly (Live mode): ``pose_bones`` in rig order (22), local_quats
    (22, 4) w,x,y,z, root_location (3,) metres, as ``write_action`` keys them."""
    for pb, q in zip(pose_bones, local_quats):
        pb.rotation_quaternion = q
    pose_bones[0].location = root_location


def set_scene_timing(scene, fps: float, frame_start: int, frame_end: int) -> None:
    """Scene frame rate (fractional rates as fps / fps_base) and frame range."""
    rate = max(1, round(fps))
    scene.render.fps = rate
    scene.render.fps_base = rate / fps if fps > 0 else 1.0
    scene.frame_start = frame_start
    scene.frame_end = max(frame_end, frame_start)


def apply_animation(context, result, target=None, show_first_frame: bool = True):
    """Build (or reuse ``target``) the armature, key it and set the scene's timing.

    ``result``: a ``job.AnimateResult``. Returns the armature object, active and selected.
    ``show_first_frame``: go to the clip's first frame (evaluates the scene, which copies the
    action: a caller with a long clip can free ``result`` first and call
    ``scene.frame_set(scene.frame_start)`` itself).
    """
    animation: BoneAnimation = result.animation
    if target is not None:
        check_target(target, animation.rig)
        obj = target
        if context.object is not None and context.object.mode != 'OBJECT':
            bpy.ops.object.mode_set(mode='OBJECT')
        for other in context.selected_objects:
            other.select_set(False)
        context.view_layer.objects.active = obj
        obj.select_set(True)
    else:
        obj = build_armature(context, result.name, animation.rig)
    frame_start = result.start + 1
    write_action(obj, animation, frame_start, result.name)
    scene = context.scene
    set_scene_timing(scene, result.fps, frame_start, frame_start + animation.num_frames - 1)
    if show_first_frame:
        scene.frame_set(frame_start)
    log.info("animated %s: %d frames at %.3g fps", obj.name, animation.num_frames, result.fps)
    return obj
