"""Build the Blaze2Cap Blender extension: one .zip per platform under dist/ (``make extension``).

Steps:

1. Download the runtime dependency wheels of every platform in ``blender_manifest.toml``
   (``pip download --only-binary=:all: --no-deps --platform ... --python-version 3.11``) into
   a cache, so a rebuild touches no network. The pins are :data:`REQUIREMENTS`; the exact
   files are listed in the manifest's ``wheels`` (``--write-manifest`` rewrites that list
   after changing a pin).
2. Build a pure-Python wheel of our own ``engine`` and ``capture`` packages (with the shipped
   weights ``engine/weights/*`` when present, and BlazePose's heavy model, which the
   mediapipe wheel lacks, from this environment's checked install: ``capture.models``),
   reproducibly (sorted, fixed timestamps).
3. Stage the add-on: ``blaze2cap_addon``'s modules at the extension root, the manifest and
   ``wheels/``; validate it and run Blender's ``blender_ext.py build --split-platforms``.

Not bundled: torch (the extension runs the engine's NumPy backend) and numpy (Blender 4.2 to
5.0 ship NumPy 1.x with Python 3.11). OpenCV is the headless build: MediaPipe's pose solution
only needs ``cv2``'s core and imgproc functions.

Usage: ``python scripts/build_extension.py [--platform linux-x64 ...] [--offline]``.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "blender_manifest.toml"
ADDON = REPO / "blaze2cap_addon"
PYTHON_VERSION = "3.11"  # Blender 4.2 - 5.0
#: Runtime dependencies of ``capture`` (MediaPipe pose) and ``engine`` (NumPy backend).
REQUIREMENTS = (
    "mediapipe==0.10.21",
    "opencv-python-headless==4.10.0.84",  # NumPy 1.x and macOS 11 wheels
    "protobuf==4.25.9",
    "attrs==26.1.0",
    "matplotlib==3.9.4",      # imported by mediapipe.python.solutions.drawing_utils
    "contourpy==1.3.3",
    "cycler==0.12.1",
    "fonttools==4.68.0",
    "kiwisolver==1.5.1",
    "packaging==26.3",
    "pillow==13.0.0",
    "pyparsing==3.3.3",
    "python-dateutil==4.0.0",
    "safetensors==0.5.3",
)
#: Oldest systems Blender 4.2 runs on: glibc 2.28, macOS 11.2 (wheels must not need newer);
#: Intel Macs need macOS 12 (OpenCV's x86_64 wheel; Blender 5.0 dropped Intel Macs anyway).
MANYLINUX_GLIBC = (2, 28)
MACOS_VERSION = {"arm64": (11, 0), "x86_64": (12, 0)}


def _manylinux(arch: str) -> list[str]:
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(MANYLINUX_GLIBC[1], 4, -1)]
    return tags + [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]


def _macos(arch: str) -> list[str]:
    from packaging.tags import mac_platforms

    return list(mac_platforms(MACOS_VERSION[arch], arch))


#: Blender platform -> pip ``--platform`` tags, best first (pip does not expand them itself).
PIP_PLATFORMS = {
    "linux-x64": lambda: _manylinux("x86_64"),
    "windows-x64": lambda: ["win_amd64"],
    "macos-arm64": lambda: _macos("arm64"),
    "macos-x64": lambda: _macos("x86_64"),
}
OWN_WHEEL_NAME = "blaze2cap_runtime"
OWN_PACKAGES = ("engine", "capture")
#: Modules of our packages the extension never uses (the sample fetcher runs pip).
OWN_EXCLUDE = ("capture/samples.py",)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
LINUX_ZIP_LIMIT_MB = 150


def log(msg: str) -> None:
    print(f"[extension] {msg}", flush=True)


def default_cache() -> Path:
    return Path(os.environ.get("BLAZE2CAP_WHEEL_CACHE",
                               Path.home() / ".cache" / "blaze2cap" / "wheels"))


def blender_ext_script() -> Path:
    """``blender_ext.py`` of the ``bpy`` module (Blender's extension command line)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the bpy module is not installed: run 'make install'")
    root = Path(list(spec.submodule_search_locations)[0])
    found = sorted(root.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise SystemExit(f"blender_ext.py not found under {root}")
    return found[-1]


def read_manifest() -> dict:
    with open(MANIFEST, "rb") as fh:
        return tomllib.load(fh)


# ---------------------------------------------------------------------------------------------
# Dependency wheels
# ---------------------------------------------------------------------------------------------
def normalize(name: str) -> str:
    """Distribution name as in wheel file names: opencv-python-headless -> opencv_python_headless."""
    return re.sub(r"[-_.]+", "_", name).lower()


def pinned_versions() -> dict[str, str]:
    """Normalised name -> pinned version of :data:`REQUIREMENTS`."""
    return {normalize(r.split("==")[0]): r.split("==")[1] for r in REQUIREMENTS}


def _dist_name(wheel: str) -> str:
    return normalize(wheel.split("-")[0])


def download_wheels(platforms: list[str], cache: Path, offline: bool) -> dict[str, list[Path]]:
    """Platform -> dependency wheels, downloaded into ``cache/<platform>/`` (kept)."""
    out: dict[str, list[Path]] = {}
    pins = pinned_versions()
    for platform in platforms:
        folder = cache / platform
        folder.mkdir(parents=True, exist_ok=True)

        def pinned() -> list[Path]:
            return [p for p in sorted(folder.glob("*.whl"))
                    if pins.get(_dist_name(p.name)) == p.name.split("-")[1]]

        missing = set(pins) - {_dist_name(p.name) for p in pinned()}
        if missing:
            if offline:
                raise SystemExit(f"--offline: wheels for {platform} are missing from {folder}: "
                                 f"{', '.join(sorted(missing))}")
            log(f"downloading {len(REQUIREMENTS)} wheels for {platform}")
            tags = [arg for tag in PIP_PLATFORMS[platform]() for arg in ("--platform", tag)]
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                            "--disable-pip-version-check", "--no-deps", "--only-binary=:all:",
                            *tags, "--python-version", PYTHON_VERSION, "--implementation", "cp",
                            "-d", str(folder), *REQUIREMENTS], check=True)
        files = pinned()
        absent = set(pins) - {_dist_name(p.name) for p in files}
        if absent:
            raise SystemExit(f"no {platform} wheel of {', '.join(sorted(absent))}")
        out[platform] = files
    return _prefer_universal(out)


def _prefer_universal(per_platform: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """Where one macOS platform got a universal2 wheel of a package, use it for both: Blender
    maps universal2 to macos-x64 and macos-arm64, so two wheels of one package would clash."""
    universal = {_dist_name(p.name): p for files in per_platform.values() for p in files
                 if "universal2" in p.name}
    for platform, files in per_platform.items():
        if platform.startswith("macos"):
            per_platform[platform] = [universal.get(_dist_name(p.name), p) for p in files]
    return per_platform


# ---------------------------------------------------------------------------------------------
# Our own wheel
# ---------------------------------------------------------------------------------------------
def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def own_version() -> str:
    text = (REPO / "engine" / "__init__.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def build_own_wheel(out_dir: Path) -> Path:
    """Pure-Python wheel of ``engine`` + ``capture`` (+ shipped weights); reproducible."""
    version = own_version()
    name = f"{OWN_WHEEL_NAME}-{version}-py3-none-any.whl"
    dist_info = f"{OWN_WHEEL_NAME}-{version}.dist-info"
    files: list[tuple[str, bytes]] = []
    for pkg in OWN_PACKAGES:
        for path in sorted((REPO / pkg).rglob("*")):
            rel = path.relative_to(REPO).as_posix()
            if (path.is_file() and "__pycache__" not in rel and rel not in OWN_EXCLUDE
                    and (path.suffix == ".py" or rel.startswith("engine/weights/"))):
                files.append((rel, path.read_bytes()))
    from capture.models import BUNDLE_DIR, ModelMissingError, require_pose_model

    try:
        model = require_pose_model("heavy")
    except ModelMissingError as err:
        raise SystemExit(f"the extension bundles BlazePose heavy: {err}") from None
    files.append((f"capture/{BUNDLE_DIR}/{model.name}", model.read_bytes()))
    weights = [f for f, _ in files if f.startswith("engine/weights/")]
    log(f"own wheel: {len(files)} files, weights: {', '.join(weights) or 'none (not trained yet)'}")
    files.append((f"{dist_info}/METADATA", (
        f"Metadata-Version: 2.1\nName: {OWN_WHEEL_NAME}\nVersion: {version}\n"
        "Summary: Blaze2Cap engine and capture packages for the Blender extension\n"
        "License: GPL-3.0-or-later\nRequires-Python: >=3.11\n").encode()))
    files.append((f"{dist_info}/WHEEL", (
        "Wheel-Version: 1.0\nGenerator: blaze2cap build_extension\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n").encode()))
    record = "".join(f"{f},{_record_hash(d)},{len(d)}\n" for f, d in files)
    files.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))
    out = out_dir / name
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in files:
            info = zipfile.ZipInfo(rel, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return out


# ---------------------------------------------------------------------------------------------
# Manifest, staging, build
# ---------------------------------------------------------------------------------------------
def wheel_entries(own: Path, deps: dict[str, list[Path]]) -> list[str]:
    names = {own.name} | {p.name for files in deps.values() for p in files}
    return [f"./wheels/{n}" for n in sorted(names)]


def write_manifest_wheels(entries: list[str]) -> None:
    """Rewrite the ``wheels = [...]`` list of the repository's manifest."""
    text = MANIFEST.read_text()
    block = "wheels = [\n" + "".join(f'  "{e}",\n' for e in entries) + "]"
    new, n = re.subn(r"(?ms)^wheels = \[.*?^\]", block, text)
    if n != 1:
        raise SystemExit(f"{MANIFEST.name}: no 'wheels = [' block to rewrite")
    MANIFEST.write_text(new)


def stage(stage_dir: Path, own: Path, deps: dict[str, list[Path]]) -> None:
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    (stage_dir / "wheels").mkdir(parents=True)
    for path in sorted(ADDON.glob("*.py")):
        shutil.copy2(path, stage_dir / path.name)
    shutil.copy2(MANIFEST, stage_dir / MANIFEST.name)
    shutil.copy2(own, stage_dir / "wheels" / own.name)
    for files in deps.values():
        for path in files:
            shutil.copy2(path, stage_dir / "wheels" / path.name)


def run_blender_ext(*args: str) -> None:
    subprocess.run([sys.executable, str(blender_ext_script()), *args], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", action="append", choices=sorted(PIP_PLATFORMS),
                        help="build only these platforms (default: all in the manifest)")
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="output folder")
    parser.add_argument("--build-dir", type=Path, default=REPO / "build" / "extension")
    parser.add_argument("--wheel-cache", type=Path, default=default_cache(),
                        help="dependency wheel cache (default ~/.cache/blaze2cap/wheels)")
    parser.add_argument("--offline", action="store_true", help="use only cached wheels")
    parser.add_argument("--write-manifest", action="store_true",
                        help="rewrite the manifest's wheels list from the downloaded files")
    args = parser.parse_args(argv)

    manifest = read_manifest()
    all_platforms = list(manifest["platforms"])
    platforms = args.platform or all_platforms
    deps = download_wheels(all_platforms if args.write_manifest else platforms,
                           args.wheel_cache, args.offline)
    args.build_dir.mkdir(parents=True, exist_ok=True)
    own = build_own_wheel(args.build_dir)
    entries = wheel_entries(own, deps)
    if args.write_manifest:
        write_manifest_wheels(entries)
        manifest = read_manifest()
        log(f"wrote {len(entries)} wheels into {MANIFEST.name}")
    listed = set(manifest.get("wheels", []))
    missing = sorted(set(entries) - listed)
    if missing:
        raise SystemExit(f"{MANIFEST.name} does not list {', '.join(missing)}: run with "
                         "--write-manifest after changing REQUIREMENTS")
    if args.platform:  # a partial build: list only the wheels that are staged
        manifest_text = MANIFEST.read_text()
        keep = [e for e in manifest["wheels"] if e in entries]
        manifest_text = re.sub(r"(?ms)^wheels = \[.*?^\]", "wheels = [\n" + "".join(
            f'  "{e}",\n' for e in keep) + "]", manifest_text)
        manifest_text = re.sub(r"(?m)^platforms = \[.*\]$", "platforms = [" + ", ".join(
            f'"{p}"' for p in platforms) + "]", manifest_text)
    else:
        absent = sorted(listed - set(entries))
        if absent:
            raise SystemExit(f"{MANIFEST.name} lists wheels that were not downloaded: "
                             f"{', '.join(absent)}")
        manifest_text = MANIFEST.read_text()
    stage_dir = args.build_dir / "blaze2cap"
    stage(stage_dir, own, deps)
    (stage_dir / MANIFEST.name).write_text(manifest_text)
    run_blender_ext("validate", str(stage_dir))
    args.dist.mkdir(parents=True, exist_ok=True)
    run_blender_ext("build", "--source-dir", str(stage_dir), "--output-dir", str(args.dist),
                    "--split-platforms")
    version = manifest["version"]
    for platform in platforms:
        zip_path = args.dist / f"{manifest['id']}-{version}-{platform.replace('-', '_')}.zip"
        size = zip_path.stat().st_size / 2**20
        log(f"{zip_path.relative_to(REPO) if zip_path.is_relative_to(REPO) else zip_path}: "
            f"{size:.1f} MB")
        if platform == "linux-x64" and size >= LINUX_ZIP_LIMIT_MB:
            raise SystemExit(f"{zip_path.name} is {size:.0f} MB, over the "
                             f"{LINUX_ZIP_LIMIT_MB} MB limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
