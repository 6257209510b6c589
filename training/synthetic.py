"""BlazePose-like landmarks synthesised from ground-truth motion, with a noise model fitted to
the real BlazePose / ground-truth pairs of the shared TotalCapture data.

Why: the real pairs cover four motion sequences; the ground truth covers 31. Synthesis turns
every ground-truth sequence seen from every calibrated camera into model input.

The model of BlazePose (all fitted by :func:`fit_noise_model` on training sequences only):

* **Landmark placement**: each of the 33 landmarks sits at a constant offset ``c_k`` in the
  bone-local frame of one TotalCapture joint (nose and ears on Head, wrist / fingers on the
  hand, heel / toes on the foot, ...): ``x_k = p_j + G_j @ c_k`` (median over clean frames).
* **World landmarks** are hip-centred (midpoint of landmarks 23/24) and turned into
  BlazePose's ray-aligned frame (the inverse of ``engine.features.ray_rotation``).
* **Errors** (camera axes): a per-clip body-scale bias, a slowly drifting rotation about the
  vertical axis (BlazePose's dominant error, measured per frame by Procrustes), per-landmark
  slowly varying offsets (depth error largest) and per-frame jitter; the standard deviations
  of each are fitted per landmark and axis, the slow / fast split by a 0.25 s moving average.
* **2D**: the true projection through the real camera plus the fitted 2D jitter; relative
  depth (channel 7) from the camera-frame depth with the fitted scale; visibility near 1.
* **Tracking**: dropped frames in short bursts and track restarts; frames whose hips leave
  the image have no detection, as in the real files.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine.features import ray_rotation
from engine.skeleton import BLAZEPOSE_INDEX, BLAZEPOSE_NAMES, JOINT_INDEX, NUM_BLAZEPOSE


def landmark_parent_joint() -> np.ndarray:
    """(33,) index of the TotalCapture joint that carries each BlazePose landmark."""
    out = np.zeros(NUM_BLAZEPOSE, dtype=np.int64)
    for name, i in BLAZEPOSE_INDEX.items():
        side = "Left" if name.startswith("left") else "Right"
        if name == "nose" or any(k in name for k in ("eye", "ear", "mouth")):
            out[i] = JOINT_INDEX["Head"]
        elif "shoulder" in name:
            out[i] = JOINT_INDEX[side + "Arm"]
        elif "elbow" in name:
            out[i] = JOINT_INDEX[side + "ForeArm"]
        elif any(k in name for k in ("wrist", "pinky", "thumb")) or name.endswith("_index") and "foot" not in name:
            out[i] = JOINT_INDEX[side + "Hand"]
        elif "hip" in name:
            out[i] = JOINT_INDEX[side + "UpLeg"]
        elif "knee" in name:
            out[i] = JOINT_INDEX[side + "Leg"]
        else:  # ankle, heel, foot_index
            out[i] = JOINT_INDEX[side + "Foot"]
    return out


@dataclass
class NoiseModel:
    """Fitted parameters (metres, radians, frames at 60 fps)."""

    landmark_offsets: list = field(default_factory=lambda: [[0.0, 0.0, 0.0]] * NUM_BLAZEPOSE)  # (33, 3)
    slow_std: list = field(default_factory=lambda: [[0.03, 0.03, 0.06]] * NUM_BLAZEPOSE)       # (33, 3)
    fast_std: list = field(default_factory=lambda: [[0.005, 0.005, 0.01]] * NUM_BLAZEPOSE)     # (33, 3)
    yaw_std: float = 0.15              # radians, slow rotation error about the vertical axis
    scale_std: float = 0.05            # per-clip body scale error (fraction)
    image_std_px: float = 6.0          # 2D jitter, pixels at 1080 p
    depth_scale: float = 0.3           # channel 7 per metre of camera-frame depth offset
    drop_rate: float = 0.0005          # per-frame probability that a dropout burst starts
    slow_frames: int = 15              # time constant of the slow errors
    n_frames_fitted: int = 0

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "NoiseModel":
        return cls(**json.loads(Path(path).read_text()))


def place_landmarks(pos: np.ndarray, glob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """pos (F, 21, 3), glob (F, 21, 3, 3) in one frame, offsets (33, 3) -> (F, 33, 3)."""
    pj = landmark_parent_joint()
    return pos[:, pj] + np.einsum("fkij,kj->fki", glob[:, pj], offsets)


def _moving_average(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average over axis 0 (edges padded by reflection)."""
    pad = np.pad(x, [(n // 2, n - 1 - n // 2)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    c = np.cumsum(pad, axis=0, dtype=np.float64)
    c = np.concatenate([np.zeros_like(c[:1]), c])
    return ((c[n:] - c[:-n]) / n).astype(x.dtype)


def _best_yaw(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame angle theta (F,) of the rotation about camera y best taking a to b (F, K, 3)."""
    s = (a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]).sum(-1)
    c = (a[..., 0] * b[..., 0] + a[..., 2] * b[..., 2]).sum(-1)
    return np.arctan2(s, c)


def _roty(theta: np.ndarray) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    z, o = np.zeros_like(theta), np.ones_like(theta)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(theta.shape + (3, 3))


def fit_noise_model(pairs: list[dict]) -> NoiseModel:
    """Fit from real pairs. Each pair: landmarks (F,33,10), pos (F,21,3) and glob (F,21,3,3)
    ground truth in that camera's frame (aligned frame by frame), clean (F,) bool, aspect,
    fx (pixels), height (pixels)."""
    pj = landmark_parent_joint()
    locs, items = [], []
    for p in pairs:
        lm, pos, glob, ok = p["landmarks"], p["pos"], p["glob"], p["clean"]
        lm, pos, glob = lm[ok], pos[ok], glob[ok]
        aspect = p["aspect"]
        img = lm[:, :, 5:7] * np.array([aspect, 1.0])
        hip = 0.5 * (img[:, 23] + img[:, 24])
        world = np.einsum("fij,fkj->fki", ray_rotation(hip - [aspect / 2, 0.5], aspect), lm[:, :, :3])
        hipmid = 0.5 * (pos[:, JOINT_INDEX["LeftUpLeg"]] + pos[:, JOINT_INDEX["RightUpLeg"]])
        abs_lm = world + hipmid[:, None]
        locs.append(np.einsum("fkji,fkj->fki", glob[:, pj], abs_lm - pos[:, pj]))
        items.append((lm, pos, glob, world, p))
    offsets = np.median(np.concatenate(locs), axis=0)

    slow, fast, yaws, scales, img_err, depth = [], [], [], [], [], []
    for lm, pos, glob, world, p in items:
        synth = place_landmarks(pos, glob, offsets)
        cam_z = synth[:, :, 2:3]
        synth = synth - 0.5 * (synth[:, 23:24] + synth[:, 24:25])
        yaw = _best_yaw(synth, world)
        yaws.append(yaw - np.median(yaw))
        turned = np.einsum("fij,fkj->fki", _roty(yaw), synth)
        scales.append(np.median(np.linalg.norm(world, axis=-1)) / np.median(np.linalg.norm(turned, axis=-1)))
        res = world - turned
        sm = _moving_average(res, 15)
        slow.append(sm)
        # per-frame jitter: std of the 2nd difference / sqrt(6), x 0.4 calibrated so the
        # synthetic acceleration matches the real one (BlazePose smooths its output)
        fast.append(0.4 * np.diff(res - sm, 2, axis=0) / np.sqrt(6.0))
        # 2D error in pixels of the image height
        d2 = np.diff(lm[:, :, 5:7] * p["height"], axis=0)
        img_err.append(np.median(np.abs(d2 - np.median(d2, axis=0))))
        zrel = cam_z[..., 0] - cam_z[:, 23:25, 0].mean(-1, keepdims=True)
        depth.append(np.polyfit(zrel.ravel(), lm[:, :, 7].ravel(), 1)[0])
    slow, fast = np.concatenate(slow), np.concatenate(fast)
    yaw_all = np.concatenate(yaws)
    return NoiseModel(
        landmark_offsets=offsets.round(5).tolist(),
        slow_std=slow.std(0).round(5).tolist(),
        fast_std=fast.std(0).round(5).tolist(),
        yaw_std=float(np.std(yaw_all)),
        scale_std=float(np.std(scales)),
        image_std_px=float(np.median(img_err)),
        depth_scale=float(np.median(depth)),
        n_frames_fitted=int(len(slow)),
    )


def fit_from_totalcapture(tc_dir: Path, exclude_sequences: tuple[str, ...]) -> NoiseModel:
    """Fit the noise model on every real BlazePose file of the shared TotalCapture package
    whose sequence is not excluded (pass the validation sequences: never fit on them)."""
    from . import totalcapture as tc  # training-only helper

    pairs = []
    for bf in tc.list_blazepose_files(tc_dir):
        if bf.sequence in exclude_sequences or tc.load_gt(tc_dir, bf.sequence).orientations is None:
            continue
        p = tc.load_aligned_pair(tc_dir, bf.name)
        cam = p["camera"]
        pairs.append(dict(landmarks=p["landmarks"], pos=p["pos"], glob=p["glob"],
                          clean=(p["flags"] & 8) > 0, aspect=cam.width / cam.height,
                          height=cam.height))
    if not pairs:
        raise ValueError("no real BlazePose pairs left to fit the noise model")
    return fit_noise_model(pairs)


def _smooth_noise(rng: np.random.Generator, n: int, shape: tuple, frames: int) -> np.ndarray:
    """Zero-mean noise (n, *shape) with unit std, correlated over ``frames`` frames."""
    if frames <= 1:
        return rng.standard_normal((n,) + shape)
    white = rng.standard_normal((n + 4 * frames,) + shape)
    sm = white
    for _ in range(3):  # three box filters ~ a Gaussian: smooth, with small 2nd differences
        sm = _moving_average(sm, frames)
    sm = sm[2 * frames:2 * frames + n]
    return sm / max(float(sm.std()), 1e-9)


def synthesize(pos: np.ndarray, glob: np.ndarray, camera: dict, model: NoiseModel,
               rng: np.random.Generator, fps: float = 60.0) -> np.ndarray:
    """Synthetic BlazePose landmarks (F, 33, 10) from ground truth in a camera's frame.

    pos (F, 21, 3) metres and glob (F, 21, 3, 3) global rotations, both in the camera frame
    (x right, y down, z forward); camera: fx, fy, cx, cy, image_width, image_height.
    """
    n = len(pos)
    w, h = float(camera["image_width"]), float(camera["image_height"])
    aspect = w / h
    k = np.asarray(model.landmark_offsets)
    x = place_landmarks(pos, glob, k)                                  # (F, 33, 3) camera
    slow_n = max(1, int(round(model.slow_frames * fps / 60)))
    # 2D: projection + jitter
    u = camera["fx"] * x[..., 0] / x[..., 2] + camera["cx"]
    v = camera["fy"] * x[..., 1] / x[..., 2] + camera["cy"]
    jit = rng.standard_normal((n, NUM_BLAZEPOSE, 2)) * model.image_std_px * h / 1080
    un, vn = (u + jit[..., 0]) / w, (v + jit[..., 1]) / h
    # World landmarks: hip-centred, scale bias, yaw drift, slow + fast per-landmark errors
    hipmid = 0.5 * (x[:, 23:24] + x[:, 24:25])
    world = (x - hipmid) * (1.0 + model.scale_std * rng.standard_normal())
    yaw = model.yaw_std * _smooth_noise(rng, n, (), 4 * slow_n)
    world = np.einsum("fij,fkj->fki", _roty(yaw), world)
    world = world + _smooth_noise(rng, n, (NUM_BLAZEPOSE, 3), slow_n) * np.asarray(model.slow_std)
    world = world + rng.standard_normal((n, NUM_BLAZEPOSE, 3)) * np.asarray(model.fast_std)
    world = world - 0.5 * (world[:, 23:24] + world[:, 24:25])
    img = np.stack([un * aspect, vn], -1)
    hip2d = 0.5 * (img[:, 23] + img[:, 24])
    world = np.einsum("fji,fkj->fki", ray_rotation(hip2d - [aspect / 2, 0.5], aspect), world)

    out = np.zeros((n, NUM_BLAZEPOSE, 10), dtype=np.float32)
    out[..., 0:3] = world
    vis = np.clip(0.995 - np.abs(rng.standard_normal((n, NUM_BLAZEPOSE))) * 0.01, 0, 1)
    out[..., 3] = out[..., 8] = vis
    out[..., 5], out[..., 6] = un, vn
    out[..., 7] = model.depth_scale * (x[..., 2] - hipmid[..., 2])
    # Detection: hips and shoulders inside the image, and random dropout bursts
    key = [BLAZEPOSE_INDEX[nm] for nm in ("left_hip", "right_hip", "left_shoulder", "right_shoulder")]
    inside = ((un[:, key] > 0) & (un[:, key] < 1) & (vn[:, key] > 0) & (vn[:, key] < 1)).all(1)
    inside &= (x[:, key, 2] > 0.3).all(1)
    detected = inside.copy()
    starts = np.flatnonzero(rng.random(n) < model.drop_rate)
    for s in starts:
        detected[s:s + int(rng.integers(1, int(fps // 2) + 1))] = False
    out[~detected] = 0
    prev = np.concatenate([[False], detected[:-1]])
    out[..., 4] = out[..., 9] = (detected & prev)[:, None]
    return out


__all__ = ["NoiseModel", "fit_noise_model", "synthesize", "place_landmarks", "landmark_parent_joint",
           "BLAZEPOSE_NAMES"]
