"""Add-on preferences: which weights the engine uses."""
from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import StringProperty


class B2C_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    checkpoint_path: StringProperty(
        name="Checkpoint",
        description="Engine weights (.safetensors) to use instead of the shipped ones; "
                    "leave empty for the shipped weights",
        subtype='FILE_PATH', default="")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "checkpoint_path")
        if not self.checkpoint_path:
            layout.label(text="Using the shipped weights", icon='INFO')


def checkpoint(context) -> Path | None:
    """The custom checkpoint, or None for the shipped weights."""
    addon = context.preferences.addons.get(__package__)
    path = addon.preferences.checkpoint_path if addon is not None and addon.preferences else ""
    return Path(bpy.path.abspath(path)) if path.strip() else None


def user_dir() -> Path:
    """Folder for the add-on's own files (extracted landmarks): the extension's user folder,
    or the temporary folder when loaded as a plain add-on (tests, development)."""
    if __package__.startswith("bl_ext."):
        return Path(bpy.utils.extension_path_user(__package__, path="", create=True))
    import tempfile

    folder = Path(tempfile.gettempdir()) / "blaze2cap"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
