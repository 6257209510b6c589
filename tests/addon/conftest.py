"""Fixtures for the add-on tests: the real ``bpy`` module, in-process (kept few and fast)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from engine import retarget as rt
from engine import rotations as rot

if importlib.util.find_spec("bpy") is None:  # the add-on cannot even be imported
    collect_ignore_glob = ["test_*.py"]
    bpy = None
else:
    import bpy


@pytest.fixture(scope="session")
def addon():
    """The add-on registered for the whole session (registers and unregisters cleanly)."""
    import blaze2cap_addon

    blaze2cap_addon.register()
    yield blaze2cap_addon
    blaze2cap_addon.unregister()


@pytest.fixture
def context(addon):
    """A factory-fresh empty scene."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context


@pytest.fixture
def make_result():
    """Factory of synthetic AnimateResults: ``make_result(frames=12, seed=0, ...)``."""
    return synthetic_result


@pytest.fixture
def read_pose():
    """``read_pose(obj, frame)`` -> (22, 4, 4) evaluated world matrices of the pose bones."""
    return pose_world


@pytest.fixture
def snapshot():
    """``snapshot()`` -> what an Animate run could change in the file."""
    return scene_snapshot


def synthetic_result(frames: int = 12, seed: int = 0, name: str = "clip", start: int = 4,
                     fps: float = 29.97, root_motion: bool = True) -> AnimateResult:
    """An AnimateResult from random (but smooth) engine-like output: camera looking down."""
    from blaze2cap_addon.job import AnimateResult

    rng = np.random.default_rng(seed)
    rest = np.broadcast_to(np.array([[-1.0, 0, 0], [0, 0, 1], [0, 1, 0]]), (frames, 21, 3, 3))
    tilt = rot.axis_angle_to_matrix(np.array([np.radians(20.0), 0, 0]))
    motion = rot.axis_angle_to_matrix(rng.normal(scale=0.4, size=(21, 3))
                                      * np.linspace(0, 1, frames)[:, None, None])
    glob = tilt @ rest @ motion
    quats = rot.matrix_to_quaternion(glob)
    trans = np.stack([np.linspace(-0.5, 0.5, frames), np.full(frames, 0.4),
                      np.linspace(4.0, 3.0, frames)], axis=1) @ tilt.T
    anim = rt.retarget(quats, trans, config=rt.RetargetConfig(root_motion=root_motion))
    return AnimateResult(name=name, animation=anim, fps=fps, start=start, frames=frames,
                         detected=frames, landmarks_path=Path("unused.npy"),
                         landmarks=np.zeros((frames, 33, 10), np.float32),
                         joints=np.zeros((frames, 21, 3), np.float32)), quats


def pose_world(obj, frame: int) -> np.ndarray:
    """(22, 4, 4) world matrices of the armature's pose bones (rig order) at ``frame``,
    read from the evaluated depsgraph."""
    scene = bpy.context.scene
    scene.frame_set(frame)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    world = np.array(evaluated.matrix_world)
    return np.stack([world @ np.array(evaluated.pose.bones[n].matrix) for n in rt.BONE_NAMES])


def scene_snapshot() -> dict:
    """What an Animate run could change."""
    scene = bpy.context.scene
    return {"objects": sorted(o.name for o in bpy.data.objects),
            "actions": sorted(a.name for a in bpy.data.actions),
            "armatures": sorted(a.name for a in bpy.data.armatures),
            "frames": (scene.frame_start, scene.frame_end, scene.render.fps)}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random MotionTransformer exported as safetensors (stands in for trained
    weights: the tests check the plumbing, not the motion)."""
    import torch

    from engine.checkpoint import export_weights
    from engine.model import ModelConfig, MotionTransformer

    torch.manual_seed(0)
    model = MotionTransformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64,
                                          window=16, dropout=0.0)).eval()
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    export_weights(model, path)
    return path


class LayoutRecorder:
    """Stands in for a UILayout (no window in the bpy module): records what the panel draws."""

    def __init__(self, calls: list):
        self.calls = calls

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return LayoutRecorder(self.calls)
        return call


@pytest.fixture
def draw_recorded():
    """``draw_recorded(PanelClass, context)`` -> the (name, args, kwargs) calls its draw()
    makes on the layout."""
    def draw(panel_cls, context) -> list:
        calls: list = []
        panel = type("FakePanel", (), {"layout": LayoutRecorder(calls)})()
        panel_cls.draw(panel, context)
        return calls
    return draw
