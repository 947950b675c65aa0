"""Coordinate conventions used everywhere in tomoflow.

* Arrays are indexed (z, y, x). Coordinates in tables are (x, y, z) in Å.
* The centre of a box of ``n`` voxels is voxel ``n // 2`` (the FFT centre, RELION's
  convention). For odd ``n`` this is the middle voxel; for even ``n`` it is the first voxel
  of the upper half. Every rotation, shift, wedge mask and extraction uses this centre.
* Particle coordinates in the store are in Å from the centre of tomogram voxel (0, 0, 0),
  i.e. ``x_A = x_index * voxel_size``.
* RELION 5 "centered" coordinates are in Å from the tomogram centre, taken as
  ``size / 2`` voxels along each axis (``x_centered = (x_index - nx / 2) * voxel_size``).
"""

from __future__ import annotations

import numpy as np


def box_center(n: int) -> int:
    """Index of the centre voxel of a box of ``n`` voxels along one axis."""
    return int(n) // 2


def tomogram_center_angstrom(shape_zyx, voxel_size: float) -> np.ndarray:
    """(x, y, z) of the RELION 5 tomogram centre, in Å from voxel (0, 0, 0)."""
    nz, ny, nx = (float(s) for s in shape_zyx)
    return np.array([nx, ny, nz]) / 2.0 * float(voxel_size)
