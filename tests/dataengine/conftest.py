"""Data-engine fixtures: one tiny real run (Anny + bpy Workbench + BlazePose), made once per
session. Tests that use it skip when the optional ``anny`` is not installed
(``make synth-install``); the plain-function tests run without it."""
from __future__ import annotations

from pathlib import Path

import pytest

FRAMES = 6
SIZE = 256


@pytest.fixture(scope="session")
def synth_cfg(totalcapture_dir: Path):
    pytest.importorskip("anny", reason="the data engine needs anny: make synth-install")
    from dataengine.cameras import ViewConfig
    from dataengine.engine import SynthConfig

    return SynthConfig(totalcapture=totalcapture_dir, seed=7, frames_per_clip=FRAMES,
                       view=ViewConfig(size=SIZE), sequences=("S1_walking1", "S2_acting2"))


@pytest.fixture(scope="session")
def synth_run(synth_cfg, tmp_path_factory) -> Path:
    """A finished run of one clip (in-process, one worker)."""
    from dataengine.engine import generate

    out = tmp_path_factory.mktemp("synth_a")
    summary = generate(synth_cfg, out, clips=1, workers=1)
    assert summary["made"] == 1
    return out


@pytest.fixture(scope="session")
def maker(synth_cfg, synth_run):
    """The run's in-process ClipMaker (Anny and Blender already loaded)."""
    from dataengine import engine as E

    if E._MAKER is not None and E._MAKER[0].cfg == synth_cfg:
        return E._MAKER[0]
    return E.ClipMaker(synth_cfg)
