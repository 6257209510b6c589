"""``blaze2cap live`` on a real video file as the live source, and the session's pacing."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from training.cli import main


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from engine.checkpoint import export_weights
    from engine.model import ModelConfig, MotionTransformer

    torch.manual_seed(0)
    model = MotionTransformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, window=16,
                                          dropout=0.0))
    with torch.no_grad():  # away from the rest pose, so poses differ from frame to frame
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    export_weights(model.eval(), path)
    return path


def test_live_video_prints_sends_and_saves_the_streaming_poses(sports2d_video, tiny_weights,
                                                              tmp_path, capsys):
    from engine.inference import Predictor

    out = tmp_path / "poses.npz"
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5.0)
    port = receiver.getsockname()[1]
    try:
        code = main(["live", "--video", str(sports2d_video), "--fast", "--max-frames", "8",
                     "--checkpoint", str(tiny_weights), "--out", str(out),
                     "--send", f"127.0.0.1:{port}"])
        messages = [json.loads(receiver.recv(65536)) for _ in range(8)]
    finally:
        receiver.close()
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    frame_lines = [line for line in lines if line.split()[0].isdigit() and " s " in line]
    assert [int(line.split()[0]) for line in frame_lines] == list(range(8))
    assert any("person" in line for line in frame_lines)
    assert any(line.startswith("8 frames (") for line in lines) and f"poses: {out}" in lines[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["poses.npz"]  # nothing left behind

    saved = np.load(out)
    assert saved["landmarks"].shape == (8, 33, 10) and saved["global_quats"].shape == (8, 21, 4)
    assert saved["valid"].any() and float(saved["fps"]) == pytest.approx(30.0)
    # The live poses are the streaming engine's: equal to batch predict on the same landmarks.
    batch = Predictor.from_checkpoint(tiny_weights).predict(
        saved["landmarks"], aspect=float(saved["aspect"]), fps=30.0)
    v = batch.valid
    np.testing.assert_array_equal(saved["valid"], v)
    np.testing.assert_allclose(saved["global_quats"][v], batch.global_quats[v], atol=1e-5)
    np.testing.assert_allclose(saved["root_translation"][v], batch.root_translation[v],
                               atol=1e-5)
    assert [m["frame"] for m in messages] == list(range(8))
    np.testing.assert_allclose([m["global_quats"] for m in messages], saved["global_quats"],
                               atol=1e-5)
    assert [m["person"] for m in messages] == saved["valid"].tolist()


def test_a_video_source_is_paced_to_its_frame_rate(sports2d_video, tiny_weights, monkeypatch):
    """BlazePose stubbed (instant): paced, 12 frames of a 30 fps video take 11/30 s or more;
    with realtime off the source never waits."""
    import capture.blazepose
    from blaze2cap_addon.live import LiveSession, LiveSettings

    row = np.zeros((33, 10), np.float32)

    class InstantTracker:
        def __init__(self, config):
            pass

        def process(self, rgb):
            return row

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(capture.blazepose, "PoseTracker", InstantTracker)
    timings, waits = {}, {}
    for realtime in (True, False):
        session = LiveSession(LiveSettings(video=sports2d_video, checkpoint=tiny_weights,
                                           realtime=realtime, max_frames=12))
        calls = []
        stop_wait = session._stop.wait
        session._stop.wait = lambda t=None, _w=stop_wait, _c=calls: (_c.append(t), _w(t))[1]
        t0 = time.perf_counter()
        frames = list(session.frames())
        timings[realtime] = time.perf_counter() - t0
        waits[realtime] = calls
        assert [f.index for f in frames] == list(range(12)) and not any(f.detected for f in frames)
    assert timings[True] >= 11 / 30          # paced: never faster than the video
    assert not waits[False]  # realtime off: the source never waits (load-independent)


def test_live_errors_are_one_line(tmp_path, capsys):
    assert main(["live", "--video", str(tmp_path / "missing.mp4")]) == 2
    assert "video not found" in capsys.readouterr().err
    assert main(["live", "--video", str(tmp_path / "x.mp4"), "--out", str(tmp_path / "x.txt")]) == 2
    assert "must name a .npz file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["live", "--camera", "0", "--video", "x.mp4"])  # one source only
    with pytest.raises(SystemExit):
        main(["live", "--video", "x.mp4", "--send", "nowhere"])
