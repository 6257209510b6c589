"""``blaze2cap animate``: the headless command, in-process, on a short real video."""
from __future__ import annotations

import pytest

from training.cli import main

bpy = pytest.importorskip("bpy")


def test_animate_writes_blend_bvh_fbx_and_preview(sports2d_video, tiny_checkpoint, tmp_path,
                                                  capsys):
    out = {k: tmp_path / f"clip.{k}" for k in ("blend", "bvh", "fbx")}
    preview = tmp_path / "clip.mp4"
    code = main(["animate", str(sports2d_video), "--start", "3", "--end", "15",
                 "--checkpoint", str(tiny_checkpoint), "--smoothing", "1",
                 "--blend", str(out["blend"]), "--bvh", str(out["bvh"]),
                 "--fbx", str(out["fbx"]), "--preview", str(preview)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "12 frames" in printed and "Blender frames 4-15" in printed
    assert all(p.stat().st_size > 1000 for p in [*out.values(), preview])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["clip.blend", "clip.bvh", "clip.fbx", "clip.mp4"])  # no temporary files left
    assert "Frames: 12" in out["bvh"].read_text()
    bpy.ops.wm.open_mainfile(filepath=str(out["blend"]))
    obj = bpy.data.objects[sports2d_video.stem]
    assert len(obj.data.bones) == 22 and bpy.context.scene.frame_end == 15


def test_animate_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert main(["animate", str(tmp_path / "missing.mp4"), "--checkpoint", __file__]) == 2
    assert capsys.readouterr().err.strip().endswith(f"video not found: {tmp_path / 'missing.mp4'}")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not a video")
    assert main(["animate", str(video), "--bvh", str(tmp_path / "x.fbx")]) == 2
    assert "must name a .bvh file" in capsys.readouterr().err
    import engine.inference

    monkeypatch.setattr(engine.inference, "DEFAULT_WEIGHTS", tmp_path / "default.safetensors")
    assert main(["animate", str(video)]) == 2
    err = capsys.readouterr().err.strip()
    assert "the shipped weights are missing" in err and len(err.splitlines()) == 1
