"""capture.models: the pinned heavy BlazePose model, installed from a checked archive, never
downloaded by mediapipe at run time."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from capture import models as M
from capture.blazepose import PoseConfig, PoseTracker, extract_landmarks, read_sidecar


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A model dir in tmp_path and a 'heavy' source pinned to a small archive there."""
    model = b"tflite bytes"
    archive = _tgz({"package/pose_landmark_heavy.tflite": model})
    (tmp_path / "pose.tgz").write_bytes(archive)
    src = M.ModelSource("pose_landmark_heavy.tflite", _sha(model),
                        "https://invalid.example/pose.tgz", _sha(archive),
                        "package/pose_landmark_heavy.tflite")
    monkeypatch.setitem(M.POSE_MODELS, "heavy", src)
    monkeypatch.setattr(M, "model_dir", lambda: tmp_path / "modules")

    def no_network(*a, **k):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(M.urllib.request, "urlopen", no_network)
    return tmp_path, model, archive


def test_missing_model_is_one_line_error(fake):
    with pytest.raises(M.ModelMissingError, match="not installed.*capture.models install heavy"):
        M.require_pose_model("heavy")


def test_install_from_local_archive_then_require(fake):
    tmp, model, _ = fake
    path = M.install_pose_model("heavy", tmp / "pose.tgz", cache_dir=tmp / "cache")
    assert path == tmp / "modules" / "pose_landmark_heavy.tflite"
    assert path.read_bytes() == model
    assert M.require_pose_model("heavy") == path
    assert M.pose_model_installed("heavy")
    assert not list((tmp / "modules").glob(".*tmp*"))   # atomic: no temporary left


def test_altered_model_is_refused(fake):
    tmp, _, _ = fake
    M.install_pose_model("heavy", tmp / "pose.tgz", cache_dir=tmp / "cache")
    (tmp / "modules" / "pose_landmark_heavy.tflite").write_bytes(b"something else")
    with pytest.raises(M.ModelMissingError, match="checksum differs"):
        M.require_pose_model("heavy")
    M.install_pose_model("heavy", tmp / "pose.tgz", cache_dir=tmp / "cache")  # repairs it
    assert M.pose_model_installed("heavy")


def test_wrong_or_hostile_archive_writes_nothing(fake, monkeypatch):
    tmp, model, _ = fake
    bad = tmp / "bad.tgz"
    bad.write_bytes(_tgz({"package/pose_landmark_heavy.tflite": b"evil"}))
    with pytest.raises(M.ModelMissingError, match="not the pinned archive"):
        M.install_pose_model("heavy", bad, cache_dir=tmp / "cache")
    # an archive with the pinned checksum but no such member (pin the bad one to get there)
    other = _tgz({"../../etc/passwd": b"x"})
    bad.write_bytes(other)
    src = M.POSE_MODELS["heavy"]
    monkeypatch.setitem(M.POSE_MODELS, "heavy", M.ModelSource(
        src.file, src.sha256, src.url, _sha(other), src.member))
    with pytest.raises(M.ModelMissingError, match="unreadable"):
        M.install_pose_model("heavy", bad, cache_dir=tmp / "cache")
    assert not (tmp / "modules").exists() or not any((tmp / "modules").iterdir())
    assert not (tmp.parent / "etc").exists()


def test_no_archive_and_no_network_is_one_line_error(fake):
    tmp, _, _ = fake
    with pytest.raises(M.ModelMissingError, match="could not download.*--from"):
        M.install_pose_model("heavy", cache_dir=tmp / "cache")


def test_download_is_cached_and_checked(fake, monkeypatch):
    tmp, model, archive = fake

    class Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *e):
            return False

    calls = []
    monkeypatch.setattr(M.urllib.request, "urlopen",
                        lambda url, timeout: calls.append(url) or Resp(archive))
    M.install_pose_model("heavy", cache_dir=tmp / "cache")
    assert calls == ["https://invalid.example/pose.tgz"]
    assert (tmp / "cache" / "pose.tgz").read_bytes() == archive
    (tmp / "modules" / "pose_landmark_heavy.tflite").unlink()
    M.install_pose_model("heavy", cache_dir=tmp / "cache")   # from the cache, no download
    assert len(calls) == 1


def test_cli_status_and_bad_name(fake, capsys):
    assert M.main(["status"]) == 0
    assert "heavy: missing" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        M.main(["install", "lite"])


def test_pose_config_model_is_checked():
    with pytest.raises(M.InputError, match="heavy, full"):
        PoseConfig(model="lite")


def test_tracker_refuses_a_missing_model_before_mediapipe_starts(fake):
    with pytest.raises(M.ModelMissingError):
        PoseTracker(PoseConfig(model="heavy"))


def test_pinned_models_are_installed():
    """make install puts the heavy model where mediapipe looks (no run-time download)."""
    for name in M.POSE_MODELS:
        assert M.pose_model_installed(name), f"{name}: run python -m capture.models install"


def test_heavy_model_is_the_default_and_extracts_a_real_video(sports2d_video, tmp_path):
    out = tmp_path / "heavy.npy"
    res = extract_landmarks(sports2d_video, out, end=20)
    lm = np.load(out)
    assert res.detected == 20 and lm.shape == (20, 33, 10)
    assert read_sidecar(out)["model"] == "mediapipe BlazePose heavy (model_complexity=2)"
    full = tmp_path / "full.npy"
    extract_landmarks(sports2d_video, full, end=20, config=PoseConfig(model="full"))
    assert read_sidecar(full)["model"] == "mediapipe BlazePose full (model_complexity=1)"
    # the same person, found by two different networks: close but not identical
    d = np.abs(np.load(full)[..., 5:7] - lm[..., 5:7])
    assert 0 < np.median(d) < 0.02


def test_bundled_copy_is_installed_without_network(fake, monkeypatch):
    """The extension's wheel carries the model; the first BlazePose start puts it in place."""
    tmp, model, _ = fake
    bundle = tmp / "bundle"
    bundle.mkdir()
    monkeypatch.setattr(M, "bundled_path", lambda name: bundle / "pose_landmark_heavy.tflite")
    (bundle / "pose_landmark_heavy.tflite").write_bytes(b"tampered")
    with pytest.raises(M.ModelMissingError, match="not installed"):  # a bad copy is not used
        M.require_pose_model("heavy")
    (bundle / "pose_landmark_heavy.tflite").write_bytes(model)
    assert M.require_pose_model("heavy").read_bytes() == model
