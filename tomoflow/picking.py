"""Difference-of-Gaussian particle picking over chunked tomograms (seed 000, section 3.1.2).

Per block (one task each): the DoG response G(sigma) - G(K sigma) (negated for dark particles) is
computed with the halo that makes it exact, local maxima are found with a cubic window of
``2 m + 1`` voxels, and only maxima inside the block's core are kept, so a particle on a border
is found by exactly one block. Each block also returns the sums of its core responses. The driver
then thresholds all candidates at ``mean + threshold * std`` of the whole tomogram's response and
applies greedy non-maximum suppression by ``min_distance`` (strongest first). Nothing depends on
the chunking.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from . import filters
from .engine import run_chunks
from .store import Store, create_particle_set, open_level, tomogram_info
from .store.stages import StageRecord
from .blockwise import tomogram_blocks


@dataclass(frozen=True)
class DogParams:
    sigma_A: float = 70.0  # seed 000: 7 nm
    k: float = 1.1
    polarity: str = "dark"  # "dark" (particles darker than background, as after the CTF) or "bright"
    threshold: float = 2.5  # in standard deviations of the response, above its mean
    min_distance_A: float = 100.0
    level: int = 1  # pyramid level to pick on (1 = 2x binned)

    def __post_init__(self):
        if self.polarity not in ("dark", "bright"):
            raise ValueError(f"polarity is 'dark' or 'bright', not {self.polarity!r}")
        if not (self.sigma_A > 0 and self.k > 1 and self.min_distance_A > 0):
            raise ValueError("sigma and min distance must be > 0 and K > 1")


def block_peaks(source, region, sigma: float, k: float, window: int, sign: float) -> np.ndarray:
    """Candidate peaks of block ``region``: rows (z, y, x, score); the last row holds (n, sum, sumsq, 0)
    of the core responses. ``sigma`` and ``window`` in voxels."""
    halo = filters.gaussian_radius(k * sigma) + window
    ext = filters.extend(region, halo, source.shape)
    resp = sign * filters.dog(np.asarray(source[ext]), sigma, k)
    local = filters.extend(region, window, source.shape)  # response is exact here
    lr = resp[filters.core_of(ext, local)]
    is_max = (lr == ndimage.maximum_filter(lr, size=2 * window + 1, mode="nearest")) & (lr > 0)
    core = filters.core_of(local, region)
    peaks = np.argwhere(is_max[core])
    c = lr[core]
    scores = c[tuple(peaks.T)]
    origin = np.array([r.start for r in region])
    rows = np.column_stack([peaks + origin, scores]).astype(np.float64)
    stats = np.array([[c.size, float(c.sum(dtype=np.float64)), float((c.astype(np.float64) ** 2).sum()), 0.0]])
    return np.vstack([rows.reshape(-1, 4), stats])


def _pick_task(store_path: str, chunk: int, *, tomogram: str, level: int, block: int, sigma: float, k: float,
               window: int, sign: float) -> np.ndarray:
    source = open_level(Store.open(store_path, mode="r"), tomogram, level)
    return block_peaks(source, tomogram_blocks(source.shape, block)[chunk], sigma, k, window, sign)


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
    """From per-block results (candidate rows, last row = (n, sum, sumsq, ...) of the block's response):
    candidates above mean + threshold * std of the whole response, after NMS at ``min_distance`` voxels.
    Returns (picks, mean, std, number above the threshold)."""
    stats = np.sum([p[-1] for p in parts], axis=0)
    cand = np.vstack([p[:-1] for p in parts])
    mean = stats[1] / stats[0]
    std = float(np.sqrt(max(stats[2] / stats[0] - mean * mean, 0.0)))
    cand = cand[cand[:, 3] > mean + threshold * std]
    return cand[non_maximum_suppression(cand[:, :3], cand[:, 3], min_distance)], float(mean), std, int(len(cand))


def write_picks(store: Store, out: str, tomogram: str, level: int, picks: np.ndarray, columns: dict, *,
                overwrite: bool, attrs: dict):
    """Picks (rows z, y, x at pyramid ``level``, ...) as a table-only particle set: positions in Å of level 0,
    the tomogram's missing wedge, and the given extra ``columns``."""
    info = tomogram_info(store, tomogram)
    f = 2**level
    zyx = (picks[:, :3] * f + (f - 1) / 2.0) * info.voxel_size  # level-L voxel -> level-0 Å
    n = len(picks)
    tilt = info.tilt_range or (np.nan, np.nan)
    create_particle_set(store, out, {
        "tomogram": np.full(n, tomogram, dtype=object), "x": zyx[:, 2], "y": zyx[:, 1], "z": zyx[:, 0],
        "tilt_min": np.full(n, tilt[0]), "tilt_max": np.full(n, tilt[1]), "tilt_axis": np.full(n, info.tilt_axis),
        **columns}, voxel_size=info.voxel_size,
        tomograms={tomogram: {"shape": list(info.shape), "voxel_size": info.voxel_size}}, overwrite=overwrite,
        attrs=attrs)


def pick_dog(store: Store, tomogram: str, out: str, params: DogParams = DogParams(), *, client=None,
             overwrite: bool = False, progress: bool | None = None) -> dict:
    """Pick particles in ``tomogram`` into a new table-only particle set ``out``; returns a summary."""
    info = tomogram_info(store, tomogram)
    source = open_level(store, tomogram, params.level)
    vs = info.voxel_size * 2**params.level
    sigma = params.sigma_A / vs
    window = max(1, int(params.min_distance_A / vs / 2))
    work = {"tomogram": tomogram, **asdict(params), "block": info.chunk}
    stage = f"pick.{out}"
    task = functools.partial(_pick_task, tomogram=tomogram, level=params.level, block=info.chunk, sigma=sigma,
                             k=params.k, window=window, sign=1.0 if params.polarity == "bright" else -1.0)
    run_chunks(store, stage, len(tomogram_blocks(source.shape, info.chunk)), task, params=work, client=client,
               progress=progress, restart=overwrite)
    parts = list(StageRecord.open(store, stage).results().values())
    picks, mean, std, n_above = select_peaks(parts, params.threshold, params.min_distance_A / vs)
    write_picks(store, out, tomogram, params.level, picks,
                {"score": (picks[:, 3] - mean) / std if std > 0 else picks[:, 3]}, overwrite=overwrite,
                attrs={"picking": {"method": "dog", **work, "candidates": n_above, "response_mean": mean,
                                   "response_std": std}})
    n = len(picks)
    return {"picked": n, "candidates_above_threshold": n_above, "blocks": len(parts)}
