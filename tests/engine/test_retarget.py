"""Retarget geometry without Blender: rig, camera -> world, keys reproduce the engine exactly."""
from __future__ import annotations

import numpy as np
import pytest

from engine import retarget as rt
from engine import rotations as rot
from engine.errors import InputError
from engine.kinematics import forward_kinematics
from engine.skeleton import JOINT_INDEX, JOINT_NAMES, PARENTS

RNG = np.random.default_rng(0)
# A person facing a level camera: right (+x) -> image left, up (-z) -> -y, forward (-y) -> -z.
FACING_CAMERA = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def random_quats(*shape: int) -> np.ndarray:
    return rot.standardize_quaternion(rt._unit(RNG.normal(size=shape + (4,))))


def quat_close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Max distance between quaternions up to sign."""
    return np.minimum(np.abs(a - b).max(-1), np.abs(a + b).max(-1)).max()


def pose_heads(anim: rt.BoneAnimation, rig: rt.Rig) -> np.ndarray:
    """Bone heads (F, 22, 3) as Blender computes them from the keys (no bone location but
    Root's)."""
    w = rt.pose_world_rotations(anim.local_quats, rig)
    heads = np.empty(w.shape[:2] + (3,))
    heads[:, 0] = rig.heads[0] + anim.root_location @ rig.rest[0].T
    for b in range(1, rt.NUM_BONES):
        p = rig.parents[b]
        rel = rig.rest[p].T @ (rig.heads[b] - rig.heads[p])
        heads[:, b] = heads[:, p] + w[:, p] @ rel
    return heads


def standing_clip(frames: int, camera_to_cam_tilted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upright person (rest pose, small limb noise) facing a camera, in that camera's frame."""
    glob = np.broadcast_to(FACING_CAMERA, (frames, 21, 3, 3)).copy()
    noise = rot.axis_angle_to_matrix(RNG.normal(scale=0.05, size=(frames, 21, 3)))
    glob = camera_to_cam_tilted @ (glob @ noise)
    trans = (camera_to_cam_tilted @ np.array([0.0, 0.3, 3.5]))[None].repeat(frames, 0)
    return rot.matrix_to_quaternion(glob), trans


def test_rig_names_hierarchy_and_rest_frames():
    rig = rt.build_rig()
    assert rig.bone_names == ("Root",) + JOINT_NAMES and len(rig.bone_names) == 22
    assert rig.parents[0] == -1 and rig.bone_names[rig.parents[1]] == "Root"
    for j, p in enumerate(PARENTS[1:], start=1):
        assert rig.bone_names[rig.parents[j + 1]] == JOINT_NAMES[p]
    np.testing.assert_allclose(rig.rest @ np.swapaxes(rig.rest, -1, -2), np.eye(3)[None].repeat(22, 0), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rig.rest), 1.0, atol=1e-12)
    # Bones point along their local +Y, head -> tail.
    direction = rt._unit(rig.tails - rig.heads)
    np.testing.assert_allclose(rig.rest[:, :, 1], direction, atol=1e-12)
    # Heads are the T-pose joints: the default offsets, rotated into the world.
    for j in range(1, 21):
        np.testing.assert_allclose(rig.heads[j + 1] - rig.heads[PARENTS[j] + 1],
                                   rt.JOINT_REST_TO_WORLD @ rig.offsets[j], atol=1e-12)
    # Standing on Z = 0, facing -Y: the left hand on +X, the head up, the toes forward (-Y).
    names = {n: i for i, n in enumerate(rig.bone_names)}
    assert rig.heads[names["LeftHand"], 0] > 0.5 > -0.5 > rig.heads[names["RightHand"], 0]
    assert rig.heads[names["Head"], 2] > 1.4 and abs(rig.heads[names["Hips"], :2]).max() < 1e-12
    assert rig.tails[names["LeftFoot"], 1] < rig.heads[names["LeftFoot"], 1] - 0.1
    rest_world = np.broadcast_to(rt.JOINT_REST_TO_WORLD, (1, 21, 3, 3))
    joints = rig.heads[None, 1:]
    assert rt.foot_contact_points(rest_world, joints)[..., 2].min() == pytest.approx(0, abs=1e-12)
    assert rig.connected[names["Spine"]] and not rig.connected[names["RightUpLeg"]]


def test_keys_reproduce_engine_rotations_and_positions():
    rig = rt.build_rig()
    f = 7
    q = random_quats(f, 21)
    t = RNG.normal(size=(f, 3)) + [0, 0, 4]
    anim = rt.retarget(q, t, rig=rig)
    assert anim.local_quats.shape == (f, 22, 4) and anim.root_location.shape == (f, 3)
    np.testing.assert_allclose(np.linalg.norm(anim.local_quats, axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(anim.local_quats[:, 0], [[1, 0, 0, 0]] * f, atol=1e-12)
    world = rt.pose_world_rotations(anim.local_quats, rig)
    back = rt.bone_world_to_camera_quats(world, rig, anim.placement.rotation)
    assert quat_close(back, q) < 1e-9
    # Bone heads follow the engine's FK, placed in the world.
    heads = pose_heads(anim, rig)
    glob = rot.quaternion_to_matrix(q)
    expect = anim.placement.points(forward_kinematics(glob, rig.offsets) + t[:, None])
    np.testing.assert_allclose(heads[:, 1:], expect, atol=1e-9)
    np.testing.assert_allclose(anim.world_joints, expect, atol=1e-9)


def test_local_key_is_change_of_basis_of_totalcapture_local():
    rig = rt.build_rig()
    q = random_quats(3, 21)
    anim = rt.retarget(q, np.tile([0.0, 0.0, 3.0], (3, 1)), rig=rig)
    g = rot.quaternion_to_matrix(q)
    j = JOINT_INDEX["LeftForeArm"]
    c = rig.corrections[j]
    expect = c.T @ g[:, PARENTS[j]].swapaxes(-1, -2) @ g[:, j] @ c
    assert quat_close(anim.local_quats[:, j + 1], rot.matrix_to_quaternion(expect)) < 1e-9


def test_rest_pose_facing_level_camera_gives_rest_keys_facing_front():
    q = rot.matrix_to_quaternion(np.broadcast_to(FACING_CAMERA, (4, 21, 3, 3)).copy())
    t = np.tile([0.0, 0.0, 3.0], (4, 1))
    # The estimated vertical of the T-pose is within 2 degrees of the rest frame's (the rest
    # spine leans back slightly); with a level camera given, the keys are exactly the rest.
    estimated = rt.retarget(q, t)
    assert np.degrees(np.arccos(estimated.placement.up_camera @ rt.CAMERA_UP)) < 2.0
    placement = rt.estimate_placement(rot.quaternion_to_matrix(q), t, np.ones(4, bool),
                                      rt.build_rig(), rt.RetargetConfig(),
                                      rotation=rt.LEVEL_CAMERA_TO_WORLD)
    np.testing.assert_allclose(placement.up_camera, rt.CAMERA_UP, atol=1e-12)
    anim = rt.retarget(q, t, placement=placement)
    # Identity keys everywhere: the rest pose is the engine's rest pose, facing -Y.
    assert quat_close(anim.local_quats, np.tile([1.0, 0, 0, 0], (4, 22, 1))) < 1e-9
    forward = anim.world_rots[:, 0] @ np.array([0.0, -1.0, 0.0])  # TotalCapture forward
    np.testing.assert_allclose(forward, [[0, -1, 0]] * 4, atol=1e-9)
    np.testing.assert_allclose(anim.root_location, 0.0, atol=1e-9)


@pytest.mark.parametrize("pitch_deg, roll_deg", [(0.0, 0.0), (25.0, 0.0), (-10.0, 8.0)])
def test_camera_tilt_is_removed_and_person_stands_on_floor(pitch_deg, roll_deg):
    # A camera pitched down by `pitch` (and rolled): level-camera vectors -> tilted camera.
    tilt = (rot.axis_angle_to_matrix(np.array([0, 0, np.radians(roll_deg)]))
            @ rot.axis_angle_to_matrix(np.array([np.radians(pitch_deg), 0, 0])))
    q, t = standing_clip(40, tilt)
    anim = rt.retarget(q, t, config=rt.RetargetConfig(floor_percentile=0.0))
    names = {n: i for i, n in enumerate(JOINT_NAMES)}
    spine = anim.world_joints[:, names["Neck"]] - anim.world_joints[:, names["Hips"]]
    up_angle = np.degrees(np.arccos(rt._unit(spine.mean(0)) @ [0, 0, 1]))
    assert up_angle < 2.5
    np.testing.assert_allclose(anim.placement.rotation @ tilt, rt.LEVEL_CAMERA_TO_WORLD, atol=0.05)
    contacts = rt.foot_contact_points(anim.world_rots, anim.world_joints)
    assert contacts[..., 2].min() == pytest.approx(0.0, abs=1e-9)
    assert np.abs(anim.world_joints[0, 0, :2]).max() < 1e-9  # starts above the origin


def test_totalcapture_gt_in_a_tilted_camera_recovers_vertical(totalcapture_dir):
    d = np.load(totalcapture_dir / "gt" / "S1_walking1.npz")
    glob_w = rot.quaternion_to_matrix(d["orientations"][::4].astype(np.float64))  # 15 fps
    pos_w = d["positions"][::4, 0].astype(np.float64)
    # Camera 2.4 m high looking down 20 degrees towards the capture area (y up world).
    yaw = rot.axis_angle_to_matrix(np.array([0.0, 0.7, 0.0]))
    w_to_level = np.array([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]]) @ yaw  # y up -> y down
    pitch = rot.axis_angle_to_matrix(np.array([np.radians(-20.0), 0, 0]))
    r = pitch @ w_to_level
    cam_t = np.array([0.0, 2.4, 5.0])
    glob_c = r @ glob_w
    trans_c = (pos_w - [0, 2.4, 0]) @ r.T + cam_t * [0, 0, 1]
    anim = rt.retarget(rot.matrix_to_quaternion(glob_c), trans_c)
    up_err = np.degrees(np.arccos(anim.placement.rotation[2] @ (r @ [0, 1, 0])))
    assert up_err < 3.0
    # Heights above the floor match the GT ones (GT floor y = 0) within a few centimetres.
    hips_height = anim.world_joints[:, 0, 2]
    assert np.median(np.abs(hips_height - (pos_w[:, 1] - np.median(pos_w[:, 1]) + np.median(hips_height)))) < 0.03
    # The travel keeps its length (horizontal path length within 5 %).
    gt_path = np.linalg.norm(np.diff(pos_w[:, [0, 2]], axis=0), axis=1).sum()
    path = np.linalg.norm(np.diff(anim.world_joints[:, 0, :2], axis=0), axis=1).sum()
    assert path == pytest.approx(gt_path, rel=0.05)


def test_facing_and_travel_follow_the_video():
    f = 10
    q = rot.matrix_to_quaternion(np.broadcast_to(FACING_CAMERA, (f, 21, 3, 3)).copy())
    # Walks to the image's right (+x) and towards the camera (-z).
    t = np.stack([np.linspace(0, 1, f), np.full(f, 0.3), np.linspace(4, 3, f)], axis=1)
    anim = rt.retarget(q, t)
    hips = anim.world_joints[:, 0]
    assert hips[-1, 0] - hips[0, 0] == pytest.approx(1.0, abs=1e-3)   # right -> +X
    assert hips[-1, 1] - hips[0, 1] == pytest.approx(-1.0, abs=1e-3)  # towards camera -> -Y
    still = rt.retarget(q, t, config=rt.RetargetConfig(root_motion=False))
    np.testing.assert_allclose(still.root_location[:, :2], 0.0, atol=1e-12)
    np.testing.assert_allclose(still.root_location[:, 2], anim.root_location[:, 2], atol=1e-12)


def test_smoothing_and_sign_continuity():
    f = 60
    q = rot.matrix_to_quaternion(rot.axis_angle_to_matrix(
        np.linspace(0, 3, f)[:, None, None] * [0, 0, 1] + RNG.normal(scale=0.05, size=(f, 21, 3))))
    q[::3] *= -1  # the engine's quaternions may flip sign between frames
    t = np.tile([0.0, 0.0, 3.0], (f, 1)) + RNG.normal(scale=0.02, size=(f, 3))
    raw = rt.retarget(q, t)
    assert (np.sum(raw.local_quats[1:] * raw.local_quats[:-1], -1) > 0).all()
    smooth = rt.retarget(q, t, config=rt.RetargetConfig(smoothing=2.0))
    np.testing.assert_allclose(np.linalg.norm(smooth.local_quats, axis=-1), 1.0, atol=1e-12)
    jitter = lambda x: np.abs(np.diff(x, n=2, axis=0)).mean()  # noqa: E731
    assert jitter(smooth.local_quats) < 0.5 * jitter(raw.local_quats)
    assert jitter(smooth.root_location) < 0.5 * jitter(raw.root_location)
    np.testing.assert_allclose(rt.gaussian_smooth(np.ones((5, 2)), 3.0), 1.0)


def test_bad_input_is_one_clear_error():
    with pytest.raises(InputError, match="expected global quaternions"):
        rt.retarget(np.zeros((3, 20, 4)), np.zeros((3, 3)))
    with pytest.raises(InputError, match="NaN"):
        rt.retarget(np.full((2, 21, 4), np.nan), np.zeros((2, 3)))
