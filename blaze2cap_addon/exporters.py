"""BVH, FBX and .blend output through Blender's own exporters, written atomically.

Each exporter writes a temporary file beside the target, which is flushed and moved over the
target only when the exporter succeeded, so a failed or cancelled export never leaves a
half-written file.

Settings chosen to import cleanly elsewhere:

* BVH: Euler rotations in the bones' native order, translation channels on the root bone
  only (``root_transform_only``), every frame of the scene range. Blender's BVH exporter
  writes its Z-up world as it is (it has no axis option): import with up = Z, forward = -Y
  (in Blender: ``import_anim.bvh(axis_up='Z', axis_forward='-Y')``).
* FBX: only the armature, baked animation of every bone at every frame (no curve
  simplification), no extra leaf bones, Y up / -Z forward (FBX's default axis system, read by
  Maya, Unity, Unreal and Blender), bones along +Y.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import bpy

from engine.errors import Blaze2CapError, InputError


class ExportError(Blaze2CapError):
    """An exporter that is missing or failed."""


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path`` (same suffix); move it over ``path`` on success."""
    target = Path(path).expanduser().resolve()
    if target.is_dir():
        raise InputError(f"{target} is a folder; give a file name")
    if not target.parent.is_dir():
        raise InputError(f"output folder does not exist: {target.parent}")
    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        yield tmp
        if not tmp.is_file():
            raise ExportError(f"the exporter did not write {target.name}")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def _only_selected(context, obj):
    """Make ``obj`` the active, only selected object (Object mode); restore afterwards."""
    view_layer = context.view_layer
    previous_active = view_layer.objects.active
    previous_selected = list(context.selected_objects)
    if context.object is not None and context.object.mode != 'OBJECT':
        bpy.ops.object.mode_set(mode='OBJECT')
    for other in previous_selected:
        other.select_set(False)
    view_layer.objects.active = obj
    obj.select_set(True)
    try:
        yield
    finally:
        obj.select_set(False)
        for other in previous_selected:
            if other.name in view_layer.objects:
                other.select_set(True)
        view_layer.objects.active = previous_active


def _operator(module: str, name: str, addon: str):
    op = getattr(getattr(bpy.ops, module), name)
    try:
        op.get_rna_type()
    except KeyError:
        raise ExportError(f"Blender's exporter {module}.{name} is not available: enable the "
                          f"add-on {addon!r} in Preferences > Add-ons") from None
    return op


def _finished(result: set, what: str) -> None:
    if 'FINISHED' not in result:
        raise ExportError(f"Blender's {what} exporter did not finish ({', '.join(result)})")


def export_bvh(context, obj, path: str | os.PathLike) -> Path:
    """Write the armature's animation over the scene's frame range to a .bvh file."""
    op = _operator("export_anim", "bvh", "io_anim_bvh")
    scene = context.scene
    with _only_selected(context, obj), _atomic_path(path) as tmp:
        _finished(op(filepath=str(tmp), check_existing=False, global_scale=1.0,
                     frame_start=scene.frame_start, frame_end=scene.frame_end,
                     rotate_mode='NATIVE', root_transform_only=True), "BVH")
    return Path(path)


def export_fbx(context, obj, path: str | os.PathLike) -> Path:
    """Write the armature and its baked animation (scene frame range) to a .fbx file."""
    op = _operator("export_scene", "fbx", "io_scene_fbx")
    with _only_selected(context, obj), _atomic_path(path) as tmp:
        _finished(op(filepath=str(tmp), check_existing=False, use_selection=True,
                     object_types={'ARMATURE'}, add_leaf_bones=False,
                     use_armature_deform_only=False, armature_nodetype='NULL',
                     primary_bone_axis='Y', secondary_bone_axis='X',
                     axis_forward='-Z', axis_up='Y', apply_unit_scale=True,
                     apply_scale_options='FBX_SCALE_NONE', bake_space_transform=False,
                     bake_anim=True, bake_anim_use_all_bones=True,
                     bake_anim_use_nla_strips=False, bake_anim_use_all_actions=False,
                     bake_anim_force_startend_keying=True, bake_anim_step=1.0,
                     bake_anim_simplify_factor=0.0), "FBX")
    return Path(path)


def save_blend(path: str | os.PathLike) -> Path:
    """Save a copy of the current file (the session keeps its own file name)."""
    with _atomic_path(path) as tmp:
        _finished(bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, check_existing=False),
                  ".blend")
    return Path(path)
