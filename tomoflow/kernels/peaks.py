"""Peaks of a response over a chunked tomogram, shared by DoG picking and template matching.

Per block: local maxima of the response in a cubic window of ``2 m + 1`` voxels, kept only inside the
block's core (a particle on a block border is found by exactly one block), plus the sums of the core's
responses. Over all blocks: candidates above ``mean + threshold * std`` of the whole response, then
greedy non-maximum suppression (strongest first). Nothing depends on the chunking.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .filters import core_of, extend


def block_peak_rows(resp: np.ndarray, ext, region, window: int, shape, *, positive: bool = False,
                    extra=()) -> tuple[np.ndarray, np.ndarray]:
    """(rows, core response) of block ``region`` from ``resp``, the response over the slices ``ext``.

    ``resp`` must be exact within ``window`` voxels of ``region`` (read with that much more halo). Rows are
    (z, y, x, score, *values of each ``extra`` array at the peak) in tomogram voxels; the last row holds
    (n, sum, sum of squares, 0, ...) of the core's responses. ``positive``: keep only maxima above 0."""
    local = extend(region, window, shape)  # the response's maxima are exact here
    lr = resp[core_of(ext, local)]
    is_max = lr == ndimage.maximum_filter(lr, size=2 * window + 1, mode="nearest")
    if positive:
        is_max &= lr > 0
    core = core_of(local, region)
    peaks = np.argwhere(is_max[core])
    c = lr[core]
    at = tuple(peaks.T)
    cols = [peaks + np.array([r.start for r in region]), c[at]]
    cols += [np.asarray(e)[core_of(ext, region)][at] for e in extra]
    width = 4 + len(extra)
    rows = np.column_stack(cols).astype(np.float64).reshape(-1, width)
    c64 = c.astype(np.float64)
    stats = np.zeros((1, width))
    stats[0, :3] = c64.size, c64.sum(), (c64 * c64).sum()
    return np.vstack([rows, stats]), c


def non_maximum_suppression(points: np.ndarray, scores: np.ndarray, min_distance: float) -> np.ndarray:
    """Indices kept by greedy NMS: strongest first, dropping any point closer than ``min_distance``
    to one already kept. Ties broken by position, so the result is deterministic."""
    from scipy.spatial import cKDTree

    order = np.lexsort((*points.T[::-1], -scores))
    tree = cKDTree(points)
    removed = np.zeros(len(points), bool)
    keep = []
    for i in order:
        if removed[i]:
            continue
        keep.append(i)
        removed[tree.query_ball_point(points[i], min_distance - 1e-9)] = True
    return np.asarray(keep, int)


def select_peaks(parts, threshold: float, min_distance: float):
    """From per-block rows (:func:`block_peak_rows`): candidates above mean + threshold * std of the whole
    response, after NMS at ``min_distance`` voxels. Returns (picks, mean, std, number above the threshold)."""
    stats = np.sum([p[-1] for p in parts], axis=0)
    cand = np.vstack([p[:-1] for p in parts])
    mean = stats[1] / stats[0]
    std = float(np.sqrt(max(stats[2] / stats[0] - mean * mean, 0.0)))
    cand = cand[cand[:, 3] > mean + threshold * std]
    return cand[non_maximum_suppression(cand[:, :3], cand[:, 3], min_distance)], float(mean), std, int(len(cand))


def level_to_angstrom(zyx: np.ndarray, level: int, voxel_size0: float) -> np.ndarray:
    """Voxel positions (z, y, x) at pyramid ``level`` -> Å of level 0 (a level-L voxel covers 2^L level-0
    voxels; its centre is (2^L - 1) / 2 from its first)."""
    f = 2**level
    return (np.asarray(zyx, np.float64) * f + (f - 1) / 2.0) * voxel_size0
