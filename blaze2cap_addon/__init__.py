"""Blaze2Cap: track a person in a video and animate an armature with the motion.

UI glue only: the panel, the operators and the preferences. The work is in ``engine`` (the
network and the retarget geometry, plain NumPy) and ``capture`` (BlazePose), bundled with the
extension as a wheel; ``job`` runs them off the main thread and ``scene`` writes the result.
"""
from __future__ import annotations

import bpy
from bpy.props import PointerProperty

from .operators import (B2C_OT_animate_from_video, B2C_OT_export_bvh, B2C_OT_export_fbx,
                        B2C_OT_live, B2C_OT_live_stop)
from .panel import B2C_PT_main
from .preferences import B2C_AddonPreferences
from .properties import B2C_LiveState, B2C_Progress, B2C_Settings

classes = (
    B2C_AddonPreferences,
    B2C_Settings,
    B2C_Progress,
    B2C_LiveState,
    B2C_OT_animate_from_video,
    B2C_OT_export_bvh,
    B2C_OT_export_fbx,
    B2C_OT_live,
    B2C_OT_live_stop,
    B2C_PT_main,
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.b2c = PointerProperty(type=B2C_Settings)
    bpy.types.WindowManager.b2c_progress = PointerProperty(type=B2C_Progress)
    bpy.types.WindowManager.b2c_live = PointerProperty(type=B2C_LiveState)


def unregister():
    del bpy.types.WindowManager.b2c_live
    del bpy.types.WindowManager.b2c_progress
    del bpy.types.Scene.b2c
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
