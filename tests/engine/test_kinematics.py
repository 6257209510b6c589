import numpy as np
import torch

from engine import kinematics as kin
from engine import rotations as rot
from engine.skeleton import DEFAULT_OFFSETS, PARENTS


def random_globals(f, seed=0):
    q = np.random.default_rng(seed).normal(size=(f, 21, 4))
    return rot.quaternion_to_matrix(q)


def test_fk_reproduces_totalcapture_positions(totalcapture_dir):
    import json
    d = np.load(totalcapture_dir / "gt" / "S1_freestyle1.npz")
    offsets = np.array(json.loads((totalcapture_dir / "skeleton.json").read_text())
                       ["offsets_m_per_sequence"]["S1_freestyle1"])
    g = rot.quaternion_to_matrix(d["orientations"][:200].astype(np.float64))
    pos = kin.forward_kinematics(g, offsets)
    ref = d["positions"][:200] - d["positions"][:200, :1]
    assert np.abs(pos - ref).max() < 1e-4


def test_local_global_round_trip_and_slots():
    g = random_globals(10)
    np.testing.assert_allclose(kin.local_to_global(g[:, 0], kin.global_to_local(g)), g, atol=1e-12)
    root = np.random.default_rng(1).normal(size=(10, 3))
    slots = kin.rotations_to_slots(g, root)
    assert slots.shape == (10, 22, 6)
    np.testing.assert_allclose(slots[1:, 0, :3], np.diff(root, axis=0), atol=1e-6)
    assert np.all(slots[0, 0, :3] == 0)
    trans, g2 = kin.slots_to_rotations(slots.astype(np.float64))
    np.testing.assert_allclose(g2, g, atol=1e-5)


def test_fk_bone_lengths_and_torch_agree():
    g = random_globals(5, seed=2)
    pos = kin.forward_kinematics(g)
    for j in range(1, 21):
        np.testing.assert_allclose(np.linalg.norm(pos[:, j] - pos[:, PARENTS[j]], axis=-1),
                                   np.linalg.norm(DEFAULT_OFFSETS[j]), rtol=1e-5)
    pos_t = kin.forward_kinematics(torch.from_numpy(g))
    np.testing.assert_allclose(pos_t.numpy(), pos, atol=1e-6)
