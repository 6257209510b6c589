"""BlazePose landmark models: where mediapipe looks for them, and installing the heavy one.

mediapipe 0.10.21's wheel bundles only ``pose_landmark_full.tflite``; asked for the heavy model
(``model_complexity=2``, the model of the shared TotalCapture landmarks) it would download it
from Google's storage at run time, which this product never does (it must work offline, and
a download inside Blender or a worker is a hang or a crash, not an error message).

The same model files ship in the npm package ``@mediapipe/pose`` (Apache-2.0): its
``pose_landmark_full.tflite`` is byte-identical to the wheel's, so its heavy model is the one
mediapipe would fetch. :func:`install_pose_model` takes it from that package's tarball, pinned
by version and SHA-256 (cached in ``~/.cache/blaze2cap/models``), checks the model's own
SHA-256 and writes it atomically where mediapipe looks (``mediapipe/modules/pose_landmark/``).
``make install`` runs it once::

    python -m capture.models install heavy [--from mediapipe-pose-0.5.1675469404.tgz]

:func:`require_pose_model` is called before every BlazePose start; it raises a one-line
:class:`ModelMissingError` instead of letting mediapipe try the network. The Blender extension
carries the model inside its own wheel (``capture/pose_models/``, added by
``scripts/build_extension.py``); :func:`require_pose_model` copies that checked copy into
mediapipe's folder the first time it is needed, with no network.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import logging
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from engine.atomic import atomic_write_bytes
from engine.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    file: str           # file name in mediapipe/modules/pose_landmark/
    sha256: str         # of the model file
    url: str | None     # archive that carries it (None: bundled with the mediapipe wheel)
    archive_sha256: str | None = None
    member: str | None = None


_NPM = "https://registry.npmjs.org/@mediapipe/pose/-/pose-0.5.1675469404.tgz"
_NPM_SHA256 = "8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84"

POSE_MODELS = {
    "full": ModelSource("pose_landmark_full.tflite",
                        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f", None),
    "heavy": ModelSource("pose_landmark_heavy.tflite",
                         "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe",
                         _NPM, _NPM_SHA256, "package/pose_landmark_heavy.tflite"),
}
BUNDLE_DIR = "pose_models"   # capture/pose_models/ in the extension's wheel (not in git)


class ModelMissingError(InputError):
    """A BlazePose model file is absent or not the pinned one."""


def model_dir() -> Path:
    """mediapipe's ``modules/pose_landmark`` folder (where ``mp.solutions.pose`` looks)."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError("mediapipe is not installed (pip install mediapipe==0.10.21)")
    return Path(list(spec.submodule_search_locations)[0]) / "modules" / "pose_landmark"


def model_path(name: str) -> Path:
    return model_dir() / _source(name).file


def _source(name: str) -> ModelSource:
    if name not in POSE_MODELS:
        raise InputError(f"unknown BlazePose model {name!r}; choose {', '.join(POSE_MODELS)}")
    return POSE_MODELS[name]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pose_model_installed(name: str) -> bool:
    """Whether the pinned model file is where mediapipe looks."""
    path = model_path(name)
    return path.is_file() and _sha256(path.read_bytes()) == _source(name).sha256


def bundled_path(name: str) -> Path:
    """Where a package built with the model (the extension's wheel) carries a copy of it."""
    return Path(__file__).with_name(BUNDLE_DIR) / _source(name).file


def require_pose_model(name: str) -> Path:
    """The model's path; :class:`ModelMissingError` (one line) when it is absent or altered
    (a bundled copy, when there is one, is installed first)."""
    path = model_path(name)
    if pose_model_installed(name):
        return path
    bundled = bundled_path(name)
    if bundled.is_file():
        data = bundled.read_bytes()
        if _sha256(data) == _source(name).sha256:
            atomic_write_bytes(path, lambda f: f.write(data))
            log.info("installed the bundled BlazePose %s model: %s", name, path)
            return path
    if not path.is_file():
        hint = ("reinstall mediapipe==0.10.21" if _source(name).url is None
                else f"run `python -m capture.models install {name}` once (make install does)")
        raise ModelMissingError(f"the BlazePose {name} model is not installed ({path.name}): "
                                f"{hint}")
    raise ModelMissingError(f"{path} is not the pinned BlazePose {name} model (checksum "
                            f"differs): run `python -m capture.models install {name}`")


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "blaze2cap" / "models"


def install_pose_model(name: str, archive: Path | None = None,
                       cache_dir: Path | None = None) -> Path:
    """Put the pinned model ``name`` where mediapipe looks; returns its path.

    ``archive``: a local copy of the pinned archive (else it is downloaded once into
    ``cache_dir``). Every byte is checked against the pinned SHA-256s before it is written."""
    src = _source(name)
    dest = model_path(name)
    if pose_model_installed(name):
        return dest
    if src.url is None:
        raise ModelMissingError(f"the BlazePose {name} model comes with mediapipe: reinstall "
                                f"mediapipe==0.10.21")
    data = _archive_bytes(src, archive, cache_dir or default_cache_dir())
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = tar.getmember(src.member)
            if not member.isfile():
                raise KeyError(src.member)
            model = tar.extractfile(member).read()
    except (tarfile.TarError, KeyError, OSError) as err:
        raise ModelMissingError(f"the archive of the {name} model is unreadable ({err})") from None
    if _sha256(model) != src.sha256:
        raise ModelMissingError(f"the {name} model in {src.url} is not the pinned one")
    atomic_write_bytes(dest, lambda f: f.write(model))
    log.info("installed the BlazePose %s model: %s", name, dest)
    return dest


def _archive_bytes(src: ModelSource, archive: Path | None, cache_dir: Path) -> bytes:
    cached = cache_dir / Path(src.url).name
    path = Path(archive) if archive is not None else cached
    if path.is_file():
        data = path.read_bytes()
        if _sha256(data) == src.archive_sha256:
            return data
        if archive is not None:
            raise ModelMissingError(f"{archive} is not the pinned archive (checksum differs)")
    try:
        with urllib.request.urlopen(src.url, timeout=120) as r:  # noqa: S310 (pinned https URL)
            data = r.read()
    except OSError as err:
        raise ModelMissingError(f"could not download {src.url} ({err}); pass a local copy "
                                f"with --from") from None
    if _sha256(data) != src.archive_sha256:
        raise ModelMissingError(f"{src.url} is not the pinned archive (checksum differs)")
    atomic_write_bytes(cached, lambda f: f.write(data))
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m capture.models",
                                 description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ins = sub.add_parser("install", help="install a pinned BlazePose model for mediapipe")
    ins.add_argument("name", choices=sorted(POSE_MODELS))
    ins.add_argument("--from", dest="archive", type=Path, default=None,
                     help="a local copy of the pinned archive (no download)")
    sub.add_parser("status", help="which models are installed")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.cmd == "install":
            print(install_pose_model(args.name, args.archive))
        else:
            for name in POSE_MODELS:
                print(f"{name}: {'installed' if pose_model_installed(name) else 'missing'}")
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
