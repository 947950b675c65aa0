"""Training-time augmentation that keeps a subtomogram one the microscope could have recorded.

:func:`wedge_preserving_turn` gives the three half turns that map the missing wedge
onto itself. :func:`rotate_in_wedge` gives any orientation: the volume is turned by a rotation uniform
over SO(3) about the box centre (``D // 2``) and then restricted, in Fourier space, to the region its
tilt range measures. The result misses the wedge in the right place (the CNN never sees a wedge where
the data cannot have one) and, in addition, the rotated image of the original wedge: it is the particle
at a new orientation seen with somewhat less data than a real one. With few training subtomograms per
class it shows the network every class at many more orientations than the set holds.
"""

from __future__ import annotations

import numpy as np

from ..kernels.geometry import reflect, rotate_volume
from ..kernels.rotations import random_rotations
from ..kernels.wedge import hermitian_wedge


def wedge_preserving_turn(volume: np.ndarray, which: int) -> np.ndarray:
    """``volume`` (z, y, x) turned 180 degrees about z (which = 1), y (2) or x (3); 0: unchanged.

    A half turn about any of the three axes maps the missing wedge of a single-axis tilt series (beam
    along z, tilt axis in the x-y plane along y or x) onto itself and keeps the hand, so the turned
    subtomogram is one the microscope could have recorded. Turns are about the box centre D // 2 (the
    project's convention): flip, then roll by one voxel on even boxes."""
    return reflect(volume, {0: (), 1: (1, 2), 2: (0, 2), 3: (0, 1)}[which])


def rotate_in_wedge(volume: np.ndarray, wedge: np.ndarray, rng: np.random.Generator,
                    matrix: np.ndarray | None = None) -> np.ndarray:
    """``volume`` (z, y, x) rotated by ``matrix`` (a random rotation from ``rng`` when None), then masked
    in Fourier space by ``wedge`` = (tilt_min, tilt_max, tilt_axis) (:func:`tomoflow.kernels.wedge.particle_wedge`)."""
    volume = np.asarray(volume, np.float32)
    if matrix is None:
        matrix = random_rotations(1, rng)[0]
    mean = float(volume.mean())  # rotate about the mean so the box corners do not step to 0
    turned = rotate_volume(volume - mean, matrix, order=1)
    f = np.fft.fftshift(np.fft.fftn(turned))  # centred layout: the zero frequency at D // 2
    f *= hermitian_wedge(volume.shape[0], *(float(w) for w in wedge))
    return (np.fft.ifftn(np.fft.ifftshift(f)).real + mean).astype(np.float32)
