"""``blaze2cap extract``: the real command line in-process; exit 2 with one line for bad videos."""
from __future__ import annotations

import json

import cv2
import numpy as np

from training.cli import main


def test_extract_a_frame_range(sports2d_video, tmp_path, capsys):
    out = tmp_path / "lm.npy"
    rc = main(["extract", str(sports2d_video), "--out", str(out), "--start", "20", "--end", "30"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "10 frames" in stdout and "30 fps" in stdout and "with a person" in stdout
    lm = np.load(out)
    assert lm.shape == (10, 33, 10) and lm.any()
    side = json.loads((tmp_path / "lm.npy.json").read_text())
    assert side["start"] == 20 and side["end"] == 30 and side["frames"] == 10


def test_text_file_named_mp4(tmp_path, capsys):
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video")
    assert main(["extract", str(bad), "--out", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"blaze2cap extract: error: {bad} is a text file, not a video"
    assert not (tmp_path / "x.npy").exists()


def test_missing_video(tmp_path, capsys):
    assert main(["extract", str(tmp_path / "none.mp4")]) == 2
    assert "video file not found" in capsys.readouterr().err


def test_no_person_exits_2_and_writes_nothing(tmp_path, capsys):
    video = tmp_path / "black.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25, (96, 64))
    for _ in range(4):
        w.write(np.zeros((64, 96, 3), np.uint8))
    w.release()
    assert main(["extract", str(video), "--out", str(tmp_path / "x.npy")]) == 2
    assert "no person was detected in any of the 4 frames" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["black.mp4"]
