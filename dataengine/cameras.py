"""Cameras of the data engine: the 8 real TotalCapture calibrations and random views.

A :class:`View` is an OpenCV pinhole camera in the Anny world (z up, see
:mod:`dataengine.bodies`): ``X_c = R @ X + t`` with camera axes x right, y down, z forward,
``u = fx x / z + cx``, ``v = fy y / z + cy`` in pixels of a ``width`` x ``height`` image whose
pixel centres sit at +0.5 (MediaPipe's normalised coordinates are ``u / width``). Pixels are
square (``fy == fx``: Blender renders square pixels; the TC calibrations differ by < 0.5 %).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bodies import TC_TO_ANNY, swing_rotation


@dataclass(frozen=True)
class ViewConfig:
    """How random views are drawn (one field per knob)."""

    size: int = 640                                  # long image side, pixels
    tc_fraction: float = 0.3                         # share of clips seen by a real TC camera
    portrait_fraction: float = 0.25                  # share of random views in portrait
    focal_range: tuple[float, float] = (0.55, 1.3)   # fx / long side (TC cameras: 0.67-0.73)
    fill_range: tuple[float, float] = (0.4, 0.9)     # body height / image height
    height_range: tuple[float, float] = (0.3, 2.8)   # camera height above the floor, metres
    roll_deg: float = 4.0                            # max camera roll
    edge_fraction: float = 0.15                      # share of random views pushed to an edge


@dataclass(frozen=True)
class View:
    kind: str                 # "tc" (a real TotalCapture calibration) or "random"
    tc_camera: int | None     # TotalCapture camera id for kind "tc"
    R: np.ndarray             # (3, 3) Anny world -> camera
    t: np.ndarray             # (3,) metres
    fx: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def fy(self) -> float:
        return self.fx

    def to_dict(self) -> dict:
        return dict(kind=self.kind, tc_camera=self.tc_camera,
                    R=np.round(self.R, 10).tolist(), t=np.round(self.t, 10).tolist(),
                    fx=self.fx, fy=self.fx, cx=self.cx, cy=self.cy, width=self.width,
                    height=self.height)

    @staticmethod
    def from_dict(d: dict) -> "View":
        return View(kind=d["kind"], tc_camera=d["tc_camera"], R=np.asarray(d["R"], np.float64),
                    t=np.asarray(d["t"], np.float64), fx=float(d["fx"]), cx=float(d["cx"]),
                    cy=float(d["cy"]), width=int(d["width"]), height=int(d["height"]))

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) Anny world -> (..., 3) camera frame (metres)."""
        return np.asarray(points, np.float64) @ self.R.T + self.t

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """(..., 3) camera frame -> (..., 2) pixels; points behind the camera give inf."""
        p = np.asarray(points_cam, np.float64)
        z = p[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(z > 1e-6, self.fx * p[..., 0] / z + self.cx, np.inf)
            v = np.where(z > 1e-6, self.fx * p[..., 1] / z + self.cy, np.inf)
        return np.stack([u, v], axis=-1)


def tc_view(cam, size: int) -> View:
    """A TotalCapture calibration (``training.totalcapture.Camera``, TC world, 1920x1080)
    as a View in the Anny world, scaled to a long side of ``size`` pixels."""
    k = size / max(cam.width, cam.height)
    w, h = int(round(cam.width * k)), int(round(cam.height * k))
    return View(kind="tc", tc_camera=int(cam.camera_id), R=cam.R @ TC_TO_ANNY.T,
                t=np.asarray(cam.t, np.float64),
                fx=float(cam.fx * k), cx=float((cam.cx + 0.5) * k), cy=float((cam.cy + 0.5) * k),
                width=w, height=h)


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """(3, 3) world -> camera rotation of a camera at ``eye`` looking at ``target`` with the
    world z axis up in the image (then rolled by ``roll`` radians about the view axis)."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    if np.linalg.norm(x) < 1e-6:  # looking straight up or down
        x = np.array([1.0, 0.0, 0.0])
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    c, s = np.cos(roll), np.sin(roll)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R


def random_view(rng: np.random.Generator, root: np.ndarray, floor_z: float, body_height: float,
                cfg: ViewConfig = ViewConfig()) -> View:
    """A random camera that sees a clip's motion.

    root (K, 3) the Hips path (Anny world), floor_z the floor height, body_height metres.
    Distance follows from the focal length and how much of the image the body fills (and
    the whole path must fit across the image); azimuth is uniform, camera height in
    ``cfg.height_range``. Some views are turned so the body sits at an image edge (partly
    outside), never by moving the principal point (features assume it at the centre).
    """
    portrait = rng.random() < cfg.portrait_fraction
    short = int(round(cfg.size * 9 / 16 / 2)) * 2
    w, h = (short, cfg.size) if portrait else (cfg.size, short)
    fx = float(rng.uniform(*cfg.focal_range)) * cfg.size
    fill = float(rng.uniform(*cfg.fill_range))
    centre = root.mean(0)
    spread = float(np.linalg.norm(root[:, :2] - centre[:2], axis=1).max()) * 2 + 0.8
    dist = max(fx * body_height / (fill * h), fx * spread / (0.9 * w), 1.5)
    azimuth = float(rng.uniform(-np.pi, np.pi))
    cam_h = float(rng.uniform(*cfg.height_range))
    target = np.array([centre[0], centre[1], floor_z + 0.55 * body_height])
    # elevation kept within [-25, 50] degrees: steeper views are rare in real footage
    vertical = float(np.clip(floor_z + cam_h - target[2], -dist * np.sin(np.deg2rad(25)),
                             dist * np.sin(np.deg2rad(50))))
    horiz = np.sqrt(dist ** 2 - vertical ** 2)
    eye = np.array([target[0] + horiz * np.cos(azimuth), target[1] + horiz * np.sin(azimuth),
                    target[2] + vertical])
    R = look_at(eye, target, np.deg2rad(float(rng.uniform(-cfg.roll_deg, cfg.roll_deg))))
    cx, cy = w / 2.0, h / 2.0
    if rng.random() < cfg.edge_fraction:  # put the body's centre near an edge
        side = int(rng.integers(4))
        shift = float(rng.uniform(0.3, 0.5))
        u = cx + (shift * w if side == 0 else -shift * w if side == 1 else 0.0)
        v = cy + (shift * h if side == 2 else -shift * h if side == 3 else 0.0)
        d = np.array([(u - cx) / fx, (v - cy) / fx, 1.0])
        R = swing_rotation(np.array([0.0, 0.0, 1.0]), d) @ R
    return View(kind="random", tc_camera=None, R=R, t=-R @ eye, fx=fx, cx=cx, cy=cy, width=w, height=h)
