"""Plain functions of the data engine (no anny, no Blender): cameras, BMP reading, clothing."""
from __future__ import annotations

import numpy as np

from dataengine.bodies import TC_TO_ANNY
from dataengine.cameras import ViewConfig, View, look_at, random_view, tc_view
from dataengine.render import (HAIR, SHIRT, SHOES, SKIN, TROUSERS, Look, blender_camera_matrix,
                               clothing_regions, read_bmp, sample_look)
from engine.skeleton import JOINT_INDEX
from training import totalcapture as tc


def test_tc_view_projects_like_the_calibration(totalcapture_dir):
    cam = tc.load_cameras(totalcapture_dir)[2]
    pts = tc.load_gt(totalcapture_dir, "S1_walking1").positions[::200].astype(np.float64)
    view = tc_view(cam, 640)
    k = 640 / 1920
    want = (tc.project(tc.world_to_camera(pts, cam), cam) + 0.5) * k   # pixel centres at +0.5
    got = view.project(view.to_camera(pts @ TC_TO_ANNY.T))
    np.testing.assert_allclose(got[..., 0], want[..., 0], atol=1e-6)
    # square pixels: fy = fx (the calibration's fy differs by < 0.5 %)
    np.testing.assert_allclose(got[..., 1], want[..., 1], rtol=0, atol=0.005 * 360)
    assert (view.width, view.height) == (640, 360)
    assert View.from_dict(view.to_dict()).to_dict() == view.to_dict()


def test_random_views_see_the_path_and_are_deterministic():
    root = np.stack([np.linspace(0, 1.5, 50), np.zeros(50), np.full(50, 0.9)], 1)
    cfg = ViewConfig(edge_fraction=0.0)
    for seed in range(20):
        v = random_view(np.random.default_rng(seed), root, 0.0, 1.75, cfg)
        uv = v.project(v.to_camera(root))
        assert np.isfinite(uv).all()
        assert ((uv[:, 0] > 0) & (uv[:, 0] < v.width) & (uv[:, 1] > 0) & (uv[:, 1] < v.height)).all()
        eye = -v.R.T @ v.t
        assert eye[2] >= 0.3 - 1e-9                             # above the floor
        np.testing.assert_allclose(v.R @ v.R.T, np.eye(3), atol=1e-12)
        again = random_view(np.random.default_rng(seed), root, 0.0, 1.75, cfg)
        assert again.to_dict() == v.to_dict()


def test_edge_views_put_the_body_at_an_edge():
    root = np.zeros((10, 3)) + [0.0, 0.0, 0.9]
    cfg = ViewConfig(edge_fraction=1.0)
    off = []
    for seed in range(10):
        v = random_view(np.random.default_rng(seed), root, 0.0, 1.75, cfg)
        u, w = v.project(v.to_camera(root[0]))
        off.append(max(abs(u - v.cx) / v.width, abs(w - v.cy) / v.height))
    assert min(off) > 0.29


def test_look_at_and_blender_camera_agree():
    eye, target = np.array([3.0, -4.0, 1.5]), np.array([0.0, 0.0, 1.0])
    R = look_at(eye, target)
    t = -R @ eye
    np.testing.assert_allclose(R @ target + t, [0, 0, np.linalg.norm(target - eye)], atol=1e-12)
    assert (R @ [0, 0, 1.0])[1] < 0                          # world up is image up (y down)
    m = blender_camera_matrix(R, t)
    np.testing.assert_allclose(m[:3, 3], eye, atol=1e-12)
    view_dir = -m[:3, 2]                                      # Blender cameras look down -z
    np.testing.assert_allclose(view_dir, (target - eye) / np.linalg.norm(target - eye), atol=1e-12)


def test_read_bmp_handles_row_padding_and_bottom_up_rows(tmp_path):
    h, w = 3, 5                                               # 15 bytes a row -> padded to 16
    img = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    stride = (w * 3 + 3) // 4 * 4
    rows = np.zeros((h, stride), np.uint8)
    rows[:, :w * 3] = img[::-1, :, ::-1].reshape(h, -1)      # bottom-up, BGR
    header = (b"BM" + (54 + rows.size).to_bytes(4, "little") + bytes(4) + (54).to_bytes(4, "little")
              + (40).to_bytes(4, "little") + w.to_bytes(4, "little") + h.to_bytes(4, "little")
              + (1).to_bytes(2, "little") + (24).to_bytes(2, "little") + bytes(24))
    path = tmp_path / "x.bmp"
    path.write_bytes(header + rows.tobytes())
    np.testing.assert_array_equal(read_bmp(path), img)


def test_clothing_regions_follow_the_look():
    j = JOINT_INDEX
    names = ["Spine2", "RightForeArm", "RightLeg", "LeftFoot", "Head", "Head", "Hips", "RightHand"]
    face_joint = np.array([j[n] for n in names])
    head_local = np.zeros((len(names), 3))
    head_local[4] = [0.0, 0.0, -0.15]                         # top of the head
    look = sample_look(np.random.default_rng(0), np.zeros(2), np.ones(2))
    short = Look(**{**look.__dict__, "long_sleeves": False, "long_trousers": False, "has_hair": True})
    full = Look(**{**look.__dict__, "long_sleeves": True, "long_trousers": True, "has_hair": False})
    assert clothing_regions(face_joint, head_local, short).tolist() == [
        SHIRT, SKIN, SKIN, SHOES, HAIR, SKIN, TROUSERS, SKIN]
    assert clothing_regions(face_joint, head_local, full).tolist() == [
        SHIRT, SHIRT, TROUSERS, SHOES, SKIN, SKIN, TROUSERS, SKIN]
    assert Look.from_dict(look.to_dict()) == look
