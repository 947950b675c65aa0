"""k-means over-partition of per-particle features (seed 000, section 2.3), right at a million particles.

The features are read in blocks of whole particle chunks; on a cluster every block is loaded once into
a worker's memory and kept there while the centres (a small numpy array) travel to it each iteration,
and each block returns partial sums (per-cluster sums and counts, inertia, and its farthest points),
as in dask-ml's Lloyd step. What differs from dask-ml's default, and why (measured on 10^6 x 22
blobs, k = 100; see benchmarks/RESULTS.md):

* Initialisation is scikit-learn's greedy k-means++ (2 + log k candidates per step) on a uniform
  sample of the rows, so all k centres are distinct points: dask-ml's k-means|| found 46 of 100.
* The tolerance is relative, as scikit-learn's: stop when the squared centre shift is below
  ``tol`` x the mean feature variance (dask-ml's absolute ``tol`` ran 161 iterations).
* A cluster that empties is re-seeded with the point farthest from its centre, so k clusters remain.
* ``inertia`` is the sum of squared distances (dask-ml's ``inertia_`` is not squared).

Labels go into the particle table's ``cluster`` column by region; the centres, sizes and run record go
into the set's attributes and the cluster-size distribution into the curve ``<set>.cluster_sizes``.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from .store import ParticleSet, Store


@dataclass(frozen=True)
class KMeansParams:
    k: int = 100
    max_iter: int = 300
    tol: float = 1e-4  # relative to the mean feature variance, as scikit-learn
    init_sample: int = 100_000  # rows sampled for k-means++
    seed: int = 0


# ---- kernels: plain numpy on one block of rows --------------------------------------------------------
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


def _block_stats(x: np.ndarray, n_sample: int, seed: int, block: int):
    rng = np.random.default_rng(np.random.SeedSequence([seed, block, 0x6B6D]))
    take = np.sort(rng.choice(len(x), size=min(n_sample, len(x)), replace=False))
    x64 = x.astype(np.float64)
    return len(x), x64.sum(0), (x64 * x64).sum(0), x[take]


# ---- blocks of the features array ----------------------------------------------------------------------
def _load_block(store_path: str, set_name: str, array: str, start: int, stop: int) -> np.ndarray:
    ps = ParticleSet(Store.open(store_path), set_name)
    x = np.asarray(ps.array(array)[start:stop], np.float32)
    return x.reshape(len(x), -1)


def _write_labels(store_path: str, set_name: str, start: int, x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Write the block's labels; return its cluster sizes followed by its inertia."""
    labels, d2 = assign(x, centres)
    ParticleSet(Store.open(store_path), set_name).write_columns(start, {"cluster": labels})
    return np.append(np.bincount(labels, minlength=len(centres)).astype(np.float64), d2.sum())


def block_bounds(ps: ParticleSet, rows: int) -> list[tuple[int, int]]:
    """Blocks of whole particle chunks of about ``rows`` rows (so label writes align with chunks)."""
    step = max(1, rows // ps.chunk) * ps.chunk
    return [(s, min(s + step, ps.n)) for s in range(0, ps.n, step)]


class _Blocks:
    """The same calls in this process (numpy arrays) or on a distributed client (futures kept in memory)."""

    def __init__(self, client, loaders):
        self.client = client
        if client is None:
            self.data = [fn() for fn in loaders]
        else:
            self.data = [client.submit(fn, pure=False) for fn in loaders]

    def map(self, fn, *args):
        if self.client is None:
            return [fn(d, *args) for d in self.data]
        args = [self.client.scatter(a, broadcast=True) if isinstance(a, np.ndarray) and a.nbytes > 1 << 16 else a
                for a in args]
        return self.client.gather([self.client.submit(fn, d, *args, pure=False) for d in self.data])

    def map_indexed(self, fn, extra):
        if self.client is None:
            return [fn(e, d) for d, e in zip(self.data, extra)]
        return self.client.gather([self.client.submit(fn, e, d, pure=False) for d, e in zip(self.data, extra)])


def kmeans(store: Store, set_name: str, params: KMeansParams = KMeansParams(), *, features: str = "features",
           client=None, block_rows: int = 131072, progress: bool | None = None) -> dict:
    """Cluster the rows of the per-particle array ``features`` into ``params.k`` clusters (Lloyd)."""
    from tqdm.auto import tqdm

    from .errors import InputError

    ps = ParticleSet(store, set_name)
    if features not in ps.arrays():
        raise InputError(set_name, f"particle set has no array '{features}' (compute features first)")
    if ps.n < params.k:
        raise InputError(set_name, f"{ps.n} particles cannot make {params.k} clusters")
    bounds = block_bounds(ps, block_rows)
    path = str(store.path)
    blocks = _Blocks(client, [functools.partial(_load_block, path, set_name, features, a, b) for a, b in bounds])
    per_block = -(-params.init_sample // len(bounds))
    stats = blocks.map_indexed(lambda i, x: _block_stats(x, per_block, params.seed, i), list(range(len(bounds))))
    n = sum(s[0] for s in stats)
    mean = sum(s[1] for s in stats) / n
    var = sum(s[2] for s in stats) / n - mean**2
    tol = params.tol * float(var.mean())
    sample = np.concatenate([s[3] for s in stats]).astype(np.float64)
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, 0x1A17]))
    centres = kmeans_plus_plus(sample, params.k, rng).astype(np.float32)
    bar = tqdm(total=params.max_iter, desc=f"k-means {set_name}", unit="it", leave=False,
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
    final = np.sum(blocks.map_indexed(lambda b, x: _write_labels(path, set_name, b[0], x, centres), bounds), axis=0)
    sizes, inertia = final[:-1].astype(np.int64), float(final[-1])  # one pass labels and scores the final centres
    record = {"k": params.k, "features": features, "iterations": it, "converged": converged, "inertia": inertia,
              "relocated": int(relocated), "params": asdict(params), "centres": centres.tolist(),
              "sizes": sizes.astype(int).tolist()}
    ps.set_attrs({"kmeans": record})
    store.write_curve(f"{set_name}.cluster_sizes", {"cluster": np.arange(params.k), "size": sizes.astype(np.int64)},
                      attrs={"set": set_name, "features": features, "k": params.k})
    return {k: v for k, v in record.items() if k != "centres"}


def _assign_task(store_path: str, chunk: int, *, set_name: str, features: str, centres_path: str) -> None:
    ps = ParticleSet(Store.open(store_path), set_name)
    sl = ps.chunk_slice(chunk)
    x = np.asarray(ps.array(features)[sl], np.float32).reshape(sl.stop - sl.start, -1)
    labels, d2 = assign(x, np.load(centres_path))
    ps.array("cluster_assigned")[sl] = labels
    ps.array("cluster_distance")[sl] = np.sqrt(d2).astype(np.float32)


def assign_clusters(store: Store, set_name: str, centres: np.ndarray, *, features: str = "features", client=None,
                    progress: bool | None = None):
    """Label every particle of ``set_name`` with its nearest centre (e.g. the centres k-means found on
    another set): one engine task per particle chunk, resumable, into per-particle arrays
    ``cluster_assigned`` (int32) and ``cluster_distance`` (float32, Euclidean)."""
    import functools

    from .engine import run_chunks
    from .store.stages import fingerprint

    ps = ParticleSet(store, set_name)
    centres = np.asarray(centres, np.float32)
    width = int(np.prod(ps.array(features).shape[1:]))
    if centres.ndim != 2 or centres.shape[1] != width:
        from .errors import InputError

        raise InputError(set_name, f"centres of shape {centres.shape} do not match '{features}' ({width} per row)")
    key = fingerprint({"c": centres.tobytes().hex(), "f": features})
    path = store.node_path("particles", set_name) / f"centres-{key}.npy"  # beside the set: every worker reads it
    np.save(path, centres)
    stage = f"assign.{set_name}.{features}"
    fresh = not store.has("stages", stage) or store.attrs("stages", stage).get("params", {}).get("key") != key
    if fresh:
        ps.create_array("cluster_assigned", (), "int32", fill_value=-1, overwrite=True)
        ps.create_array("cluster_distance", (), "float32", overwrite=True)
    task = functools.partial(_assign_task, set_name=set_name, features=features, centres_path=str(path))
    return run_chunks(store, stage, ps.n_chunks, task, params={"key": key}, client=client, restart=fresh,
                      progress=progress)
