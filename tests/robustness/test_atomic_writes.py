"""Every output file is written atomically (``engine.atomic``): a writer that fails or is
killed half-way never leaves a partial file under the final name, and new files get the
umask's permissions. Rows ``write-*`` of the table."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import engine.atomic
from capture.blazepose import NpyRowWriter
from engine import data as D
from engine.checkpoint import export_weights, load_checkpoint, save_checkpoint
from engine.inference import Predictor
from robustness_cases import CASES, REPO
from robustness_helpers import plausible_landmarks, tiny_dataset, tiny_model
from training.predict import save_prediction


class FailingFile:
    """A file object that writes ``limit`` bytes, then fails like a full disk."""

    def __init__(self, f, limit: int):
        self._f, self._left = f, limit

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self._left:
            self._f.write(data[:self._left])
            self._f.flush()
            self._left = 0
            raise OSError(28, "No space left on device (simulated)")
        self._left -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _state(seed: int) -> dict:
    model = tiny_model(seed)
    return {"model": model.state_dict(), "model_config": model.cfg.to_dict(), "step": seed}


def _prediction(seed: int, weights):
    return Predictor.from_checkpoint(weights).predict(plausible_landmarks(4 + seed, seed))


def _rows(path, seed: int) -> None:
    with NpyRowWriter(path) as w:
        for row in plausible_landmarks(3 + seed, seed):
            w.write(row)
        w.commit()


# name -> (file name, writer(path, version)) ; version 0 = the old content, 1 = the new one
WRITERS = {
    "checkpoint": ("last.pt", lambda p, v, w: save_checkpoint(p, _state(v))),
    "weights": ("model.safetensors", lambda p, v, w: export_weights(tiny_model(v), p)),
    "dataset array": ("a.npy", lambda p, v, w: D.save_npy_atomic(p, np.full((50, 7), v))),
    "dataset map": ("dataset_map.json",
                    lambda p, v, w: D.write_json_atomic(p, [{"source": "x" * 50, "v": v}] * 9)),
    "landmarks": ("lm.npy", lambda p, v, w: _rows(p, v)),
    "sidecar": ("lm.npy.json", lambda p, v, w: engine.atomic.write_json_atomic(
        p, {"fps": 30.0 + v, "frames": list(range(40))})),
    "prediction": ("p.npz", lambda p, v, w: save_prediction(p, _prediction(v, w), 30.0, 1.5)),
}


@pytest.mark.parametrize("name", WRITERS)
@pytest.mark.parametrize("existing", [True, False], ids=["over an old file", "new file"])
def test_a_writer_failing_half_way_leaves_the_old_file(name, existing, tmp_path, monkeypatch,
                                                       tiny_weights):
    assert CASES["write-interrupted"].code is None
    filename, write = WRITERS[name]
    (tmp_path / "new").mkdir()
    write(tmp_path / "new" / filename, 1, tiny_weights)  # what a complete write gives
    size = (tmp_path / "new" / filename).stat().st_size
    target = tmp_path / "out" / filename
    target.parent.mkdir()
    if existing:
        write(target, 0, tiny_weights)
    old = target.read_bytes() if existing else None
    real_open = open

    def failing_open(path, mode="r", *args, **kwargs):
        return FailingFile(real_open(path, mode, *args, **kwargs), size // 2)

    monkeypatch.setattr(engine.atomic, "open", failing_open, raising=False)
    with pytest.raises(Exception) as err:  # torch.save may wrap it in its own RuntimeError
        write(target, 1, tiny_weights)
    monkeypatch.undo()
    chain, e = [], err.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any("simulated" in m for m in chain), chain
    assert sorted(p.name for p in target.parent.iterdir()) == ([filename] if existing else [])
    if existing:
        assert target.read_bytes() == old
    write(target, 1, tiny_weights)  # and the next write works
    assert target.stat().st_size == size


def test_writers_that_need_a_path_commit_or_leave_nothing(tmp_path, real_frames):
    """Video writers (OpenCV) take a file name: ``AtomicFile(open_file=False)`` reserves a
    temporary one with the extension they need."""
    from capture.video import probe_video
    from robustness_helpers import write_video

    target = tmp_path / "clip.mp4"
    af = engine.atomic.AtomicFile(target, open_file=False, suffix=".mp4")
    assert af.tmp.parent == tmp_path and af.tmp.suffix == ".mp4" and not target.exists()
    write_video(af.tmp, [f[:64, :96] for f in real_frames[:3]])
    af.commit()
    assert probe_video(target).frame_count == 3 and list(tmp_path.iterdir()) == [target]
    with pytest.raises(ZeroDivisionError):
        with engine.atomic.AtomicFile(target, open_file=False, suffix=".mp4") as af:
            write_video(af.tmp, [f[:32, :32] for f in real_frames[:2]])
            1 / 0  # the writer fails after the file is complete
    assert probe_video(target).frame_count == 3 and list(tmp_path.iterdir()) == [target]


KILLED_WRITER = """
import sys, time
from engine.atomic import atomic_write_bytes

def write(f):
    for i in range(2000):
        f.write(b"new content " * 100)
        f.flush()
        if i == 20:
            print("half-way", flush=True)
        time.sleep(0.005)

atomic_write_bytes(sys.argv[1], write)
print("done", flush=True)
"""


@pytest.mark.parametrize("existing", [True, False], ids=["over an old file", "new file"])
def test_sigkill_mid_write_never_leaves_a_partial_file(existing, tmp_path):
    assert CASES["write-sigkill"].code is None
    target = tmp_path / "out.bin"
    if existing:
        target.write_bytes(b"old content")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "half-way", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    temps = [p for p in tmp_path.iterdir() if p != target]
    assert len(temps) == 1 and temps[0].name.startswith(".out.bin.")  # the killed write ...
    assert temps[0].name.endswith(".tmp") and temps[0].stat().st_size > 0  # ... was under way
    if existing:
        assert target.read_bytes() == b"old content"
    else:
        assert not target.exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_output_permissions_follow_the_umask(umask, tmp_path, tiny_weights):
    assert CASES["write-umask"].code is None
    old = os.umask(umask)
    try:
        for name, (filename, write) in WRITERS.items():
            write(tmp_path / filename, 0, tiny_weights)
            assert (tmp_path / filename).stat().st_mode & 0o777 == 0o666 & ~umask, name
        root = tiny_dataset(tmp_path / "ds")
        cache = D.WindowDataset(root, "train", window=8, min_valid_frames=1).cache_path
        assert cache.stat().st_mode & 0o777 == 0o777 & ~umask
        assert (cache / "features.npy").stat().st_mode & 0o777 == 0o666 & ~umask
    finally:
        os.umask(old)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 0
