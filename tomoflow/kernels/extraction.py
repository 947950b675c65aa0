"""Extraction geometry: the box of D voxels around a picked position, cut from a tomogram.

Each particle's box is centred (voxel ``D // 2``) on the tomogram voxel nearest its position at
the chosen pyramid level; parts outside the tomogram are padded with the mean of the part inside.
"""

from __future__ import annotations

import numpy as np

from .geometry import box_center


def box_origins(xyz_A: np.ndarray, voxel_size0: float, level: int, box: int) -> np.ndarray:
    """(z, y, x) index of each box's first voxel at ``level`` for positions (x, y, z) in Å."""
    f = 2**level
    centre = np.rint((xyz_A[:, ::-1] / voxel_size0 - (f - 1) / 2.0) / f).astype(np.int64)
    return centre - box_center(box)


def cut_box(volume, origin, box: int) -> np.ndarray:
    """The ``box``^3 region at ``origin`` of ``volume``; parts outside are filled with the inside's mean."""
    shape = volume.shape
    lo = np.maximum(origin, 0)
    hi = np.minimum(origin + box, shape)
    out = np.empty((box,) * 3, np.float32)
    if np.any(hi <= lo):
        out[...] = 0.0
        return out
    inside = np.asarray(volume[tuple(slice(a, b) for a, b in zip(lo, hi))], np.float32)
    out[...] = inside.mean()
    out[tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, origin))] = inside
    return out


def inside(origins: np.ndarray, box: int, shape) -> np.ndarray:
    """Which boxes at ``origins`` lie wholly inside a volume of ``shape``."""
    return np.all((origins >= 0) & (origins + box <= np.asarray(shape)), axis=1)
