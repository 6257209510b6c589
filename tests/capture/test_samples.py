"""capture.samples: cache reuse without the network, repair of a damaged cache, offline errors."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from capture import samples
from capture.samples import SAMPLES, SampleDownloadError, sample_video
from engine.errors import InputError


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(samples.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_pip(monkeypatch, members: dict[str, bytes] | None, returncode: int = 0,
             stderr: str = "") -> list[list[str]]:
    """Replace subprocess.run: 'download' a wheel holding ``members`` into the --dest folder."""
    calls: list[list[str]] = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        if members is not None:
            dest = Path(cmd[cmd.index("--dest") + 1])
            with zipfile.ZipFile(dest / "pkg-1.0-py3-none-any.whl", "w") as zf:
                for name, data in members.items():
                    zf.writestr(name, data)
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    monkeypatch.setattr(samples.subprocess, "run", run)
    return calls


def test_second_call_uses_the_cache_without_pip(cache, sports2d_video, monkeypatch):
    target = cache / SAMPLES["sports2d"].cache_name
    target.parent.mkdir(parents=True)
    shutil.copy(sports2d_video, target)

    def no_network(*args, **kwargs):
        raise AssertionError("pip must not run when the sample is cached")

    monkeypatch.setattr(samples.subprocess, "run", no_network)
    assert sample_video("sports2d") == target
    assert sample_video("sports2d") == target


def test_damaged_cache_is_downloaded_again(cache, sports2d_video, monkeypatch):
    target = cache / SAMPLES["sports2d"].cache_name
    target.parent.mkdir(parents=True)
    target.write_bytes(b"half a video")
    calls = fake_pip(monkeypatch, {SAMPLES["sports2d"].member: sports2d_video.read_bytes()})
    assert sample_video("sports2d") == target
    assert target.read_bytes() == sports2d_video.read_bytes()
    cmd = calls[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and "sports2d==0.8.34" in cmd
    assert [p.name for p in target.parent.iterdir()] == ["demo.mp4"]  # no temp files left


def test_offline_gives_a_clear_error(cache, monkeypatch):
    fake_pip(monkeypatch, None, returncode=1, stderr=(
        "WARNING: Retrying ...\nERROR: Could not find a version that satisfies the requirement "
        "sports2d==0.8.34\n"))
    with pytest.raises(SampleDownloadError, match="offline.*Could not find a version"):
        sample_video("sports2d")
    assert not (cache / SAMPLES["sports2d"].cache_name).exists()


def test_pose2sim_alias_and_wrong_content(cache, monkeypatch):
    calls = fake_pip(monkeypatch, {SAMPLES["pose2sim_cam01"].member: b"not the real video"})
    with pytest.raises(SampleDownloadError, match="did not contain the expected"):
        sample_video("pose2sim")
    assert "pose2sim==0.10.49" in calls[0]
    assert not (cache / SAMPLES["pose2sim_cam01"].cache_name).exists()  # unverified: not kept


def test_unknown_sample_name():
    with pytest.raises(InputError, match="unknown sample video 'nope'.*sports2d"):
        sample_video("nope")
