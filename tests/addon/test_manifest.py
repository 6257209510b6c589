"""The extension manifest passes Blender's validator and matches the build script's pins; our
own wheel is complete and reproducible."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import engine

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def build_script():
    spec = importlib.util.spec_from_file_location("build_extension",
                                                  REPO / "scripts" / "build_extension.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_manifest_passes_blenders_validator(build_script, tmp_path):
    pytest.importorskip("bpy")
    shutil.copy(REPO / "blender_manifest.toml", tmp_path)
    shutil.copy(REPO / "blaze2cap_addon" / "__init__.py", tmp_path)
    proc = subprocess.run([sys.executable, str(build_script.blender_ext_script()), "validate",
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = (tmp_path / "blender_manifest.toml").read_text().replace('id = "blaze2cap"', 'id = "2x"')
    (tmp_path / "blender_manifest.toml").write_text(broken)
    assert subprocess.run([sys.executable, str(build_script.blender_ext_script()), "validate",
                           str(tmp_path)], capture_output=True).returncode != 0


def test_manifest_matches_the_pins(build_script):
    with open(REPO / "blender_manifest.toml", "rb") as fh:
        manifest = tomllib.load(fh)
    assert manifest["id"] == "blaze2cap" and manifest["version"] == engine.__version__
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert (manifest["blender_version_min"], manifest["blender_version_max"]) == ("4.2.0", "5.1.0")
    assert set(manifest["permissions"]) == {"files"}
    wheels = [Path(w).name for w in manifest["wheels"]]
    pins = build_script.pinned_versions()
    pins[build_script.OWN_WHEEL_NAME] = engine.__version__
    for w in wheels:
        assert pins.get(build_script._dist_name(w)) == w.split("-")[1], w
    assert {build_script._dist_name(w) for w in wheels} == set(pins)  # no torch, no numpy
    for platform in ("manylinux", "win_amd64", "macosx"):
        assert any(w.startswith("mediapipe-") and platform in w for w in wheels)


def test_own_wheel_is_complete_and_reproducible(build_script, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    wheel = build_script.build_own_wheel(a)
    assert wheel.read_bytes() == build_script.build_own_wheel(b).read_bytes()
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        record = zf.read(f"{build_script.OWN_WHEEL_NAME}-{engine.__version__}.dist-info/RECORD").decode()
    assert "engine/retarget.py" in names and "capture/blazepose.py" in names
    assert "capture/samples.py" not in names  # runs pip: never in the extension
    assert not any(n.startswith(("training/", "blaze2cap_addon/", "tests/")) for n in names)
    assert len(record.splitlines()) == len(names)
