"""Pose normalisation baseline (seed 000 section 3.3.2, after Xu et al. 2015): centre of mass and PCA axes.

Each subtomogram is smoothed, its density (dark on a light background after the CTF: ``polarity``) taken
as weights, moved so its centre of mass is at the box centre and rotated so its principal axes lie along
x, y, z (largest variance first; each axis signed so the third moment is positive). The normalised
volumes (Fourier-binned to ``out_box``) are stored as the per-particle array ``pose_norm`` and clustered
with :func:`tomoflow.cluster.kmeans` like any feature.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from .align import fourier_crop
from .engine import run_chunks
from .geometry import box_center, rotate_volume
from .store import ParticleSet, Store


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


def _task(store_path: str, chunk: int, *, set_name: str, name: str, out_box: int, polarity: str) -> None:
    ps = ParticleSet(Store.open(store_path), set_name)
    sl = ps.chunk_slice(chunk)
    vols = ps.read_volumes(sl)
    out = [fourier_crop(pose_normalize(v, polarity=polarity)[0], out_box) for v in vols]
    ps.array(name)[sl] = np.stack(out).reshape(len(vols), -1).astype(np.float32)


def compute_pose_normalized(store: Store, set_name: str, *, name: str = "pose_norm", out_box: int = 16,
                            polarity: str = "dark", client=None, progress: bool | None = None) -> dict:
    ps = ParticleSet(store, set_name)
    ps.create_array(name, (out_box**3,), "float32", overwrite=True, attrs={"pose_norm": {"box": out_box,
                                                                                         "polarity": polarity}})
    task = functools.partial(_task, set_name=set_name, name=name, out_box=out_box, polarity=polarity)
    run = run_chunks(store, f"pose_norm.{set_name}.{name}", ps.n_chunks, task, params={"box": out_box,
                     "polarity": polarity}, client=client, restart=True, progress=progress)
    return {"particles": ps.n, "features": out_box**3, "computed": run.computed}
