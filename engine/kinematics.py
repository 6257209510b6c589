"""Forward kinematics and the conversion between joint rotations and the 22 output slots.

Shapes use F (frames, or any leading batch shape), 21 joints, 22 slots (see
``engine.skeleton``). Works on NumPy arrays and torch tensors alike (differentiable on torch).

The tree is walked level by level, not joint by joint: one batched product per depth level
(8 below the Hips) for the global rotations, and no loop at all for the local rotations and
the positions, which are one gather and one product each. The products are those of the
joint-by-joint recursion (G_j = G_parent R_j, p_j = p_parent + G_parent o_j), so the results
equal it to float rounding, and a single frame costs a few dozen array calls, not a hundred.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import rotations as rot
from .skeleton import DEFAULT_OFFSETS, NUM_JOINTS, PARENTS

Array = Any


def _stack(xs: list, axis: int) -> Array:
    return rot._stack(xs, axis)


def _levels() -> tuple[np.ndarray, np.ndarray, tuple[tuple[slice | np.ndarray, int, int], ...]]:
    """The tree in level order: joints sorted by depth, each level's joints sorted by their
    parents' places in the level above.

    Returns (order (20,): joint - 1 of each level-order place, so ``local[..., order]`` puts
    the local rotations in level order; inverse (21,): level-order place of each joint, Hips
    at 0; per level below the Hips (parents, start, end): the level's joints are places
    start..end-1 of the level order and their parents ``level_above[..., parents]``, a slice
    where they are consecutive (or one joint, which broadcasts), else an index array).
    """
    depth = [0] * NUM_JOINTS
    for j in range(1, NUM_JOINTS):
        depth[j] = depth[PARENTS[j]] + 1
    level = [[0]]
    while True:
        above = level[-1]
        nxt = sorted((j for j in range(NUM_JOINTS) if depth[j] == len(level)),
                     key=lambda j: (above.index(PARENTS[j]), j))
        if not nxt:
            break
        level.append(nxt)
    places = [j for lv in level for j in lv]
    inverse = np.argsort(places)
    steps, start = [], 1
    for above, lv in zip(level[:-1], level[1:]):
        p = [above.index(PARENTS[j]) for j in lv]
        if len(set(p)) == 1:
            parents: slice | np.ndarray = slice(p[0], p[0] + 1)   # broadcast over the level
        elif p == list(range(p[0], p[0] + len(p))):
            parents = slice(p[0], p[0] + len(p))
        else:
            parents = np.array(p)
        steps.append((parents, start, start + len(lv)))
        start += len(lv)
    return np.array(places[1:]) - 1, inverse, tuple(steps)


_LOCAL_ORDER, _GLOBAL_FROM_LEVELS, _LEVEL_STEPS = _levels()
_PARENT_INDEX = np.array(PARENTS[1:])                       # (20,) parent of joints 1..20
#: (21, 20): row j has ones at the joints (minus one) on the path Hips -> j (j included).
_PATHS = np.zeros((NUM_JOINTS, NUM_JOINTS - 1))
for _j in range(1, NUM_JOINTS):
    _k = _j
    while _k > 0:
        _PATHS[_j, _k - 1] = 1.0
        _k = PARENTS[_k]
_PATHS32 = _PATHS.astype(np.float32)


def _take(x: Array, index: np.ndarray, axis: int) -> Array:
    """x gathered at ``index`` along ``axis`` (NumPy or torch)."""
    if rot._is_torch(x):
        import torch
        return x.index_select(axis, torch.as_tensor(index, device=x.device))
    return x.take(index, axis=axis)


def _cat(xs: list, axis: int) -> Array:
    if rot._is_torch(xs[0]):
        import torch
        return torch.cat(xs, dim=axis)
    return np.concatenate(xs, axis=axis)


def _paths(like: Array) -> Array:
    """:data:`_PATHS` in ``like``'s backend, dtype and device."""
    if rot._is_torch(like):
        import torch
        return torch.as_tensor(_PATHS, dtype=like.dtype, device=like.device)
    return _PATHS32 if like.dtype == np.float32 else _PATHS.astype(like.dtype, copy=False)


def local_to_global(root: Array, local: Array) -> Array:
    """root (..., 3, 3) global Hips rotation, local (..., 20, 3, 3) for joints 1..20
    -> global rotations (..., 21, 3, 3) (bone-local -> camera frame): G_j = G_parent(j) L_j,
    one batched product per depth level of the tree."""
    local = _take(local, _LOCAL_ORDER, -3)                  # level order
    blocks = [root[..., None, :, :]]
    for parents, start, end in _LEVEL_STEPS:
        above = blocks[-1]
        par = _take(above, parents, -3) if isinstance(parents, np.ndarray) else \
            above[..., parents, :, :]
        blocks.append(par @ local[..., start - 1:end - 1, :, :])
    return _take(_cat(blocks, -3), _GLOBAL_FROM_LEVELS, -3)


def global_to_local(glob: Array) -> Array:
    """global (..., 21, 3, 3) -> local (..., 20, 3, 3): L_j = G_parent^T G_j."""
    return _take(glob, _PARENT_INDEX, -3).swapaxes(-1, -2) @ glob[..., 1:, :, :]


def forward_kinematics(glob: Array, offsets: Array | None = None) -> Array:
    """Joint positions from global rotations.

    glob: (..., 21, 3, 3) global rotations; offsets: (..., 21, 3) or (21, 3) metres in the
    parent's frame (default: the product's default body).
    Returns (..., 21, 3) metres, Hips at the origin, in the frame of ``glob``: the bones
    G_parent(j) o_j (one batched product), summed along each joint's path from the Hips (one
    product with a constant 0/1 matrix, in the order of the joint-by-joint recursion).
    """
    if offsets is None:
        offsets = DEFAULT_OFFSETS
    if rot._is_torch(glob) and not rot._is_torch(offsets):
        import torch
        offsets = torch.as_tensor(np.array(offsets), dtype=glob.dtype, device=glob.device)
    elif not rot._is_torch(glob):
        offsets = np.asarray(offsets, dtype=glob.dtype)
    bones = (_take(glob, _PARENT_INDEX, -3) @ offsets[..., 1:, :, None])[..., 0]  # (..., 20, 3)
    return _paths(bones) @ bones


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
