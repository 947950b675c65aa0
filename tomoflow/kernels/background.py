"""The user's own data without labels: where the background is, how strong the signal is, which way the contrast
goes. Used to make a training set that matches a real dataset (:mod:`tomoflow.ops.own_data`)."""

from __future__ import annotations

import numpy as np


def background_positions(shape_zyx, picks_zyx: np.ndarray, n: int, box: int, min_distance: float,
                         rng: np.random.Generator, *, tries: int = 50) -> np.ndarray:
    """Up to ``n`` voxel positions (z, y, x) of a tomogram of ``shape_zyx`` whose ``box``^3 lies inside it and
    that are at least ``min_distance`` voxels from every pick (and from each other): boxes of "background"
    (ice, membranes, whatever is not a picked particle) cut from the data itself."""
    from scipy.spatial import cKDTree

    shape = np.asarray(shape_zyx, int)
    half = box // 2
    lo, hi = np.full(3, half), shape - (box - half)
    if np.any(hi < lo):
        return np.zeros((0, 3), int)
    picks = np.asarray(picks_zyx, float).reshape(-1, 3)
    tree = cKDTree(picks) if len(picks) else None
    chosen: list[np.ndarray] = []
    for _ in range(tries):
        if len(chosen) >= n:
            break
        cand = rng.integers(lo, hi + 1, size=(4 * n, 3))
        if tree is not None:
            cand = cand[tree.query(cand, k=1)[0] >= min_distance]
        for c in cand:
            if len(chosen) >= n:
                break
            if all(np.linalg.norm(c - o) >= min_distance for o in chosen):
                chosen.append(c)
    return np.asarray(chosen, int).reshape(-1, 3)


def snr_from_background(particles: np.ndarray, background: np.ndarray) -> float:
    """SNR of picked subtomograms estimated against boxes of background from the same data: the particle boxes'
    variance is signal plus noise, the background boxes' is noise, so SNR = var(p) / var(b) - 1 (the definition
    the simulator uses: var(signal) / var(noise) in a box). A floor of 1e-3 keeps it a valid SNR when the two
    are alike."""
    vp = float(np.mean([np.var(v) for v in particles]))
    vb = float(np.mean([np.var(v) for v in background]))
    if vb <= 0:
        raise ValueError("background boxes hold no variance")
    return max(vp / vb - 1.0, 1e-3)


def detect_polarity(sample: np.ndarray) -> str:
    """"dark" (particles darker than the ice: cryo-ET as recorded, after the CTF) or "bright" (contrast inverted,
    density positive, as many reconstructions are exported): the sign of the skewness of a tomogram's values. Dense
    objects are few voxels in much ice, so their side of the distribution carries the long tail."""
    x = np.asarray(sample, np.float64).ravel()
    x = x[np.isfinite(x)]
    d = x - x.mean()
    skew = float((d**3).mean() / (d.std() ** 3 + 1e-300))
    return "bright" if skew > 0 else "dark"
