"""Fourier shell correlation, resolution at a threshold, and seed 000's structural discrepancy."""

from __future__ import annotations

import numpy as np

from .fourier import half_weights, rfft_radius


def fsc(a: np.ndarray, b: np.ndarray, voxel_size: float = 1.0):
    """(spatial frequency in 1/Å per shell, FSC per shell) of two maps of the same cubic shape.

    Shell s holds the Fourier components with round(|k| n) == s, s = 0 .. n // 2 (Nyquist)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 3 or len(set(a.shape)) != 1:
        raise ValueError(f"FSC needs two cubic maps of the same shape, got {a.shape} and {b.shape}")
    n = a.shape[0]
    fa, fb = np.fft.rfftn(a), np.fft.rfftn(b)
    shell = np.rint(rfft_radius(n) * n).astype(int).ravel()
    w = np.broadcast_to(half_weights(n), fa.shape).ravel()
    nsh = n // 2 + 1
    keep = shell < nsh
    shell, w = shell[keep], w[keep]
    fa, fb = fa.ravel()[keep], fb.ravel()[keep]
    num = np.bincount(shell, w * (fa * np.conj(fb)).real, nsh)
    da = np.bincount(shell, w * np.abs(fa) ** 2, nsh)
    db = np.bincount(shell, w * np.abs(fb) ** 2, nsh)
    curve = num / np.sqrt(np.maximum(da * db, 1e-300))
    return np.arange(nsh) / (n * voxel_size), curve


def resolution(freq: np.ndarray, curve: np.ndarray, threshold: float = 0.5) -> float:
    """Resolution in Å where the FSC first falls below ``threshold`` (linear interpolation between shells,
    skipping the zero-frequency shell); the Nyquist resolution if it never does."""
    if len(curve) > 1 and curve[1] < threshold:  # below already at the first shell: nothing to interpolate from
        return float(1.0 / freq[1])
    for s in range(2, len(curve)):
        if curve[s] < threshold:
            f0, f1, c0, c1 = freq[s - 1], freq[s], curve[s - 1], curve[s]
            f = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0) if c0 != c1 else f1
            return float(1.0 / f)
    return float(1.0 / freq[-1])


def structural_discrepancy(a: np.ndarray, b: np.ndarray, voxel_size: float, *, align: bool = True,
                           threshold: float = 0.5) -> dict:
    """Seed 000's structural discrepancy: the resolution (nm) at FSC 0.5 between two maps, after aligning
    ``b`` onto ``a`` (rotation and translation, no wedge) when ``align``."""
    from ..params import AlignParams
    from .align import Reference
    from .align import align as align_pair
    from .geometry import rotate_volume

    b = np.asarray(b, np.float64)
    pose = None
    if align:
        ref = Reference(b, params=AlignParams(coarse_step=20.0, fine_step=1.0, candidates=4,
                                              max_shift=b.shape[0] / 4))
        m, t, score = align_pair(a, np.ones(a.shape, bool), ref)
        b = rotate_volume(b, m, t, order=3)
        pose = {"matrix": m.tolist(), "shift_xyz": t.tolist(), "score": score}
    freq, curve = fsc(a, b, voxel_size)
    res = resolution(freq, curve, threshold)
    return {"resolution_A": res, "discrepancy_nm": res / 10.0, "freq": freq, "fsc": curve, "pose": pose}
