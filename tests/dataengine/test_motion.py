"""BVH motion for the data engine: parsing, channel order, retarget onto TC rotations, errors.

The round trips write TotalCapture ground truth as BVH files (T-pose and A-pose rest, Y-up,
another heading, centimetres, Mixamo names) and read them back: the TC global rotations
must come back up to one constant rotation of the world.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.errors import InputError
from engine.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS

FRAMES = 40


def _euler_zxy(m: np.ndarray) -> np.ndarray:
    """(F, 3, 3) -> (F, 3) degrees (z, x, y) with m = Rz @ Rx @ Ry."""
    x = np.arcsin(np.clip(m[:, 2, 1], -1.0, 1.0))
    y = np.arctan2(-m[:, 2, 0], m[:, 2, 2])
    z = np.arctan2(-m[:, 0, 1], m[:, 1, 1])
    return np.degrees(np.stack([z, x, y], axis=1))


def _swing(a, b):
    from dataengine.bodies import swing_rotation

    return swing_rotation(a, b)


def write_bvh(path: Path, glob_tc: np.ndarray, root_tc: np.ndarray, offsets_tc: np.ndarray,
              names: list[str], a_pose_deg: float = 0.0, unit: float = 100.0) -> np.ndarray:
    """Write TC motion (global rotations (F, 21, 3, 3), Hips path (F, 3), offsets (21, 3),
    metres) as a BVH file in a Y-up world where the body faces +Z at rest, arms lowered by
    ``a_pose_deg`` in the rest pose, lengths times ``unit``. Returns W0 (TC world -> BVH world)."""
    from dataengine.bodies import HAND_SWINGS, LIMB_SWINGS

    body = np.array([[-1.0, 0, 0], [0, 0, -1.0], [0, -1.0, 0]]).T   # TC body axes -> BVH world
    c, s = np.cos(np.radians(35)), np.sin(np.radians(35))
    w0 = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])               # TC world -> BVH world
    swings = np.repeat(np.eye(3)[None], NUM_JOINTS, axis=0)
    for j, (end, d) in LIMB_SWINGS.items():
        if "Arm" in j or "ForeArm" in j:
            sign = 1.0 if j.startswith("Right") else -1.0
            a = np.radians(a_pose_deg)
            rest = body @ np.array([sign * np.cos(a), 0.0, np.sin(a)])  # arm lowered
            swings[JOINT_INDEX[j]] = _swing(body @ np.asarray(d), rest)
    for j, like in HAND_SWINGS.items():
        swings[JOINT_INDEX[j]] = swings[JOINT_INDEX[like]]
    off = np.array([swings[PARENTS[j]] @ body @ offsets_tc[j] if j else np.zeros(3)
                    for j in range(NUM_JOINTS)]) * unit
    q = w0 @ glob_tc @ np.swapaxes(body, -1, -2) @ np.swapaxes(swings, -1, -2)  # BVH globals
    lines = ["HIERARCHY"]
    depth = 0

    def emit(j: int) -> None:
        nonlocal depth
        pad = "  " * depth
        kind = "ROOT" if j == 0 else "JOINT"
        lines.append(f"{pad}{kind} {names[j]}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {off[j][0]:.6f} {off[j][1]:.6f} {off[j][2]:.6f}")
        chans = "Xposition Yposition Zposition " if j == 0 else ""
        lines.append(f"{pad}  CHANNELS {6 if j == 0 else 3} {chans}Zrotation Xrotation Yrotation")
        kids = [k for k in range(NUM_JOINTS) if PARENTS[k] == j and k]
        depth += 1
        for k in kids:
            emit(k)
        if not kids:
            lines.append(f"{pad}  End Site")
            lines.append(pad + "  {")
            lines.append(f"{pad}    OFFSET 0.0 0.0 0.0")
            lines.append(pad + "  }")
        depth -= 1
        lines.append(pad + "}")

    emit(0)
    order = []
    def visit(j):
        order.append(j)
        for k in range(NUM_JOINTS):
            if PARENTS[k] == j and k:
                visit(k)
    visit(0)
    cols = [root_tc @ w0.T * unit]
    for j in order:
        local = q[:, j] if j == 0 else np.swapaxes(q[:, PARENTS[j]], -1, -2) @ q[:, j]
        cols.append(_euler_zxy(local))
    lines += ["MOTION", f"Frames: {len(glob_tc)}", "Frame Time: 0.0083333"]
    lines += [" ".join(f"{v:.8f}" for v in row) for row in np.concatenate(cols, axis=1)]
    path.write_text("\n".join(lines) + "\n")
    return w0


@pytest.fixture(scope="module")
def tc_motion_data(totalcapture_dir):
    from training import totalcapture as tc

    gt = tc.load_gt(totalcapture_dir, "S1_acting1")
    glob = tc.gt_rotations_world(gt)[1000:1000 + FRAMES]
    offsets = tc.load_skeleton_offsets(totalcapture_dir)["S1_acting1"].astype(np.float64)
    # a straight torso (Head above Hips at rest), as the reader's body frame assumes
    offsets[1:7, 1] = 0.0
    return glob, gt.positions[1000:1000 + FRAMES, 0].astype(np.float64), offsets


def _assert_same_up_to_world_rotation(got: np.ndarray, want: np.ndarray, tol: float) -> None:
    c = got[0, 0] @ want[0, 0].T
    np.testing.assert_allclose(c @ c.T, np.eye(3), atol=1e-6)
    err = np.abs(got - c @ want).max()
    assert err < tol, err


@pytest.mark.parametrize("a_pose", [0.0, 45.0])
def test_bvh_round_trip_gives_the_tc_rotations_back(tmp_path, tc_motion_data, a_pose):
    from dataengine.motion import bvh_motion

    glob, root, offsets = tc_motion_data
    names = [f"mixamorig:{n}" for n in JOINT_NAMES]
    path = tmp_path / "take.bvh"
    write_bvh(path, glob, root, offsets, names, a_pose_deg=a_pose)
    m = bvh_motion(path)
    assert m.name == "bvh:take" and m.frames == FRAMES and m.fps == pytest.approx(120.0, rel=1e-3)
    _assert_same_up_to_world_rotation(m.rotations, glob, 1e-5)
    # the path is in the file's unit (cm), y up, centred in the ground plane
    leg = np.linalg.norm(offsets[[JOINT_INDEX["RightLeg"], JOINT_INDEX["RightFoot"]]], axis=1).sum()
    assert m.leg_length == pytest.approx(100 * leg, rel=1e-5)
    np.testing.assert_allclose(m.root[:, 1], 100 * root[:, 1], atol=1e-3)
    np.testing.assert_allclose(m.root[:, [0, 2]].mean(axis=0), 0.0, atol=1e-6)
    step = np.linalg.norm(np.diff(m.root, axis=0), axis=1)
    np.testing.assert_allclose(step, 100 * np.linalg.norm(np.diff(root, axis=0), axis=1), atol=1e-3)


def test_missing_spine_joints_follow_their_parent(tmp_path, tc_motion_data):
    from dataengine.motion import bvh_motion

    glob, root, offsets = tc_motion_data
    names = list(JOINT_NAMES)
    names[JOINT_INDEX["Spine2"]] = "Torso_Extra"      # a name nothing maps
    path = tmp_path / "fewer.bvh"
    write_bvh(path, glob, root, offsets, names)
    m = bvh_motion(path)
    np.testing.assert_allclose(m.rotations[:, JOINT_INDEX["Spine2"]],
                               m.rotations[:, JOINT_INDEX["Spine1"]])
    keep = [j for j in range(NUM_JOINTS) if j != JOINT_INDEX["Spine2"]]
    _assert_same_up_to_world_rotation(m.rotations[:, keep], glob[:, keep], 1e-5)


def test_channels_compose_in_file_order(tmp_path):
    from dataengine.motion import bvh_globals, read_bvh

    text = ("HIERARCHY\nROOT Hips\n{\n OFFSET 1 2 3\n CHANNELS 5 Xposition Yposition Zposition "
            "Xrotation Yrotation\n End Site\n {\n  OFFSET 0 1 0\n }\n}\nMOTION\nFrames: 1\n"
            "Frame Time: 0.04\n10 20 30 90 90\n")
    (tmp_path / "one.bvh").write_text(text)
    glob, pos = bvh_globals(read_bvh(tmp_path / "one.bvh"))
    rx = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    ry = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    np.testing.assert_allclose(glob[0, 0], rx @ ry, atol=1e-12)
    np.testing.assert_allclose(pos[0, 0], [11, 22, 33])


def test_the_products_own_bvh_export_is_read(tmp_path):
    """The layout ``blaze2cap animate`` exports (a Root above the Hips, Z up, Blender's XYZ
    channels) maps every joint; the Hips path follows the Root's channels."""
    from dataengine.motion import bvh_motion, map_joints, read_bvh

    lines = ["HIERARCHY", "ROOT Root", "{", " OFFSET 0 0 0",
             " CHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation"]
    from engine.skeleton import DEFAULT_OFFSETS
    body = np.array([[-1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]]).T  # TC body -> Blender (Z up)

    def emit(j, pad):
        o = body @ np.asarray(DEFAULT_OFFSETS[j]) if j else np.array([0, 0, 0.9])
        lines.extend([f"{pad}JOINT {JOINT_NAMES[j]}", pad + "{",
                      f"{pad} OFFSET {o[0]:.5f} {o[1]:.5f} {o[2]:.5f}",
                      f"{pad} CHANNELS 3 Xrotation Yrotation Zrotation"])
        kids = [k for k in range(1, NUM_JOINTS) if PARENTS[k] == j]
        for k in kids:
            emit(k, pad + " ")
        if not kids:
            lines.extend([pad + " End Site", pad + " {", pad + "  OFFSET 0 0 0.1", pad + " }"])
        lines.append(pad + "}")

    emit(0, " ")
    lines.append("}")
    n = 3 + 3 * (NUM_JOINTS + 1)
    rows = np.zeros((3, n))
    rows[:, 0] = [0.0, 1.0, 2.0]                       # walks along x
    lines += ["MOTION", "Frames: 3", "Frame Time: 0.0333333"]
    lines += [" ".join(map(str, r)) for r in rows]
    (tmp_path / "clip.bvh").write_text("\n".join(lines) + "\n")
    assert set(map_joints(read_bvh(tmp_path / "clip.bvh").names)) == set(JOINT_NAMES)
    m = bvh_motion(tmp_path / "clip.bvh")
    np.testing.assert_allclose(np.linalg.norm(np.diff(m.root, axis=0), axis=1), 1.0, atol=1e-9)
    # TC y is up (to the small lean of the default spine, whose Head is not right above the Hips)
    np.testing.assert_allclose(m.root[:, 1], 0.9, atol=1e-3)
    # rest pose: every TC joint frame is the body frame, z (down) pointing down
    g = m.rotations[0]
    np.testing.assert_allclose(g[:, :, 2] @ [0, 1, 0], -1.0, atol=1e-3)


@pytest.mark.parametrize("text, reason", [
    ("not a motion file", "does not start with HIERARCHY"),
    ("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xrotation Yrotation Zrotation\n}\n"
     "MOTION\nFrames: 2\nFrame Time: 0.03\n0 0 0\n", "2 frames of 3 channels announced"),
    ("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xrotation Yrotation Zrotation\n}\n"
     "MOTION\nFrames: 1\nFrame Time: 0.03\n0 nan 0\n", "NaN"),
    ("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 1 Wrotation\n}\n", "unknown channel"),
    ("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0\n", "ends early"),
])
def test_broken_bvh_files_give_one_line_errors(tmp_path, text, reason):
    from dataengine.motion import bvh_motion

    path = tmp_path / "bad.bvh"
    path.write_text(text)
    with pytest.raises(InputError, match=reason) as err:
        bvh_motion(path)
    assert "\n" not in str(err.value)


def test_a_skeleton_without_legs_is_refused_by_name(tmp_path):
    from dataengine.motion import map_joints

    with pytest.raises(InputError, match="RightUpLeg"):
        map_joints(["Hips", "Spine", "Head", "LeftArm", "LeftForeArm", "LeftHand", "RightArm",
                    "RightForeArm", "RightHand"])


def test_common_naming_schemes_map(tmp_path):
    from dataengine.motion import map_joints

    cmu = ["Hips", "LHipJoint", "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "RHipJoint",
           "RightUpLeg", "RightLeg", "RightFoot", "LowerBack", "Spine", "Spine1", "Neck",
           "Neck1", "Head", "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand",
           "RightShoulder", "RightArm", "RightForeArm", "RightHand"]
    got = map_joints(cmu)
    assert cmu[got["Spine"]] == "Spine" and cmu[got["LeftUpLeg"]] == "LeftUpLeg"
    assert cmu[got["Neck"]] == "Neck" and "Spine2" not in got
    generic = ["pelvis", "spine_01", "neck", "head", "thigh_l", "calf_l", "foot_l", "thigh_r",
               "calf_r", "foot_r", "upperarm_l", "lowerarm_l", "hand_l", "upperarm_r",
               "lowerarm_r", "hand_r"]
    with pytest.raises(InputError):   # Unreal-style suffixes are not guessed
        map_joints(generic)


def test_settings_name_bvh_files_by_content(tmp_path, totalcapture_dir, tc_motion_data):
    from dataengine.engine import SynthConfig, motion_catalogue

    glob, root, offsets = tc_motion_data
    path = tmp_path / "take.bvh"
    write_bvh(path, glob, root, offsets, list(JOINT_NAMES))
    cfg = SynthConfig(totalcapture=totalcapture_dir, bvh=(path,))
    before = cfg.settings()["bvh"]
    assert list(before) == ["bvh:take"]
    path.write_text(path.read_text().replace("Frame Time: 0.0083333", "Frame Time: 0.0166667"))
    assert cfg.settings()["bvh"] != before
    assert "bvh" not in SynthConfig(totalcapture=totalcapture_dir).settings()
    cat = motion_catalogue(totalcapture_dir, ("bvh:take", "S1_acting1"), (path,))
    assert cat["bvh:take"] == (FRAMES, pytest.approx(60.0, rel=1e-4))
    assert set(cat) == {"bvh:take", "S1_acting1"}
