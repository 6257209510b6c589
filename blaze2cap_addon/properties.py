"""Settings of the Blaze2Cap panel (saved with the scene) and the run's progress (window
manager: never saved, never undone)."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

TARGET_ITEMS = (
    ('NEW', "New Armature", "Build a new armature named after the video"),
    ('SELECTED', "Selected Armature",
     "Replace the animation of the selected Blaze2Cap armature"),
)


POSE_MODEL_ITEMS = (
    ('HEAVY', "Heavy", "BlazePose heavy: the model the engine was trained on, more accurate, "
                       "about half the speed of Full"),
    ('FULL', "Full", "BlazePose full: about twice as fast, less accurate (Live always uses it)"),
)


LIVE_SOURCE_ITEMS = (
    ('CAMERA', "Camera", "A webcam"),
    ('VIDEO', "Video", "The video file above, played as a live source at its frame rate"),
)


class B2C_Settings(bpy.types.PropertyGroup):
    """What the Animate button does."""

    video: StringProperty(name="Video", description="Video file of one person moving",
                          subtype='FILE_PATH', default="")
    frame_start: IntProperty(name="Start", description="First video frame (0 = the first)",
                             min=0, default=0)
    frame_end: IntProperty(name="End",
                           description="Video frame after the last one (0 = to the end)",
                           min=0, default=0)
    target: EnumProperty(name="Target", description="Armature that receives the animation",
                         items=TARGET_ITEMS, default='NEW')
    use_root_motion: BoolProperty(
        name="Root Motion", default=True,
        description="Move the Root bone along the person's path (off: the hips stay above "
                    "the origin, height is kept)")
    smoothing: FloatProperty(name="Smoothing", min=0.0, soft_max=5.0, default=0.0,
                             description="Gaussian smoothing of the keys, in frames (0 = off)")
    pose_model: EnumProperty(name="Tracker", description="BlazePose model that tracks the video",
                             items=POSE_MODEL_ITEMS, default='HEAVY')
    live_source: EnumProperty(name="Source", description="What drives the armature live",
                              items=LIVE_SOURCE_ITEMS, default='CAMERA')
    live_camera: IntProperty(name="Camera", description="Webcam index (0 = the first)",
                             min=0, default=0)
    use_live_record: BoolProperty(
        name="Record Keys", default=False,
        description="Key every live frame; the keys are written when Live stops")


class B2C_LiveState(bpy.types.PropertyGroup):
    """State of the running Live session, drawn by the panel."""

    running: BoolProperty(default=False)
    stop_requested: BoolProperty(default=False)
    frames: IntProperty(default=0)
    latency_ms: FloatProperty(default=0.0)
    message: StringProperty(default="")


class B2C_Progress(bpy.types.PropertyGroup):
    """State of the running Animate job, drawn by the panel."""

    running: BoolProperty(default=False)
    fraction: FloatProperty(min=0.0, max=1.0, default=0.0)
    message: StringProperty(default="")
