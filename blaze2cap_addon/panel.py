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
        col.enabled = not progress.running
        col.prop(settings, "video")
        row = col.row(align=True)
        row.prop(settings, "frame_start")
        row.prop(settings, "frame_end")
        col.prop(settings, "target")
        col.prop(settings, "use_root_motion")
        col.prop(settings, "smoothing")

        if progress.running:
            layout.progress(factor=progress.fraction, type='BAR',
                            text=f"{progress.message} ({100 * progress.fraction:.0f}%)")
            layout.label(text="Press Esc to cancel", icon='INFO')
        else:
            layout.operator("b2c.animate_from_video", icon='ARMATURE_DATA')

        box = layout.box()
        box.label(text="Export")
        row = box.row(align=True)
        row.enabled = scene.is_blaze2cap_armature(context.object) and not progress.running
        row.operator("b2c.export_bvh", text="BVH")
        row.operator("b2c.export_fbx", text="FBX")
