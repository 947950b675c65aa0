"""Estimating the SNR and the missing wedge from data (seed 002, section 3.1.2).

SNR (Frank & Al-Ali): two aligned subtomograms of one structure, x = s + n1 and y = s + n2, have
correlation c = var(s) / (var(s) + var(n)), so SNR = c / (1 - c). With Fourier masks of the
observed regions (missing wedges) the correlation is taken only over coefficients observed in
both, as in constrained correlation.

Tilt range: the Fourier power of a tomogram (or of a set of subtomograms) in the kx-kz plane is
missing outside the tilt range: a point at polar angle a (mod 180 degrees, from kx towards kz) is
measured when a lies in [tilt_min, tilt_max]. The log-power angular profile is matched against
every indicator of such an interval (1-degree grid); the best-correlating interval is the estimate.
Tilting is assumed to be about the y axis.
"""

from __future__ import annotations

import numpy as np
from scipy import fft

from .geometry import box_center


def snr_from_pair(a: np.ndarray, b: np.ndarray, observed: np.ndarray | None = None) -> float:
    """SNR of two aligned subtomograms of one structure; ``observed``: Fourier mask (centred layout)
    of the coefficients measured in both."""
    if observed is None:
        c = float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])
    else:
        fa, fb = (fft.fftshift(fft.fftn(v - v.mean())) for v in (a, b))
        m = observed.astype(bool).copy()
        m[tuple(box_center(n) for n in a.shape)] = False  # DC carries no correlation information
        fa, fb = fa[m], fb[m]
        c = float(np.real(np.vdot(fa, fb)) / np.sqrt(np.vdot(fa, fa).real * np.vdot(fb, fb).real))
    c = min(c, 1 - 1e-9)
    return c / (1.0 - c)


def snr_from_pairs(volumes: np.ndarray, n_pairs: int = 100, seed: int = 0, observed=None) -> dict:
    """Mean of the per-pair SNR over ``n_pairs`` random pairs of aligned subtomograms (N, D, D, D)."""
    rng = np.random.default_rng(seed)
    n = len(volumes)
    if n < 2:
        raise ValueError("need at least two subtomograms")
    pairs = set()
    while len(pairs) < min(n_pairs, n * (n - 1) // 2):
        i, j = sorted(rng.choice(n, 2, replace=False))
        pairs.add((int(i), int(j)))
    values = np.array([snr_from_pair(volumes[i], volumes[j], observed) for i, j in sorted(pairs)])
    return {"snr": float(values.mean()), "median": float(np.median(values)), "pairs": len(values)}


def angular_profile(power_xz: np.ndarray, k_band=(0.3, 0.5)) -> np.ndarray:
    """Mean relative power per 1-degree polar-angle bin ([-90, 90)) of a (kz, kx) power plane (centred).

    Each pixel's power is divided by the mean power of its radius shell, so the radial fall-off
    does not weigh on the angles; the average is linear, so a symmetric blur of the wedge edges
    (gridding, interpolation) keeps their half-power crossing in place."""
    nz, nx = power_xz.shape
    kz = (np.arange(nz) - box_center(nz)) / nz
    kx = (np.arange(nx) - box_center(nx)) / nx
    kz, kx = np.meshgrid(kz, kx, indexing="ij")
    r = np.hypot(kz, kx)
    band = (r >= k_band[0]) & (r <= k_band[1])
    shell = np.rint(r * max(nz, nx)).astype(int)
    shell_mean = np.bincount(shell.ravel(), power_xz.ravel()) / np.maximum(np.bincount(shell.ravel()), 1)
    rel = power_xz / np.maximum(shell_mean[shell], 1e-30)
    alpha = (np.rad2deg(np.arctan2(kz, kx)) + 90.0) % 180.0 - 90.0
    bins = np.clip(np.floor(alpha[band] + 90.0).astype(int), 0, 179)
    total = np.bincount(bins, rel[band], minlength=180)
    count = np.bincount(bins, minlength=180)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def fit_tilt_range(profile: np.ndarray) -> tuple[float, float]:
    """(tilt_min, tilt_max) in degrees: the interval whose indicator best correlates with the angular
    profile, then each edge moved to where the profile crosses halfway between the median levels
    inside and outside (the edges of a measured wedge are smeared over a few degrees)."""
    lo, hi = _best_interval(profile)
    centres = np.arange(180) - 90.0 + 0.5
    ok = np.isfinite(profile)
    inside = ok & (centres >= lo) & (centres <= hi)
    outside = ok & ~((centres >= lo) & (centres <= hi))
    if not inside.any() or not outside.any():
        return lo, hi
    half = 0.5 * (np.median(profile[inside]) + np.median(profile[outside]))
    below = ok & (profile < half)
    i0 = int(np.argmin(np.abs(centres)))  # walk out from 0 degrees; stop at two bins below half in a row

    def walk(step):
        i = i0
        while 0 <= i + step < 180 and not (below[i + step] and 0 <= i + 2 * step < 180 and below[i + 2 * step]):
            i += step
        while not ok[i] or below[i]:  # back onto the last measured bin above half
            i -= step
        return i

    return float(np.floor(centres[walk(-1)])), float(np.ceil(centres[walk(1)]))


def _best_interval(profile: np.ndarray) -> tuple[float, float]:
    """The [lo, hi] (1-degree grid) whose indicator best correlates with the profile."""
    centres = np.arange(180) - 90.0 + 0.5
    ok = np.isfinite(profile)
    p = profile[ok] - profile[ok].mean()
    best, arg = -np.inf, (0.0, 0.0)
    for lo in range(-90, 1):
        for hi in range(0, 91):
            ind = ((centres >= lo) & (centres <= hi))[ok].astype(float)
            if ind.all() or not ind.any():
                continue
            ind -= ind.mean()
            score = float(p @ ind) / np.sqrt(float(ind @ ind))
            if score > best:
                best, arg = score, (float(lo), float(hi))
    return arg


def power_xz(volumes) -> np.ndarray:
    """Fourier power of one or more (z, y, x) volumes, summed over ky: a (kz, kx) plane."""
    total = None
    for v in volumes:
        v = np.asarray(v, np.float64)
        p = np.abs(fft.fftshift(fft.fftn(v - v.mean()))) ** 2
        p = p.sum(axis=1)
        total = p if total is None else total + p
    return total


def estimate_tilt_range(volumes) -> tuple[float, float]:
    """Tilt range from the Fourier amplitudes of subtomograms (N, D, D, D) or tomogram blocks."""
    return fit_tilt_range(angular_profile(power_xz(volumes)))


def tomogram_blocks_for_wedge(volume, block: int = 64, max_blocks: int = 32, seed: int = 0):
    """Random cubic blocks of a (z, y, x) tomogram (anything sliceable) to estimate its tilt range."""
    rng = np.random.default_rng(seed)
    shape = np.array(volume.shape)
    b = int(min(block, shape.min()))
    for _ in range(max_blocks):
        o = [int(rng.integers(0, s - b + 1)) for s in shape]
        yield np.asarray(volume[tuple(slice(x, x + b) for x in o)])
