"""Operators: Animate (modal, work on a thread), Export BVH, Export FBX.

Thin glue: the work is ``job.run_pipeline`` (no bpy) and ``scene.apply_animation`` (main
thread). Errors reach the user as one sentence through ``self.report``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from engine.errors import Blaze2CapError

from . import exporters, preferences, scene
from .job import AnimateJob, AnimateSettings, JobState, check_settings, landmarks_cache_path
from .properties import TARGET_ITEMS

TIMER_S = 0.1
_SETTING_NAMES = ("video", "frame_start", "frame_end", "target", "use_root_motion", "smoothing")


def job_settings(context, values: dict, checkpoint: str = "") -> AnimateSettings:
    """AnimateSettings from the panel/operator values; raises Blaze2CapError (one sentence).
    ``checkpoint``: weights for this run (default: the preferences')."""
    video = Path(bpy.path.abspath(values["video"])) if values["video"].strip() else Path("")
    weights = (Path(bpy.path.abspath(checkpoint)) if checkpoint.strip()
               else preferences.checkpoint(context))
    start, end = values["frame_start"], values["frame_end"] or None
    settings = AnimateSettings(
        video=video, landmarks_path=Path("unused.npy"), checkpoint=weights, start=start,
        end=end, root_motion=values["use_root_motion"], smoothing=values["smoothing"],
        reuse_landmarks=True)
    check_settings(settings)
    folder = preferences.user_dir() / "landmarks"
    folder.mkdir(parents=True, exist_ok=True)
    return replace(settings, landmarks_path=landmarks_cache_path(folder, video, start, end))


def target_armature(context, target: str):
    """The armature to re-animate (``target`` 'SELECTED'), or None for a new one."""
    if target != 'SELECTED':
        return None
    obj = context.object
    if not scene.is_blaze2cap_armature(obj):
        raise Blaze2CapError("select a Blaze2Cap armature, or set Target to New Armature")
    return obj


def finish_job(context, job: AnimateJob, target_name: str | None):
    """Main-thread end of a run: apply a DONE job to the scene.

    Returns (status, message): status 'FINISHED' with the armature changed, or 'CANCELLED'
    with nothing changed (the job was cancelled or failed).
    """
    if job.state is JobState.CANCELLED:
        return 'CANCELLED', "Blaze2Cap: cancelled; the scene was not changed"
    if job.state is JobState.FAILED:
        return 'CANCELLED', job.error
    if job.state is not JobState.DONE:
        raise RuntimeError(f"finish_job on a job in state {job.state}")
    target = None
    if target_name is not None:
        target = bpy.data.objects.get(target_name)
        if target is None:
            return 'CANCELLED', f"the armature {target_name} was deleted during the run"
    try:
        obj = scene.apply_animation(context, job.result, target)
    except Blaze2CapError as err:
        return 'CANCELLED', str(err)
    result = job.result
    return 'FINISHED', (f"Blaze2Cap: animated {obj.name} ({result.frames} frames, a person "
                        f"in {result.detected})")


class B2C_OT_animate_from_video(bpy.types.Operator):
    """Track the person in the video and animate an armature with the motion (Esc cancels)"""

    bl_idname = "b2c.animate_from_video"
    bl_label = "Animate"
    bl_options = {'REGISTER', 'UNDO'}

    video: StringProperty(name="Video", subtype='FILE_PATH', default="",
                          description="Video file (default: the panel's)")
    frame_start: IntProperty(name="Start", min=0, default=0,
                             description="First video frame")
    frame_end: IntProperty(name="End", min=0, default=0,
                           description="Video frame after the last one (0 = to the end)")
    target: EnumProperty(name="Target", items=TARGET_ITEMS, default='NEW',
                         description="Armature that receives the animation")
    use_root_motion: BoolProperty(name="Root Motion", default=True,
                                  description="Move the Root bone along the person's path")
    smoothing: FloatProperty(name="Smoothing", min=0.0, soft_max=5.0, default=0.0,
                             description="Gaussian smoothing of the keys, in frames")
    checkpoint: StringProperty(name="Checkpoint", subtype='FILE_PATH', default="",
                               options={'HIDDEN', 'SKIP_SAVE'},
                               description="Engine weights for this run (default: the "
                                           "add-on preferences')")

    # Per-run state, set on the instance (plain attributes, not Blender properties).
    _job = None
    _timer = None
    _target_name = None

    @classmethod
    def poll(cls, context):
        progress = getattr(context.window_manager, "b2c_progress", None)
        return progress is None or not progress.running

    def _values(self, context) -> dict:
        """Operator properties that were set, else the panel's settings."""
        panel = context.scene.b2c
        return {name: getattr(self, name) if self.properties.is_property_set(name)
                else getattr(panel, name) for name in _SETTING_NAMES}

    def _prepare(self, context) -> AnimateJob | None:
        values = self._values(context)
        try:
            settings = job_settings(context, values, self.checkpoint)
            target = target_armature(context, values["target"])
        except Blaze2CapError as err:
            self.report({'ERROR'}, str(err))
            return None
        self._target_name = target.name if target is not None else None
        return AnimateJob(settings)

    def _end(self, context, job: AnimateJob) -> set:
        status, message = finish_job(context, job, self._target_name)
        self.report({'INFO'} if status == 'FINISHED' else
                    {'WARNING'} if job.state is JobState.CANCELLED else {'ERROR'}, message)
        return {status}

    def execute(self, context):
        """Run the whole job now (headless scripts, tests, redo)."""
        job = self._prepare(context)
        if job is None:
            return {'CANCELLED'}
        job.run()
        return self._end(context, job)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:  # no event loop: run now
            return self.execute(context)
        job = self._prepare(context)
        if job is None:
            return {'CANCELLED'}
        self._job = job
        wm = context.window_manager
        wm.b2c_progress.running = True
        wm.b2c_progress.fraction, wm.b2c_progress.message = 0.0, "Starting"
        wm.progress_begin(0, 100)
        self._timer = wm.event_timer_add(TIMER_S, window=context.window)
        wm.modal_handler_add(self)
        job.start()
        return {'RUNNING_MODAL'}

    def modal(self, context, event):
        job = self._job
        if event.type == 'ESC' and event.value == 'PRESS':
            job.cancel()
            context.workspace.status_text_set("Blaze2Cap: cancelling...")
            return {'RUNNING_MODAL'}
        if event.type != 'TIMER':
            return {'PASS_THROUGH'}
        fraction, message = job.progress
        self._show_progress(context, fraction, message)
        if not job.finished:
            return {'PASS_THROUGH'}
        job.join()
        self._cleanup(context)
        return self._end(context, job)

    def cancel(self, context):
        """Blender ends the modal operator (e.g. a file is loaded): stop the worker."""
        if self._job is not None:
            self._job.cancel()
            self._job.join(timeout=5.0)
        self._cleanup(context)

    def _show_progress(self, context, fraction: float, message: str) -> None:
        wm = context.window_manager
        wm.b2c_progress.fraction, wm.b2c_progress.message = fraction, message
        wm.progress_update(int(100 * fraction))
        context.workspace.status_text_set(f"Blaze2Cap: {message} ({100 * fraction:.0f}%), "
                                          "Esc to cancel")
        for area in context.screen.areas if context.screen else ():
            if area.type == 'VIEW_3D':
                area.tag_redraw()

    def _cleanup(self, context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        wm.b2c_progress.running = False
        if context.workspace is not None:
            context.workspace.status_text_set(None)


class _ExportArmature(ExportHelper):
    """Shared part of the BVH / FBX export operators: the active Blaze2Cap armature."""

    check_extension = True

    @classmethod
    def poll(cls, context):
        return scene.is_blaze2cap_armature(context.object)

    def invoke(self, context, event):
        if not self.filepath:
            folder = Path(bpy.path.abspath("//")) if bpy.data.filepath else Path.home()
            self.filepath = str(folder / (bpy.path.clean_name(context.object.name)
                                          + self.filename_ext))
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    def execute(self, context):
        try:
            path = self._export(context, context.object, self.filepath)
        except Blaze2CapError as err:
            self.report({'ERROR'}, str(err))
            return {'CANCELLED'}
        self.report({'INFO'}, f"Blaze2Cap: wrote {path}")
        return {'FINISHED'}


class B2C_OT_export_bvh(bpy.types.Operator, _ExportArmature):
    """Export the active Blaze2Cap armature's animation as BVH"""

    bl_idname = "b2c.export_bvh"
    bl_label = "Export BVH"
    filename_ext = ".bvh"
    filter_glob: StringProperty(default="*.bvh", options={'HIDDEN'})

    @staticmethod
    def _export(context, obj, path):
        return exporters.export_bvh(context, obj, path)


class B2C_OT_export_fbx(bpy.types.Operator, _ExportArmature):
    """Export the active Blaze2Cap armature and its animation as FBX"""

    bl_idname = "b2c.export_fbx"
    bl_label = "Export FBX"
    filename_ext = ".fbx"
    filter_glob: StringProperty(default="*.fbx", options={'HIDDEN'})

    @staticmethod
    def _export(context, obj, path):
        return exporters.export_fbx(context, obj, path)
