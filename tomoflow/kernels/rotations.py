"""Rotation sampling: uniform random rotations (Haar), an even grid over SO(3), and angles between rotations.

Matrices act on (x, y, z) vectors; see :mod:`.geometry` for the RELION Euler convention.
"""

from __future__ import annotations

import numpy as np


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices uniform over SO(3) (Haar measure): normalised Gaussian quaternions."""
    from scipy.spatial.transform import Rotation

    q = rng.standard_normal((n, 4))
    return Rotation.from_quat(q / np.linalg.norm(q, axis=1, keepdims=True)).as_matrix()


def uniform_rotations(step_deg: float) -> np.ndarray:
    """About 8 pi^2 / step^3 rotation matrices spread evenly over SO(3) (super-Fibonacci spirals)."""
    from scipy.spatial.transform import Rotation

    n = max(1, int(np.ceil(8 * np.pi**2 / np.deg2rad(step_deg) ** 3)))
    phi, psi = np.sqrt(2.0), 1.533751168755204288118041
    s = np.arange(n) + 0.5
    r, big_r = np.sqrt(s / n), np.sqrt(1.0 - s / n)
    a, b = 2 * np.pi * s / phi, 2 * np.pi * s / psi
    q = np.stack([r * np.sin(a), r * np.cos(a), big_r * np.sin(b), big_r * np.cos(b)], axis=1)
    return Rotation.from_quat(q).as_matrix()


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees of the rotation a b^T."""
    c = (np.trace(a @ b.T) - 1) / 2
    return float(np.rad2deg(np.arccos(np.clip(c, -1, 1))))
