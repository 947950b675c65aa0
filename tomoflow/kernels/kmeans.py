"""k-means over-partition of per-particle features (seed 000, section 2.3), right at a million particles.

The rows come in blocks; on a cluster every block is loaded once into a worker's memory and kept there
while the centres (a small numpy array) travel to it each iteration, and each block returns partial sums (per-cluster sums and counts, inertia, and its farthest points),
as in dask-ml's Lloyd step. What differs from dask-ml's default, and why (measured on 10^6 x 22
blobs, k = 100; see benchmarks/RESULTS.md):

* Initialisation is scikit-learn's greedy k-means++ (2 + log k candidates per step) on a uniform
  sample of the rows, so all k centres are distinct points: dask-ml's k-means|| found 46 of 100.
* The tolerance is relative, as scikit-learn's: stop when the squared centre shift is below
  ``tol`` x the mean feature variance (dask-ml's absolute ``tol`` ran 161 iterations).
* A cluster that empties is re-seeded with the point farthest from its centre, so k clusters remain.
* ``inertia`` is the sum of squared distances (dask-ml's ``inertia_`` is not squared).

:func:`lloyd` runs on any "blocks" object with ``map``/``map_indexed`` (a list of arrays here, arrays kept
in workers' memory by :class:`tomoflow.engine.ResidentBlocks` in :mod:`tomoflow.ops.cluster`);
:func:`kmeans` is the arrays-in form.
"""

from __future__ import annotations

import numpy as np


def assign(x: np.ndarray, centres: np.ndarray, *, max_bytes: float = 32e6):
    """(label, squared distance) of every row of ``x`` to its nearest centre.

    Rows go through in slices whose (rows x k) distance matrix stays under ``max_bytes``, so memory is
    bounded in k as well as in the block size (k = 1000 on a 131,072-row block: 32 MB, not 1 GB)."""
    labels = np.empty(len(x), np.int32)
    dist = np.empty(len(x), np.float64)
    csq = (centres * centres).sum(1)[None, :]
    step = max(1, int(max_bytes // (8 * max(1, len(centres)))))
    for a in range(0, len(x), step):
        xs = x[a:a + step]
        d2 = (xs * xs).sum(1)[:, None] - 2.0 * (xs @ centres.T) + csq
        lab = np.argmin(d2, axis=1)
        labels[a:a + step] = lab
        dist[a:a + step] = np.maximum(d2[np.arange(len(xs)), lab], 0.0)
    return labels, dist


def partial_sums(x: np.ndarray, centres: np.ndarray, n_far: int = 0) -> dict:
    """Per-cluster sums and counts, inertia, and the ``n_far`` rows farthest from their centres."""
    k = len(centres)
    labels, d2 = assign(x, centres)
    counts = np.bincount(labels, minlength=k)
    sums = np.stack([np.bincount(labels, weights=x[:, j], minlength=k) for j in range(x.shape[1])], axis=1)
    out = {"sums": sums, "counts": counts, "inertia": float(d2.sum())}
    if n_far:
        far = np.argsort(d2)[-n_far:]
        out["far"] = (d2[far], x[far].astype(np.float64))
    return out


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ (as scikit-learn): each new centre is the best of 2 + log k candidates."""
    n = len(x)
    if n < k:
        raise ValueError(f"k-means with k = {k} needs at least {k} rows, got {n}")
    trials = 2 + int(np.log(k))
    xsq = (x * x).sum(1)
    centres = np.empty((k, x.shape[1]), x.dtype)
    first = rng.integers(n)
    centres[0] = x[first]
    closest = np.maximum(xsq - 2 * x @ x[first] + xsq[first], 0)
    for c in range(1, k):
        pot = closest.sum()
        cand = np.searchsorted(np.cumsum(closest), rng.random(trials) * pot)
        cand = np.minimum(cand, n - 1)
        d = np.maximum(xsq[:, None] - 2 * x @ x[cand].T + xsq[cand][None, :], 0)  # (n, trials)
        best = np.argmin(np.minimum(closest[:, None], d).sum(0))
        centres[c] = x[cand[best]]
        closest = np.minimum(closest, d[:, best])
    return centres


def block_stats(x: np.ndarray, n_sample: int, seed: int, block: int):
    rng = np.random.default_rng(np.random.SeedSequence([seed, block, 0x6B6D]))
    take = np.sort(rng.choice(len(x), size=min(n_sample, len(x)), replace=False))
    x64 = x.astype(np.float64)
    return len(x), x64.sum(0), (x64 * x64).sum(0), x[take]


class ListBlocks:
    """Blocks held in this process: the ``map``/``map_indexed`` calls :func:`lloyd` makes."""

    def __init__(self, blocks):
        self.data = list(blocks)

    def map(self, fn, *args):
        return [fn(d, *args) for d in self.data]

    def map_indexed(self, fn, extra):
        return [fn(e, d) for d, e in zip(self.data, extra)]


def lloyd(blocks, n_blocks: int, params, *, progress: bool | None = None, desc: str = "k-means"):
    """(centres, record) of Lloyd's k-means over ``blocks`` (2D float arrays): greedy k-means++ on a uniform
    sample of ``params.init_sample`` rows, relative tolerance, empty clusters re-seeded with the farthest
    points. The record holds iterations, convergence and how many centres were re-seeded."""
    from tqdm.auto import tqdm

    per_block = -(-params.init_sample // n_blocks)
    stats = blocks.map_indexed(lambda i, x: block_stats(x, per_block, params.seed, i), list(range(n_blocks)))
    n = sum(s[0] for s in stats)
    if n < params.k:
        raise ValueError(f"k-means with k = {params.k} needs at least {params.k} rows, got {n}")
    mean = sum(s[1] for s in stats) / n
    var = sum(s[2] for s in stats) / n - mean**2
    tol = params.tol * float(var.mean())
    sample = np.concatenate([s[3] for s in stats]).astype(np.float64)
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, 0x1A17]))
    centres = kmeans_plus_plus(sample, params.k, rng).astype(np.float32)
    bar = tqdm(total=params.max_iter, desc=desc, unit="it", leave=False,
               disable=None if progress is None else not progress)
    relocated, shift, converged, it = 0, np.inf, False, 0
    for it in range(1, params.max_iter + 1):
        parts = blocks.map(partial_sums, centres, params.k)
        sums = sum(p["sums"] for p in parts)
        counts = sum(p["counts"] for p in parts)
        new = centres.astype(np.float64).copy()
        full = counts > 0
        new[full] = sums[full] / counts[full, None]
        empty = np.flatnonzero(~full)
        if len(empty):  # re-seed with the farthest points overall
            d = np.concatenate([p["far"][0] for p in parts])
            pts = np.concatenate([p["far"][1] for p in parts])
            new[empty] = pts[np.argsort(d)[::-1][: len(empty)]]
            relocated += len(empty)
        shift = float(((new - centres) ** 2).sum())
        centres = new.astype(np.float32)
        bar.update(1)
        if shift <= tol and not len(empty):
            converged = True
            break
    bar.close()
    return centres, {"k": params.k, "iterations": it, "converged": converged, "relocated": int(relocated)}


def kmeans(x: np.ndarray, params, *, block_rows: int = 131072, progress: bool | None = False):
    """Arrays in: (labels, centres, record with sizes and squared inertia) of the rows of ``x`` (n, F)."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    blocks = [x[a:a + block_rows] for a in range(0, len(x), block_rows)]
    centres, record = lloyd(ListBlocks(blocks), len(blocks), params, progress=progress)
    labels, d2 = assign(x, centres)
    sizes = np.bincount(labels, minlength=params.k)
    return labels, centres, {**record, "inertia": float(d2.sum()), "sizes": sizes.astype(int).tolist()}
