"""Headless ``bpy`` Workbench scene of one Anny body: clothing, colours, camera, light, clutter.

The only module of the data engine that imports ``bpy`` (lazily, in :class:`Renderer`), so the
plain functions here (clothing regions, colour sampling, BMP reading, camera conversion) are
tested without Blender. Blender's world equals the Anny world (z up, metres).

Speed: Workbench, no anti-aliasing by default (on software OpenGL, FXAA triples the cost of a
640x360 frame: 0.28 s against 0.09 s of CPU), no shadows, studio lighting. Frames go to an
uncompressed BMP in a private temporary folder and are read
back with NumPy. On a machine with a GPU, Blender's headless GPU context (EGL) is used
automatically; :func:`gpu_info` reports which renderer Blender picked.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.skeleton import JOINT_INDEX

log = logging.getLogger(__name__)

# Material slots of the body mesh.
SKIN, SHIRT, TROUSERS, SHOES, HAIR = range(5)
REGION_NAMES = ("skin", "shirt", "trousers", "shoes", "hair")

#: Skin tones (sRGB 0..1), light to dark.
SKIN_TONES = np.array([
    (0.96, 0.80, 0.69), (0.92, 0.73, 0.60), (0.85, 0.65, 0.52), (0.78, 0.57, 0.43),
    (0.67, 0.47, 0.34), (0.55, 0.38, 0.26), (0.44, 0.29, 0.20), (0.33, 0.22, 0.16),
])


@dataclass(frozen=True)
class Look:
    """Everything about a clip's appearance (colours sRGB 0..1)."""

    skin: tuple[float, float, float]
    shirt: tuple[float, float, float]
    trousers: tuple[float, float, float]
    shoes: tuple[float, float, float]
    hair: tuple[float, float, float]
    long_sleeves: bool
    long_trousers: bool
    has_hair: bool
    background: tuple[float, float, float]
    floor: tuple[float, float, float]
    studio_light: int              # index into the sorted studio lights Blender ships
    light_rotation: float          # radians about z
    boxes: tuple[tuple[float, ...], ...]   # clutter: (x, y, w, d, h, r, g, b) each, Anny world

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Look":
        return Look(**{k: tuple(tuple(b) for b in v) if k == "boxes" else
                       (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]):
    return tuple(round(float(c), 4) for c in _hsv(rng.random(), rng.uniform(*sat), rng.uniform(*val)))


def sample_look(rng: np.random.Generator, area_min: np.ndarray, area_max: np.ndarray) -> Look:
    """A random appearance. ``area_min/max`` (2,): the x, y extent of the clip's motion (Anny
    world); clutter boxes stay at least 1 m outside it."""
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.05)
    boxes = []
    for _ in range(int(rng.integers(0, 5))):
        for _attempt in range(20):
            x, y = rng.uniform(area_min - 5.0, area_max + 5.0)
            if not ((area_min[0] - 1 < x < area_max[0] + 1) and (area_min[1] - 1 < y < area_max[1] + 1)):
                break
        else:
            continue
        w, d, h = rng.uniform(0.3, 2.0), rng.uniform(0.3, 2.0), rng.uniform(0.3, 2.2)
        rgb = _colour(rng, (0, 0.8), (0.15, 0.95))
        boxes.append(tuple(round(float(v), 4) for v in (x, y, w, d, h, *rgb)))
    return Look(
        skin=tuple(round(float(c), 4) for c in np.clip(skin, 0, 1)),
        shirt=_colour(rng, (0.0, 0.9), (0.1, 0.95)),
        trousers=_colour(rng, (0.0, 0.7), (0.08, 0.8)),
        shoes=_colour(rng, (0.0, 0.5), (0.05, 0.9)),
        hair=_colour(rng, (0.2, 0.7), (0.03, 0.5)),
        long_sleeves=bool(rng.random() < 0.5), long_trousers=bool(rng.random() < 0.75),
        has_hair=bool(rng.random() < 0.8),
        background=_colour(rng, (0.0, 0.6), (0.3, 0.95)),
        floor=_colour(rng, (0.0, 0.5), (0.2, 0.85)),
        studio_light=int(rng.integers(0, 1000)),
        light_rotation=round(float(rng.uniform(-np.pi, np.pi)), 4),
        boxes=tuple(boxes))


def clothing_regions(face_joint: np.ndarray, head_local: np.ndarray, look: Look) -> np.ndarray:
    """(T,) material slot of every face.

    face_joint (T,) the TC joint whose group owns each face's dominant bone; head_local
    (T, 3) face centroids in the Head joint's TC frame (x right, y back, z down; metres), for
    hair on top and at the back of the head.
    """
    j = JOINT_INDEX
    region = np.full(face_joint.shape, SKIN, dtype=np.int64)
    shirt = ["Spine", "Spine1", "Spine2", "Spine3", "RightShoulder", "LeftShoulder", "RightArm",
             "LeftArm"]
    if look.long_sleeves:
        shirt += ["RightForeArm", "LeftForeArm"]
    trousers = ["Hips", "RightUpLeg", "LeftUpLeg"]
    if look.long_trousers:
        trousers += ["RightLeg", "LeftLeg"]
    region[np.isin(face_joint, [j[n] for n in shirt])] = SHIRT
    region[np.isin(face_joint, [j[n] for n in trousers])] = TROUSERS
    region[np.isin(face_joint, [j["RightFoot"], j["LeftFoot"]])] = SHOES
    if look.has_hair:
        on_head = face_joint == j["Head"]
        top = head_local[:, 2] < -0.09
        back = (head_local[:, 1] > 0.03) & (head_local[:, 2] < -0.03)
        region[on_head & (top | back)] = HAIR
    return region


def srgb_to_linear(c) -> tuple[float, ...]:
    c = np.asarray(c, dtype=np.float64)
    return tuple(np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).tolist())


def read_bmp(path: Path) -> np.ndarray:
    """An uncompressed 24/32-bit BMP -> (H, W, 3) uint8 RGB, top row first."""
    data = np.fromfile(path, dtype=np.uint8)
    off = int(data[10:14].view("<u4")[0])
    w = int(data[18:22].view("<i4")[0])
    h = int(data[22:26].view("<i4")[0])
    bpp = int(data[28:30].view("<u2")[0])
    if bpp not in (24, 32) or int(data[30:34].view("<u4")[0]) not in (0, 3):
        raise ValueError(f"{path}: unsupported BMP ({bpp} bits per pixel or compressed)")
    ch = bpp // 8
    stride = (w * ch + 3) // 4 * 4
    rows = data[off:off + stride * abs(h)].reshape(abs(h), stride)[:, :w * ch].reshape(abs(h), w, ch)
    img = rows[:, :, [2, 1, 0]]
    return np.ascontiguousarray(img[::-1] if h > 0 else img)


def blender_camera_matrix(R_wc: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(4, 4) Blender camera matrix_world for an OpenCV camera ``X_c = R_wc X + t``
    (x right, y down, z forward; Blender's camera looks down its -z with y up)."""
    m = np.eye(4)
    m[:3, :3] = R_wc.T @ np.diag([1.0, -1.0, -1.0])
    m[:3, 3] = -R_wc.T @ t
    return m


def gpu_info() -> str:
    """The GPU backend Blender uses for Workbench (vendor / renderer), for the run record."""
    import gpu

    try:
        return f"{gpu.platform.vendor_get()} / {gpu.platform.renderer_get()}"
    except (RuntimeError, AttributeError) as err:  # no context yet: say so, do not guess
        return f"unknown ({err})"


class Renderer:
    """One Workbench scene in this process (bpy holds a single global scene)."""

    def __init__(self, faces: np.ndarray, n_vertices: int, antialiasing: str = "OFF"):
        import bpy

        self.bpy = bpy
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        self.scene = scene
        scene.render.engine = "BLENDER_WORKBENCH"
        scene.display.render_aa = antialiasing  # "OFF" is 3x faster than "FXAA" on llvmpipe
        sh = scene.display.shading
        sh.light = "STUDIO"
        sh.color_type = "MATERIAL"
        sh.show_shadows = False
        sh.show_cavity = False
        scene.view_settings.view_transform = "Standard"
        scene.render.image_settings.file_format = "BMP"
        scene.render.image_settings.color_mode = "RGB"
        scene.render.resolution_percentage = 100
        scene.render.film_transparent = False
        scene.world = bpy.data.worlds.new("b2c_world")
        self.studio_lights = sorted(sl.name for sl in bpy.context.preferences.studio_lights
                                    if sl.type == "STUDIO")
        self._tmp = tempfile.TemporaryDirectory(prefix="b2c_render_")
        self.frame_path = Path(self._tmp.name) / "frame.bmp"

        mesh = bpy.data.meshes.new("b2c_body")
        mesh.vertices.add(n_vertices)
        mesh.loops.add(faces.size)
        mesh.polygons.add(len(faces))
        mesh.loops.foreach_set("vertex_index", faces.reshape(-1).astype(np.int32))
        mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
        mesh.polygons.foreach_set("loop_total", np.full(len(faces), 3, dtype=np.int32))
        mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), dtype=bool))
        mesh.update()
        self.mesh = mesh
        self.materials = []
        for name in REGION_NAMES:
            mat = bpy.data.materials.new(f"b2c_{name}")
            mesh.materials.append(mat)
            self.materials.append(mat)
        self.body = bpy.data.objects.new("b2c_body", mesh)
        scene.collection.objects.link(self.body)

        cam = bpy.data.cameras.new("b2c_cam")
        cam.sensor_fit = "AUTO"
        cam.sensor_width = 36.0
        cam.clip_start, cam.clip_end = 0.05, 200.0
        self.camera = bpy.data.objects.new("b2c_cam", cam)
        scene.collection.objects.link(self.camera)
        scene.camera = self.camera
        self.floor_mat = bpy.data.materials.new("b2c_floor")
        self.floor = self._box("b2c_floor", self.floor_mat)
        self.boxes: list = []

    def _box(self, name: str, mat):
        bpy = self.bpy
        mesh = bpy.data.meshes.new(name)
        v = np.array([[x, y, z] for z in (0, 1) for y in (-0.5, 0.5) for x in (-0.5, 0.5)])
        f = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]
        mesh.from_pydata(v.tolist(), [], f)
        mesh.materials.append(mat)
        obj = bpy.data.objects.new(name, mesh)
        self.scene.collection.objects.link(obj)
        return obj

    def set_look(self, look: Look, regions: np.ndarray, floor_z: float,
                 centre: np.ndarray) -> None:
        """Colours, clothing regions (T,), floor height, light and clutter boxes."""
        for mat, c in zip(self.materials, (look.skin, look.shirt, look.trousers, look.shoes, look.hair)):
            mat.diffuse_color = (*srgb_to_linear(c), 1.0)
        self.mesh.polygons.foreach_set("material_index", regions.astype(np.int32))
        self.scene.world.color = srgb_to_linear(look.background)
        self.floor_mat.diffuse_color = (*srgb_to_linear(look.floor), 1.0)
        self.floor.location = (float(centre[0]), float(centre[1]), floor_z - 0.05)
        self.floor.scale = (60.0, 60.0, 0.05)
        sh = self.scene.display.shading
        if self.studio_lights:
            sh.studio_light = self.studio_lights[look.studio_light % len(self.studio_lights)]
        sh.studiolight_rotate_z = look.light_rotation
        for obj in self.boxes:
            mat = obj.data.materials[0]
            self.bpy.data.objects.remove(obj)
            self.bpy.data.materials.remove(mat)
        self.boxes = []
        for i, (x, y, w, d, h, r, g, b) in enumerate(look.boxes):
            mat = self.bpy.data.materials.new(f"b2c_box{i}")
            mat.diffuse_color = (*srgb_to_linear((r, g, b)), 1.0)
            obj = self._box(f"b2c_box{i}", mat)
            obj.location = (x, y, floor_z)
            obj.scale = (w, d, h)
            self.boxes.append(obj)

    def set_camera(self, R_wc: np.ndarray, t: np.ndarray, fx: float, cx: float, cy: float,
                   width: int, height: int) -> None:
        """OpenCV pinhole camera (square pixels, pixels with centres at +0.5) in Anny world."""
        r = self.scene.render
        r.resolution_x, r.resolution_y = int(width), int(height)
        cam = self.camera.data
        side = max(width, height)
        cam.lens = fx * cam.sensor_width / side
        cam.shift_x = (width / 2 - cx) / side
        cam.shift_y = (cy - height / 2) / side
        from mathutils import Matrix

        self.camera.matrix_world = Matrix(blender_camera_matrix(R_wc, t).tolist())

    def render(self, vertices: np.ndarray) -> np.ndarray:
        """(V, 3) Anny-world vertices -> (H, W, 3) uint8 RGB frame."""
        co = np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1)
        self.mesh.vertices.foreach_set("co", co)
        self.mesh.update()
        self.bpy.ops.render.render()  # write_still would log a "Saved:" line per frame
        self.bpy.data.images["Render Result"].save_render(str(self.frame_path), scene=self.scene)
        return read_bmp(self.frame_path)

    def close(self) -> None:
        self._tmp.cleanup()
