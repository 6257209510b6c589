"""The Blaze2Cap tab of the 3D viewport's sidebar."""
from __future__ import annotations

import bpy

from . import scene


class B2C_PT_main(bpy.types.Panel):
    bl_label = "Blaze2Cap"
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Blaze2Cap"

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = context.scene.b2c
        progress = context.window_manager.b2c_progress

        col = layout.column()
        col.enabled = not progress.running and not context.window_manager.b2c_live.running
        col.prop(settings, "video")
        row = col.row(align=True)
        row.prop(settings, "frame_start")
        row.prop(settings, "frame_end")
        col.prop(settings, "target")
        col.prop(settings, "use_root_motion")
        col.prop(settings, "smoothing")
        col.prop(settings, "pose_model")

        if progress.running:
            layout.progress(factor=progress.fraction, type='BAR',
                            text=f"{progress.message} ({100 * progress.fraction:.0f}%)")
            layout.label(text="Press Esc to cancel", icon='INFO')
        else:
            layout.operator("b2c.animate_from_video", icon='ARMATURE_DATA')

        live = context.window_manager.b2c_live
        box = layout.box()
        box.label(text="Live")
        col = box.column()
        col.enabled = not live.running and not progress.running
        col.prop(settings, "live_source")
        if settings.live_source == 'CAMERA':
            col.prop(settings, "live_camera")
        col.prop(settings, "use_live_record")
        if live.running:
            box.label(text=f"{live.message}: {live.frames} frames, {live.latency_ms:.0f} ms",
                      icon='REC' if settings.use_live_record else 'PLAY')
            box.operator("b2c.live_stop", icon='PAUSE')
        else:
            row = box.row()
            row.enabled = not progress.running
            row.operator("b2c.live", icon='PLAY')

        box = layout.box()
        box.label(text="Export")
        row = box.row(align=True)
        row.enabled = (scene.is_blaze2cap_armature(context.object) and not progress.running
                       and not live.running)
        row.operator("b2c.export_bvh", text="BVH")
        row.operator("b2c.export_fbx", text="FBX")
