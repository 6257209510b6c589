"""The built extension installs through Blender's own extension operators into an empty user
folder and animates a video with only its bundled wheels (no torch: the NumPy backend).

Slow (builds a ~100 MB zip and runs BlazePose in a subprocess): marked ``slow``; skipped
unless the wheel cache of ``scripts/build_extension.py`` or a built dist/ zip exists.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
bpy = pytest.importorskip("bpy")

REPO = Path(__file__).resolve().parents[2]
LINUX_ZIP_LIMIT = 150 * 2**20

# Runs in a subprocess that sees only the bpy and numpy packages (python -S, a folder of
# links): every other import must come from the installed extension.
SCRIPT = r'''
import json, sys
import bpy
zip_path, video, weights, bvh = sys.argv[1:5]
out = {"install": sorted(bpy.ops.extensions.package_install_files(
    filepath=zip_path, repo="user_default", enable_on_install=True))}
import addon_utils
out["enabled"] = [m.__name__ for m in addon_utils.modules()
                  if m.__name__.endswith("blaze2cap") and addon_utils.check(m.__name__)[1]]
out["animate"] = sorted(bpy.ops.b2c.animate_from_video(
    "EXEC_DEFAULT", video=video, frame_start=0, frame_end=8, checkpoint=weights))
obj = bpy.context.object
out["bones"] = len(obj.data.bones)
out["frames"] = [bpy.context.scene.frame_start, bpy.context.scene.frame_end]
out["export"] = sorted(bpy.ops.b2c.export_bvh("EXEC_DEFAULT", filepath=bvh))
import cv2, engine, mediapipe
from capture import models
out["modules"] = {m.__name__: m.__file__ for m in (cv2, engine, mediapipe)}
out["heavy"] = [str(models.model_path("heavy")), models.pose_model_installed("heavy"),
                models.bundled_path("heavy").is_file()]
out["torch"] = "torch" in sys.modules
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("the extension test runs on Linux x86-64")
    cache = Path(os.environ.get("BLAZE2CAP_WHEEL_CACHE",
                                Path.home() / ".cache" / "blaze2cap" / "wheels")) / "linux-x64"
    if cache.is_dir() and any(cache.glob("mediapipe-*.whl")):
        dist = tmp_path_factory.mktemp("dist")
        subprocess.run([sys.executable, str(REPO / "scripts" / "build_extension.py"),
                        "--platform", "linux-x64", "--offline", "--dist", str(dist),
                        "--build-dir", str(tmp_path_factory.mktemp("build"))],
                       check=True, cwd=REPO, capture_output=True)
    else:
        dist = REPO / "dist"
    found = sorted(dist.glob("blaze2cap-*-linux_x64.zip"))
    if not found:
        pytest.skip("no wheel cache and no dist/ zip: run 'make extension' first")
    return found[-1]


def test_extension_installs_and_animates(extension_zip, sports2d_video, tiny_checkpoint,
                                         tmp_path):
    assert extension_zip.stat().st_size < LINUX_ZIP_LIMIT
    import numpy

    site = Path(numpy.__file__).resolve().parents[1]  # where the bpy module is installed too
    shim = tmp_path / "shim"
    shim.mkdir()
    for name in ("bpy", "numpy", "numpy.libs"):
        if (site / name).exists():
            (shim / name).symlink_to(site / name)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    bvh = tmp_path / "out.bvh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "user")
    boot = (f"import sys; sys.path.insert(0, {str(shim)!r}); sys.argv = sys.argv[1:]; "
            f"exec(open(sys.argv[0]).read())")
    proc = subprocess.run(
        [sys.executable, "-S", "-c", boot, str(script), str(extension_zip), str(sports2d_video),
         str(tiny_checkpoint), str(bvh)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["install"] == ["FINISHED"] and out["enabled"] == ["bl_ext.user_default.blaze2cap"]
    assert out["animate"] == ["FINISHED"] and out["bones"] == 22 and out["frames"] == [1, 8]
    assert out["export"] == ["FINISHED"] and "Frames: 8" in bvh.read_text()
    user = str(tmp_path / "user")
    assert all(path.startswith(user) for path in out["modules"].values()), out["modules"]
    # Animate tracked with BlazePose heavy: the extension's bundled copy, put in place offline
    heavy_path, installed, bundled = out["heavy"]
    assert heavy_path.startswith(user) and installed and bundled
    assert not out["torch"]
