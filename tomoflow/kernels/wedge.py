"""The missing wedge: the Fourier region a single-axis tilt series measures, in one place.

A tilt series over [tilt_min, tilt_max] about an axis in the x-y plane (``tilt_axis`` degrees from y)
measures the Fourier components whose polar angle in the plane normal to the axis lies in that range.
Masks are in the centred layout (zero frequency at ``n // 2``). Used by alignment, averaging, template
matching, training augmentation and wedge estimation.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .geometry import box_center, reflect, rotate_volume


def wedge_mask(shape, tilt_min: float, tilt_max: float) -> np.ndarray:
    """Fourier mask (centred layout) of the region a tilt series over [tilt_min, tilt_max] about y measures."""
    kz, ky, kx = (np.arange(n) - box_center(n) for n in shape)
    kz, kx = np.meshgrid(kz, kx, indexing="ij")
    alpha = np.rad2deg(np.arctan2(kz, kx))  # polar angle from kx towards kz
    alpha = (alpha + 90.0) % 180.0 - 90.0  # fold opposite directions together: [-90, 90)
    plane = (alpha >= tilt_min - 1e-9) & (alpha <= tilt_max + 1e-9)
    plane |= (kx == 0) & (kz == 0)
    return np.broadcast_to(plane[:, None, :], shape).copy()


def particle_wedge(box: int, tilt_min: float, tilt_max: float, tilt_axis: float = 0.0) -> np.ndarray:
    """Observed Fourier region (centred layout) of a cubic subtomogram tilted about an axis in the x-y plane;
    everything when the tilt range is unknown (NaN)."""
    if not np.isfinite(tilt_min) or not np.isfinite(tilt_max):
        return np.ones((box,) * 3, bool)
    w = wedge_mask((box,) * 3, tilt_min, tilt_max)
    if tilt_axis:
        from scipy.spatial.transform import Rotation

        z = Rotation.from_euler("z", tilt_axis, degrees=True).as_matrix()
        w = rotate_volume(w.astype(np.float32), z, order=1) > 0.5
    return w


@lru_cache(maxsize=64)
def hermitian_wedge(n: int, tilt_min: float, tilt_max: float, tilt_axis: float) -> np.ndarray:
    """:func:`particle_wedge` restricted to where its mirror at -k is also observed (an interpolated, turned
    wedge need not be symmetric), so a masked real volume stays real. Sets hold few distinct wedges, so each
    is built once (read-only, shared)."""
    m = particle_wedge(n, tilt_min, tilt_max, tilt_axis)
    m = m & reflect(m, (0, 1, 2))
    m.flags.writeable = False
    return m


def wedge_of(rows: dict) -> np.ndarray:
    """(n, 3) (tilt_min, tilt_max, tilt_axis) from a particle table's columns; NaN ranges where unknown."""
    return np.stack([np.asarray(rows[k], np.float64) for k in ("tilt_min", "tilt_max", "tilt_axis")], axis=1)
