"""Pose normalisation baseline (seed 000 section 3.3.2, after Xu et al. 2015): centre of mass and PCA axes.

Each subtomogram is smoothed, its density (dark on a light background after the CTF: ``polarity``) taken
as weights, moved so its centre of mass is at the box centre and rotated so its principal axes lie along
x, y, z (largest variance first; each axis signed so the third moment is positive). The normalised
volumes (Fourier-binned to ``out_box``) are stored as the per-particle array ``pose_norm`` and clustered
with k-means like any feature (:mod:`tomoflow.ops.pose_norm`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .fourier import fourier_crop
from .geometry import box_center, rotate_volume


def pose_normalize(vol: np.ndarray, *, sigma: float = 1.5, polarity: str = "dark") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalised volume, rotation A, centre of mass in xyz voxels) with vol ~ rotate_volume(normalised, A, com - c)."""
    v = np.asarray(vol, np.float64)
    v = (v - v.mean()) / (v.std() + 1e-12)
    s = ndimage.gaussian_filter(v, sigma)
    w = np.clip(-s if polarity == "dark" else s, 0, None)
    w = np.where(w > w.mean() + w.std(), w, 0.0) if w.any() else np.ones_like(w)
    n = v.shape[0]
    zyx = np.indices(v.shape).reshape(3, -1).astype(np.float64)
    xyz = zyx[::-1]
    wt = w.ravel() / w.sum()
    com = xyz @ wt
    d = xyz - com[:, None]
    cov = (d * wt) @ d.T
    evals, evecs = np.linalg.eigh(cov)
    a = evecs[:, ::-1].copy()  # columns: principal axes, largest first
    proj = a.T @ d
    for i in range(3):
        if (wt * proj[i] ** 3).sum() < 0:
            a[:, i] = -a[:, i]
    if np.linalg.det(a) < 0:
        a[:, 2] = -a[:, 2]
    c = np.full(3, box_center(n), float)
    # normalised = A^T (vol moved by -(com - c)): the inverse of rotate_volume(normalised, A, com - c)
    out = rotate_volume(v, a.T, -a.T @ (com - c), order=1)
    return out, a, com


def pose_normalized_features(volumes, out_box: int = 16, polarity: str = "dark", *, centres: bool = False):
    """(n, out_box^3) float32: each volume pose-normalised and Fourier-binned to ``out_box``, as rows to cluster.
    With ``centres``: (rows, (n, 3) the centres of mass that pose normalisation moved to the box centre)."""
    out, coms = [], []
    for v in volumes:
        normed, _, com = pose_normalize(v, polarity=polarity)
        out.append(fourier_crop(normed, out_box))
        coms.append(com)
    rows = np.stack(out).reshape(len(out), -1).astype(np.float32) if out else np.zeros((0, out_box ** 3), np.float32)
    return (rows, np.asarray(coms, np.float64).reshape(-1, 3)) if centres else rows
