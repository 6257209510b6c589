"""Forward kinematics and the conversion between joint rotations and the 22 output slots.

Shapes use F (frames, or any leading batch shape), 21 joints, 22 slots (see
``engine.skeleton``). Works on NumPy arrays and torch tensors alike.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import rotations as rot
from .skeleton import DEFAULT_OFFSETS, NUM_JOINTS, PARENTS

Array = Any


def _stack(xs: list, axis: int) -> Array:
    return rot._stack(xs, axis)


def local_to_global(root: Array, local: Array) -> Array:
    """root (..., 3, 3) global Hips rotation, local (..., 20, 3, 3) for joints 1..20
    -> global rotations (..., 21, 3, 3) (bone-local -> camera frame)."""
    glob = [root]
    for j in range(1, NUM_JOINTS):
        glob.append(glob[PARENTS[j]] @ local[..., j - 1, :, :])
    return _stack(glob, axis=-3)


def global_to_local(glob: Array) -> Array:
    """global (..., 21, 3, 3) -> local (..., 20, 3, 3): L_j = G_parent^T G_j."""
    loc = []
    for j in range(1, NUM_JOINTS):
        gp = glob[..., PARENTS[j], :, :]
        loc.append(gp.swapaxes(-1, -2) @ glob[..., j, :, :] if not rot._is_torch(gp)
                   else gp.transpose(-1, -2) @ glob[..., j, :, :])
    return _stack(loc, axis=-3)


def forward_kinematics(glob: Array, offsets: Array | None = None) -> Array:
    """Joint positions from global rotations.

    glob: (..., 21, 3, 3) global rotations; offsets: (..., 21, 3) or (21, 3) metres in the
    parent's frame (default: the product's default body).
    Returns (..., 21, 3) metres, Hips at the origin, in the frame of ``glob``.
    """
    if offsets is None:
        offsets = DEFAULT_OFFSETS
    if rot._is_torch(glob) and not rot._is_torch(offsets):
        import torch
        offsets = torch.as_tensor(np.array(offsets), dtype=glob.dtype, device=glob.device)
    elif not rot._is_torch(glob):
        offsets = np.asarray(offsets, dtype=glob.dtype)
    pos = [glob[..., 0, :, 0] * 0]
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        pos.append(pos[p] + (glob[..., p, :, :] @ offsets[..., j, :, None])[..., 0])
    return _stack(pos, axis=-2)


def slots_to_rotations(slots: Array) -> tuple[Array, Array]:
    """(..., 22, 6) model output -> (root translation (..., 6), global rotations (..., 21, 3, 3))."""
    mats = rot.rotation_6d_to_matrix(slots[..., 1:, :])  # (..., 21, 3, 3): root + 20 local
    return slots[..., 0, :], local_to_global(mats[..., 0, :, :], mats[..., 1:, :, :])


def rotations_to_slots(glob: Array, root_position: Array) -> Array:
    """Targets in the output format.

    glob: (F, 21, 3, 3) global rotations in the camera frame; root_position: (F, 3) Hips
    position in the camera frame, metres. Returns (F, 22, 6): slot 0 = (per-frame displacement
    of the root (0 on the first frame), root position), slot 1 = Hips rotation 6D, slots
    2..21 = local 6D rotations.
    """
    local = global_to_local(glob)
    d6 = rot.matrix_to_rotation_6d(np.concatenate([glob[..., :1, :, :], local], axis=-3))
    vel = np.zeros_like(root_position)
    vel[1:] = root_position[1:] - root_position[:-1]
    slot0 = np.concatenate([vel, root_position], axis=-1)[..., None, :]
    return np.concatenate([slot0, d6], axis=-2).astype(np.float32)
