"""Saliency detection on one tomogram block (seed 002, AITom section 3.2.3; Zhou et al., BIBM 2018).

The block is cut into super-voxels by SLIC (k-means in (position, intensity) from a regular seed grid, each voxel
compared only with the centres of its own and the 26 neighbouring grid cells, a compactness weight trading
spatial against intensity distance). Each super-voxel gets a feature vector (smoothed intensity, local spread,
difference-of-Gaussian and gradient responses at a few scales), robustly standardised. The feature matrix
(super-voxels x features) is split by Robust PCA (principal component pursuit, Candès et al. 2011, solved by the
inexact augmented Lagrange multiplier method of Lin, Chen & Ma) into a low-rank part L, the background that most
super-voxels share, and a sparse part S; a super-voxel's saliency is the norm of its row of S. Mapped back to its
voxels and smoothed, the saliency map gives template-free picks (peaks, :mod:`.peaks`) and a denoiser (strong
smoothing where nothing stands out, light smoothing where something does).

Blocks: the seed grid is anchored to tomogram coordinates (not to the block), and each block is read with a halo
of a few grid steps, so a super-voxel inside the core sees the same voxels as in an unblocked run; the RPCA is
per block (the background it models is local), so a blocked run is close to, not identical with, an unblocked one.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from . import filters
from .filters import core_of, extend
from .peaks import block_peak_rows

DOG_K = 1.6  # DoG ratio of the feature bank (the usual approximation of a Laplacian of Gaussian)


# ---- Robust PCA --------------------------------------------------------------------------------------------------
def rpca(m: np.ndarray, lam: float | None = None, *, tol: float = 1e-7, max_iter: int = 500, rho: float = 1.5):
    """Principal component pursuit by inexact ALM: ``m = L + S`` minimising ||L||_* + lam ||S||_1.

    ``lam`` defaults to 1 / sqrt(max(m.shape)) (Candès et al.). Returns (L, S, iterations)."""
    m = np.asarray(m, np.float64)
    if lam is None:
        lam = 1.0 / np.sqrt(max(m.shape))
    norm_fro = np.linalg.norm(m)
    if norm_fro == 0:
        return np.zeros_like(m), np.zeros_like(m), 0
    norm_two = np.linalg.norm(m, 2)
    y = m / max(norm_two, np.abs(m).max() / lam)  # dual start: feasible for both norms' dual balls
    mu = 1.25 / norm_two
    mu_max = mu * 1e7
    low = np.zeros_like(m)
    sparse = np.zeros_like(m)
    for it in range(1, max_iter + 1):
        t = m - low + y / mu
        sparse = np.sign(t) * np.maximum(np.abs(t) - lam / mu, 0.0)  # soft threshold: prox of lam ||.||_1
        u, sv, vt = np.linalg.svd(m - sparse + y / mu, full_matrices=False)
        sv = np.maximum(sv - 1.0 / mu, 0.0)  # singular value threshold: prox of ||.||_*
        r = int(np.count_nonzero(sv))
        low = (u[:, :r] * sv[:r]) @ vt[:r]
        z = m - low - sparse
        y += mu * z
        mu = min(mu * rho, mu_max)
        if np.linalg.norm(z) < tol * norm_fro:
            break
    return low, sparse, it


# ---- SLIC super-voxels ------------------------------------------------------------------------------------------
def slic(vol: np.ndarray, spacing: int, compactness: float, iterations: int, origin=(0, 0, 0)) -> np.ndarray:
    """Super-voxel labels (int32, same shape as ``vol``) by SLIC from a regular grid of step ``spacing``.

    Distance^2 = (dI / s)^2 + compactness^2 (dx / spacing)^2, with s the robust spread of ``vol``. The grid is
    anchored at tomogram coordinates: ``origin`` is the global index of ``vol[0, 0, 0]``, so neighbouring blocks
    share their seeds. Labels index the grid cells overlapping ``vol`` (C order); cells that end empty are unused."""
    vol = np.asarray(vol, np.float32)
    step = int(spacing)
    first = [o // step for o in origin]
    ncell = [(o + n - 1) // step - f + 1 for o, n, f in zip(origin, vol.shape, first)]
    # per axis: local coordinate of each voxel and the (local) grid cell it lies in
    coords = [np.arange(n, dtype=np.float32) for n in vol.shape]
    cell = [(o + np.arange(n)) // step - f for o, n, f in zip(origin, vol.shape, first)]
    # the 2 x 2 x 2 cells whose centres are nearest: own cell and the neighbour on the side of the cell's middle
    side = [np.where((o + np.arange(n)) % step < step / 2.0, -1, 1) for o, n in zip(origin, vol.shape)]
    # initial centres: cell centres (clipped into the block), intensity there
    cz, cy, cx = np.meshgrid(*[np.clip((f + np.arange(k)) * step + (step - 1) / 2.0 - o, 0, n - 1)
                               for f, k, o, n in zip(first, ncell, origin, vol.shape)], indexing="ij")
    ci = ndimage.map_coordinates(vol, [cz.ravel(), cy.ravel(), cx.ravel()], order=1).reshape(cz.shape)
    centres = np.stack([cz, cy, cx, ci], -1).astype(np.float32)  # (kz, ky, kx, 4)
    scale = _spread(vol)
    w_int = np.float32(1.0 / scale**2)
    w_pos = np.float32((compactness / step) ** 2)
    labels = np.zeros(vol.shape, np.int32)
    for _ in range(max(1, int(iterations))):
        best = np.full(vol.shape, np.inf, np.float32)
        for d in itertools.product((0, 1), repeat=3):
            idx = [c + o * sd for c, o, sd in zip(cell, d, side)]
            ok = [(i >= 0) & (i < k) for i, k in zip(idx, ncell)]
            idx = [np.clip(i, 0, k - 1) for i, k in zip(idx, ncell)]
            iz, iy, ix = idx[0][:, None, None], idx[1][None, :, None], idx[2][None, None, :]
            c = centres[iz, iy, ix]  # (Z, Y, X, 4): the candidate centre of every voxel
            dist = w_int * (vol - c[..., 3]) ** 2 + w_pos * (
                (coords[0][:, None, None] - c[..., 0]) ** 2 + (coords[1][None, :, None] - c[..., 1]) ** 2
                + (coords[2][None, None, :] - c[..., 2]) ** 2)
            valid = ok[0][:, None, None] & ok[1][None, :, None] & ok[2][None, None, :]
            closer = valid & (dist < best)
            best = np.where(closer, dist, best)
            labels = np.where(closer, np.ravel_multi_index((iz, iy, ix), ncell).astype(np.int32), labels)
        # move each centre to the mean position and intensity of its voxels (empty cells keep theirs)
        n = np.bincount(labels.ravel(), minlength=int(np.prod(ncell)))
        flat = centres.reshape(-1, 4)
        has = n > 0
        grids = np.meshgrid(*coords, indexing="ij", sparse=True)
        for j, values in enumerate((*grids, vol)):
            s = np.bincount(labels.ravel(), np.broadcast_to(values, vol.shape).ravel(), minlength=len(n))
            flat[has, j] = s[has] / n[has]
        centres = flat.reshape(centres.shape)
    return labels


def _spread(v: np.ndarray) -> float:
    """Robust standard deviation (1.4826 x median absolute deviation), never 0."""
    v = np.asarray(v, np.float64).ravel()
    if v.size > 1_000_000:  # a strided sample is plenty for a spread
        v = v[:: v.size // 1_000_000]
    s = 1.4826 * float(np.median(np.abs(v - np.median(v))))
    return s if s > 0 else float(v.std()) or 1.0


# ---- features and saliency ---------------------------------------------------------------------------------------
def supervoxel_features(vol: np.ndarray, labels: np.ndarray, scales) -> np.ndarray:
    """Per label (rows, ``labels.max() + 1`` of them): mean and spread of the intensity, and at each scale s the
    mean DoG G(s) - G(1.6 s) and the mean gradient magnitude of G(s)."""
    vol = np.asarray(vol, np.float32)
    lab = labels.ravel()
    n = np.bincount(lab)
    cnt = np.maximum(n, 1)

    def mean(values):
        return np.bincount(lab, np.asarray(values, np.float64).ravel(), minlength=len(n)) / cnt

    m1 = mean(vol)
    cols = [m1, np.sqrt(np.maximum(mean(vol.astype(np.float64) ** 2) - m1**2, 0.0))]
    for s in scales:
        g = filters.gaussian(vol, s)
        cols.append(mean(g - filters.gaussian(vol, DOG_K * s)))
        cols.append(mean(np.sqrt(sum(x * x for x in np.gradient(g)))))
    return np.column_stack(cols)


def standardise(features: np.ndarray) -> np.ndarray:
    """Columns centred on their median and scaled by their robust spread (1.4826 MAD): outliers (the salient
    super-voxels) do not set the scale, so blocks with more or fewer particles are scaled alike."""
    f = np.asarray(features, np.float64)
    med = np.median(f, axis=0)
    mad = 1.4826 * np.median(np.abs(f - med), axis=0)
    mad[mad == 0] = 1.0
    return (f - med) / mad


def supervoxel_saliency(features: np.ndarray, sparsity: float = 1.0) -> np.ndarray:
    """Saliency of each super-voxel (row): the norm of its row of the sparse part of the standardised features,
    RPCA with lam = ``sparsity`` / sqrt(rows)."""
    f = standardise(features)
    _, s, _ = rpca(f, sparsity / np.sqrt(max(f.shape)))
    return np.linalg.norm(s, axis=1)


def halo(spacing: int, smooth: float, scales, window: int = 0) -> int:
    """Voxels of context a block needs: two grid steps for SLIC (a core voxel's centres are within a step, their
    voxels within another), the radius of the widest feature Gaussian (the DoG's second Gaussian, 1.6 times
    wider, is left slightly short: it only shifts mean responses of halo super-voxels), and ``window`` for peaks."""
    return 2 * int(spacing) + filters.gaussian_radius(max([smooth, *scales])) + int(window)


def saliency_map(vol: np.ndarray, *, spacing: int, compactness: float, iterations: int, smooth: float, scales,
                 sparsity: float, origin=(0, 0, 0)) -> np.ndarray:
    """Voxel saliency (float32) of ``vol``: its super-voxel's saliency, smoothed by a Gaussian of half a grid step
    (a super-voxel is flat; a particle spanning several gets one peak at its middle)."""
    vol = np.asarray(vol, np.float32)
    smoothed = filters.gaussian(vol, smooth) if smooth > 0 else vol
    labels = slic(smoothed, spacing, compactness, iterations, origin)
    used, labels = np.unique(labels, return_inverse=True)  # drop empty cells: rows of real super-voxels only
    labels = labels.reshape(vol.shape)
    sal = supervoxel_saliency(supervoxel_features(vol, labels, scales), sparsity)
    return filters.gaussian(sal[labels].astype(np.float32), spacing / 2.0)


def block_saliency(source, region, *, spacing: int, compactness: float, iterations: int, smooth: float, scales,
                   sparsity: float, window: int = 0):
    """(saliency over ``ext``, ``ext``) for block ``region`` of ``source`` (anything sliceable): the block read
    with :func:`halo` voxels of context. The saliency is meant for ``region`` (and ``window`` voxels around)."""
    ext = extend(region, halo(spacing, smooth, scales, window), source.shape)
    sal = saliency_map(np.asarray(source[ext]), spacing=spacing, compactness=compactness, iterations=iterations,
                       smooth=smooth, scales=scales, sparsity=sparsity, origin=tuple(e.start for e in ext))
    return sal, ext


def block_peaks(source, region, window: int, **kw) -> np.ndarray:
    """Candidate saliency peaks of block ``region``: rows (z, y, x, saliency) and the last row (n, sum, sumsq, 0)
    of the core's saliency (:func:`.peaks.block_peak_rows`)."""
    sal, ext = block_saliency(source, region, window=window, **kw)
    return block_peak_rows(sal, ext, region, window, source.shape, positive=True)[0]


def denoise(vol: np.ndarray, sal: np.ndarray, fine: float, coarse: float, scale: float) -> np.ndarray:
    """Saliency-weighted smoothing: w G(fine) + (1 - w) G(coarse), w = 1 - exp(-saliency / scale). Where nothing
    stands out (w ~ 0) noise is averaged away; salient structure keeps its detail."""
    w = 1.0 - np.exp(-np.maximum(sal, 0.0) / np.float32(scale))
    light = filters.gaussian(vol, fine) if fine > 0 else np.asarray(vol, np.float32)
    return (w * light + (1.0 - w) * filters.gaussian(vol, coarse)).astype(np.float32)


def denoise_block(source, region, *, fine: float, coarse: float, scale: float, **kw) -> np.ndarray:
    """Denoised voxels ``region`` of ``source`` (:func:`denoise` of the block's saliency)."""
    # the coarse Gaussian needs its own radius of context beyond the saliency's
    sal, ext = block_saliency(source, region, window=filters.gaussian_radius(coarse), **kw)
    vol = np.asarray(source[ext], np.float32)
    return denoise(vol, sal, fine, coarse, scale)[core_of(ext, region)]
