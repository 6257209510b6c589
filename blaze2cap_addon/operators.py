"""Operators: Animate (modal, work on a thread), Live (modal, a source driving an armature),
Export BVH, Export FBX.

Thin glue: the work is ``job.run_pipeline`` / ``live.LiveSession`` (no bpy) and ``scene``
(main thread). Errors reach the user as one sentence through ``self.report``.
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
from .properties import LIVE_SOURCE_ITEMS, POSE_MODEL_ITEMS, TARGET_ITEMS

TIMER_S = 0.1
LIVE_TIMER_S = 1 / 60  # the Live timer: the newest pose reaches the viewport at up to 60 Hz
_SETTING_NAMES = ("video", "frame_start", "frame_end", "target", "use_root_motion", "smoothing",
                  "pose_model")


def _set_or_panel(op, context, names: dict) -> dict:
    """operator property -> its value if it was set on the operator, else the panel's
    ``names[property]`` setting (``scene.b2c``)."""
    panel = context.scene.b2c
    return {name: getattr(op, name) if op.properties.is_property_set(name)
            else getattr(panel, prop) for name, prop in names.items()}


def busy(context) -> bool:
    """An Animate job or a Live session is running."""
    wm = context.window_manager
    return any(getattr(getattr(wm, name, None), "running", False)
               for name in ("b2c_progress", "b2c_live"))


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
        reuse_landmarks=True, pose_model=values["pose_model"].lower())
    folder = preferences.user_dir() / "landmarks"
    folder.mkdir(parents=True, exist_ok=True)
    if video.is_file():
        settings = replace(settings, landmarks_path=landmarks_cache_path(
            folder, video, start, end, settings.pose_model))
    check_settings(settings)
    return settings


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
    pose_model: EnumProperty(name="Tracker", items=POSE_MODEL_ITEMS, default='HEAVY',
                             description="BlazePose model that tracks the video")
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
        return not busy(context)

    def _values(self, context) -> dict:
        return _set_or_panel(self, context, {name: name for name in _SETTING_NAMES})

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


class LiveRun:
    """The main-thread side of a Live session: the armature it drives and the frames it records.

    ``apply(frames)`` poses the armature with the newest frame (keeping all of them when
    recording); ``finish(context)`` gives the armature its action back, then, when recording,
    replaces it with the recorded keys (``scene.write_action``, Blender frame 1 = the first
    live frame) and sets the scene's frame rate and range. While Live runs the armature has
    no action, so the pose set here is what the viewport shows.
    """

    def __init__(self, context, session, target_name: str | None, name: str, record: bool):
        rig = session.retarget.rig
        if target_name is None:
            obj = scene.build_armature(context, name, rig)
        else:
            obj = bpy.data.objects[target_name]
            scene.check_target(obj, rig)
        self.session, self.record, self.name = session, record, obj.name
        data = obj.animation_data
        self._old = (data.action, getattr(data, "action_slot", None)) if data else (None, None)
        if data is not None and data.action is not None:
            data.action = None
        self.recorded: list = []
        self.frames, self.latency_ms = 0, 0.0

    @property
    def obj(self):
        return bpy.data.objects.get(self.name)

    def apply(self, frames: list) -> bool:
        """Pose with the newest of ``frames``; False when the armature was deleted."""
        obj = self.obj
        if obj is None:
            return False
        if not frames:
            return True
        if self.record:
            self.recorded.extend(frames)
        last = frames[-1]
        names = self.session.retarget.rig.bone_names
        scene.set_pose([obj.pose.bones[n] for n in names], last.local_quats, last.root_location)
        self.frames += len(frames)
        self.latency_ms = last.latency_ms
        return True

    def finish(self, context) -> str:
        """Restore or replace the armature's action; returns the message for the user."""
        from .live import stack_animation

        obj = self.obj
        if obj is None:
            return f"the armature {self.name} was deleted during Live"
        action, slot = self._old
        if action is not None:
            obj.animation_data.action = action
            if slot is not None and hasattr(obj.animation_data, "action_slot"):
                obj.animation_data.action_slot = slot
        if not (self.record and self.recorded):
            return f"Blaze2Cap Live: {self.frames} frames on {obj.name}"
        retarget = self.session.retarget
        animation = stack_animation(self.recorded, retarget.placement, retarget.rig)
        scene.write_action(obj, animation, 1, obj.name)
        sc = context.scene
        scene.set_scene_timing(sc, self.session.fps, 1, len(self.recorded))
        sc.frame_set(1)
        return f"Blaze2Cap Live: recorded {len(self.recorded)} frames on {obj.name}"


class B2C_OT_live(bpy.types.Operator):
    """Drive an armature live from a webcam or the panel's video played as a live source
    (Esc or Stop ends it; with Record Keys the frames are keyed)"""

    bl_idname = "b2c.live"
    bl_label = "Start Live"
    bl_options = {'REGISTER', 'UNDO'}

    source: EnumProperty(name="Source", items=LIVE_SOURCE_ITEMS, default='CAMERA',
                         description="What drives the armature (default: the panel's)")
    camera: IntProperty(name="Camera", min=0, default=0, description="Webcam index")
    video: StringProperty(name="Video", subtype='FILE_PATH', default="",
                          description="Video file (default: the panel's)")
    target: EnumProperty(name="Target", items=TARGET_ITEMS, default='NEW',
                         description="Armature that Live drives")
    use_record: BoolProperty(name="Record Keys", default=False,
                             description="Key every live frame when Live stops")
    use_realtime: BoolProperty(name="Real Time", default=True, options={'HIDDEN'},
                               description="Play a video at its frame rate (off: as fast "
                                           "as possible)")
    max_frames: IntProperty(name="Max Frames", min=0, default=0, options={'HIDDEN'},
                            description="Stop after this many frames (0 = no limit)")
    checkpoint: StringProperty(name="Checkpoint", subtype='FILE_PATH', default="",
                               options={'HIDDEN', 'SKIP_SAVE'},
                               description="Engine weights (default: the add-on preferences')")

    _session = None
    _run = None
    _timer = None

    @classmethod
    def poll(cls, context):
        return not busy(context)

    def _values(self, context) -> dict:
        return _set_or_panel(self, context, {
            "source": "live_source", "camera": "live_camera", "video": "video",
            "target": "target", "use_record": "use_live_record"})

    def _prepare(self, context) -> bool:
        from .live import LiveSession, LiveSettings

        v = self._values(context)
        try:
            weights = (Path(bpy.path.abspath(self.checkpoint)) if self.checkpoint.strip()
                       else preferences.checkpoint(context))
            video = None
            if v["source"] == 'VIDEO':
                if not v["video"].strip():
                    raise Blaze2CapError("choose a video file first")
                video = Path(bpy.path.abspath(v["video"]))
            settings = LiveSettings(video=video, camera=None if video else v["camera"],
                                    checkpoint=weights, realtime=self.use_realtime,
                                    max_frames=self.max_frames or None)
            target = target_armature(context, v["target"])
            session = LiveSession(settings)
            name = f"{video.stem} Live" if video else f"Camera {v['camera']} Live"
            self._run = LiveRun(context, session, target.name if target else None, name,
                                v["use_record"])
        except Blaze2CapError as err:
            self.report({'ERROR'}, str(err))
            return False
        self._session = session
        return True

    def _end(self, context) -> set:
        message = self._run.finish(context)
        error = self._session.error
        self.report({'ERROR'} if error else {'INFO'}, error or message)
        return {'CANCELLED'} if error and not self._run.recorded else {'FINISHED'}

    def execute(self, context):
        """Run the whole source now (headless scripts, tests): a camera needs Max Frames."""
        if not self._prepare(context):
            return {'CANCELLED'}
        try:
            for frame in self._session.frames():
                if not self._run.apply([frame]):
                    break
        except Blaze2CapError as err:
            self._session.error = str(err)
        return self._end(context)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:  # no event loop: run now
            return self.execute(context)
        if not self._prepare(context):
            return {'CANCELLED'}
        wm = context.window_manager
        live = wm.b2c_live
        live.running, live.stop_requested, live.frames = True, False, 0
        live.message = "Starting"
        self._timer = wm.event_timer_add(LIVE_TIMER_S, window=context.window)
        wm.modal_handler_add(self)
        self._session.start()
        return {'RUNNING_MODAL'}

    def modal(self, context, event):
        live = context.window_manager.b2c_live
        if event.type == 'ESC' and event.value == 'PRESS':
            live.stop_requested = True
            return {'RUNNING_MODAL'}
        if event.type != 'TIMER':
            return {'PASS_THROUGH'}
        frames = self._session.poll()
        alive = self._run.apply(frames)
        live.frames, live.latency_ms = self._run.frames, self._run.latency_ms
        live.message = "Recording" if self._run.record else "Live"
        for area in context.screen.areas if context.screen else ():
            if area.type in {'VIEW_3D', 'PROPERTIES'}:
                area.tag_redraw()
        if alive and not live.stop_requested and (self._session.running or frames):
            return {'PASS_THROUGH'}
        self._session.stop()
        self._run.apply(self._session.poll())  # the last frames made while stopping
        self._cleanup(context)
        return self._end(context)

    def cancel(self, context):
        """Blender ends the modal operator (e.g. a file is loaded): stop the worker."""
        if self._session is not None:
            self._session.stop()
        self._cleanup(context)

    def _cleanup(self, context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.b2c_live.running = False
        wm.b2c_live.stop_requested = False


class B2C_OT_live_stop(bpy.types.Operator):
    """Stop the running Live session (recorded keys are written)"""

    bl_idname = "b2c.live_stop"
    bl_label = "Stop Live"

    @classmethod
    def poll(cls, context):
        live = getattr(context.window_manager, "b2c_live", None)
        return live is not None and live.running

    def execute(self, context):
        context.window_manager.b2c_live.stop_requested = True
        return {'FINISHED'}


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
