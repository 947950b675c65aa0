"""k-means over a particle set's per-particle array, and assigning particles to given centres.

The array is read in blocks of whole particle chunks, kept in worker memory (:class:`~tomoflow.engine.ResidentBlocks`)
while :func:`tomoflow.kernels.kmeans.lloyd` iterates; labels go into the particle table's ``cluster`` column
by region; the centres, sizes and run record into the set's attributes and the cluster-size distribution into
the curve ``<set>.cluster_sizes``.
"""

from __future__ import annotations

import functools
from dataclasses import asdict

import numpy as np

from ..engine import ResidentBlocks
from ..errors import InputError
from ..kernels.kmeans import assign, lloyd
from ..params import KMeansParams
from ..store import ParticleSet, Store
from ..store.stages import fingerprint
from .common import fresh_arrays


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


def kmeans(store: Store, set_name: str, params: KMeansParams = KMeansParams(), *, features: str = "features",
           client=None, block_rows: int = 131072, progress: bool | None = None, overwrite: bool = False) -> dict:
    """Cluster the rows of the per-particle array ``features`` into ``params.k`` clusters (Lloyd). A ``cluster``
    column that k-means did not write (e.g. RELION classes imported from a STAR file) is replaced only with
    ``overwrite``."""
    ps = ParticleSet(store, set_name)
    if not overwrite and "kmeans" not in ps.info and (ps.rows(slice(0, ps.n), ["cluster"])["cluster"] >= 0).any():
        raise InputError(set_name, "the table's 'cluster' column holds clusters k-means did not make (imported?); "
                                   "use --overwrite to replace them")
    if features not in ps.arrays():
        raise InputError(set_name, f"particle set has no array '{features}' (compute features first)")
    if ps.n < params.k:
        raise InputError(set_name, f"{ps.n} particles cannot make {params.k} clusters")
    bounds = block_bounds(ps, block_rows)
    path = str(store.path)
    blocks = ResidentBlocks(client, [functools.partial(_load_block, path, set_name, features, a, b)
                                     for a, b in bounds])
    centres, run = lloyd(blocks, len(bounds), params, progress=progress, desc=f"k-means {set_name}")
    final = np.sum(blocks.map_indexed(lambda b, x: _write_labels(path, set_name, b[0], x, centres), bounds), axis=0)
    sizes, inertia = final[:-1].astype(np.int64), float(final[-1])  # one pass labels and scores the final centres
    record = {"k": params.k, "features": features, "iterations": run["iterations"], "converged": run["converged"],
              "inertia": inertia, "relocated": run["relocated"], "params": asdict(params),
              "centres": centres.tolist(), "sizes": sizes.astype(int).tolist()}
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
    ps = ParticleSet(store, set_name)
    centres = np.asarray(centres, np.float32)
    width = int(np.prod(ps.array(features).shape[1:]))
    if centres.ndim != 2 or centres.shape[1] != width:
        raise InputError(set_name, f"centres of shape {centres.shape} do not match '{features}' ({width} per row)")
    key = fingerprint({"c": centres.tobytes().hex(), "f": features})
    path = store.node_path("particles", set_name) / f"centres-{key}.npy"  # beside the set: every worker reads it
    np.save(path, centres)
    stage = f"assign.{set_name}.{features}"
    task = functools.partial(_assign_task, set_name=set_name, features=features, centres_path=str(path))
    return fresh_arrays(store, ps, stage, {"key": key}, [("cluster_assigned", (), "int32", -1, None),
                                                         ("cluster_distance", (), "float32", 0, None)],
                        task, client=client, progress=progress, fresh_if="params")
