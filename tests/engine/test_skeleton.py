import json

import numpy as np

from engine import skeleton as sk


def test_hierarchy_is_topological_and_named():
    assert sk.NUM_JOINTS == 21 and len(sk.SLOT_NAMES) == sk.NUM_SLOTS == 22
    assert sk.PARENTS[0] == -1
    assert all(0 <= p < j for j, p in enumerate(sk.PARENTS) if j)
    assert sk.PARENTS[sk.JOINT_INDEX["LeftForeArm"]] == sk.JOINT_INDEX["LeftArm"]


def test_default_body_is_mean_of_totalcapture_subjects(totalcapture_dir):
    s = json.loads((totalcapture_dir / "skeleton.json").read_text())
    assert tuple(s["joint_names"]) == sk.JOINT_NAMES
    assert tuple(s["parents"]) == sk.PARENTS
    subj = s["offsets_m_typical_per_subject"]
    mean = np.mean([subj[k]["offsets_m"] for k in sorted(subj)], axis=0)
    np.testing.assert_allclose(sk.DEFAULT_OFFSETS, mean, atol=1e-5)


def test_mirror_permutations_are_involutions():
    p = sk.mirror_joint_permutation()
    assert (p[p] == np.arange(21)).all() and (p != np.arange(21)).sum() == 14
    b = sk.blazepose_mirror_permutation()
    assert (b[b] == np.arange(33)).all()
    assert b[sk.BLAZEPOSE_INDEX["left_wrist"]] == sk.BLAZEPOSE_INDEX["right_wrist"]


def test_eval_protocol_indices():
    names = [sk.BLAZEPOSE_NAMES[i] for i in sk.EVAL_BLAZEPOSE_INDICES]
    assert names[:3] == ["right_shoulder", "right_elbow", "right_wrist"]
    assert [sk.JOINT_NAMES[i] for i in sk.EVAL_JOINT_INDICES] == list(sk.EVAL_JOINTS)
