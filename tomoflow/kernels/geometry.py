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


# -- rotations ------------------------------------------------------------------------------
# RELION: A(rot, tilt, psi) = Rz(psi) Ry(tilt) Rz(rot) with passive elementary matrices; a particle
# with these angles is the reference actively rotated by A about the box centre:
#     particle(r) = reference(A^T (r - c)) + ...   and in Fourier space  P(k) = R(A^T k).
# (RELION's projector looks up the map at A^T (kx, ky, 0).) Vectors are (x, y, z).


def relion_matrix(rot, tilt, psi) -> np.ndarray:
    """RELION's Euler matrix A for ZYZ angles in degrees; (..., 3, 3) for array input."""
    from scipy.spatial.transform import Rotation

    angles = np.stack(np.broadcast_arrays(rot, tilt, psi), axis=-1)
    return np.swapaxes(Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix(), -1, -2)


def relion_angles(matrix) -> np.ndarray:
    """(rot, tilt, psi) in degrees with ``relion_matrix(*angles) == matrix``; tilt in [0, 180]."""
    import warnings

    from scipy.spatial.transform import Rotation

    m = np.asarray(matrix, dtype=np.float64)
    with warnings.catch_warnings():  # gimbal lock at tilt 0 or 180 is fine: the matrix is still exact
        warnings.simplefilter("ignore", UserWarning)
        return Rotation.from_matrix(np.swapaxes(m, -1, -2)).as_euler("ZYZ", degrees=True)


def rotate_volume(vol: np.ndarray, matrix: np.ndarray, shift_xyz=(0.0, 0.0, 0.0), *, order: int = 1) -> np.ndarray:
    """Actively rotate a (z, y, x) volume by ``matrix`` (on (x, y, z) vectors) about the box centre
    (``n // 2`` on each axis), then shift it by ``shift_xyz`` voxels. Outside values are 0."""
    from scipy.ndimage import affine_transform

    vol = np.asarray(vol)
    c = np.array([box_center(n) for n in vol.shape], dtype=np.float64)  # (z, y, x)
    m = np.asarray(matrix, dtype=np.float64)[::-1, ::-1].T  # A^T in (z, y, x) order
    t = np.asarray(shift_xyz, dtype=np.float64)[::-1]
    # output index o -> input index  A^T (o - c - t) + c
    offset = c - m @ (c + t)
    return affine_transform(vol, m, offset=offset, order=order, mode="constant", cval=0.0)


def reflect(volume: np.ndarray, axes: tuple) -> np.ndarray:
    """``volume`` reflected about the box centre ``n // 2`` along ``axes``: flip, then roll by one on even sides."""
    even = tuple(a for a in axes if volume.shape[a] % 2 == 0)
    out = np.flip(volume, axis=axes)
    return np.roll(out, 1, axis=even) if even else out


def sphere_mask(box: int, radius: float | None = None) -> np.ndarray:
    """Voxels of a ``box``^3 within ``radius`` (default box / 2 - 1) of the centre ``box // 2``."""
    c = box_center(box)
    r = np.sqrt(((np.indices((box,) * 3) - c) ** 2).sum(0))
    return r <= (radius if radius is not None else box / 2 - 1)
