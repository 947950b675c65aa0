"""k-means at scale, side by side on the same data and machine (issue 6):

    python benchmarks/bench_cluster.py [--n 1000000] [--dim 22] [--k 100] [--workers 2] [--dask-ml]

Blobs: k Gaussian blobs in `dim` dimensions (float32, centres uniform in [-10, 10], unit spread, seed 0),
written as a per-particle array of a particle set. Ours (tomoflow.ops.cluster.kmeans on a LocalCluster of
`workers` single-threaded processes, reading from the store) against scikit-learn's KMeans (default
settings, 2 threads, data in memory) and optionally dask-ml's KMeans (default k-means|| init).
Reported: wall time, clusters found, adjusted Rand index against the true blobs, inertia.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=22)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dask-ml", action="store_true")
    a = ap.parse_args()
    from sklearn.cluster import KMeans
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score

    x, y = make_blobs(a.n, a.dim, centers=a.k, center_box=(-10, 10), random_state=0)
    x = x.astype(np.float32)
    from distributed import Client

    from tomoflow.ops.cluster import kmeans
    from tomoflow.params import KMeansParams
    from tomoflow.engine import local_cluster
    from tomoflow.store import ParticleSet, Store, create_particle_set

    work = Path(tempfile.mkdtemp(prefix="tomoflow-km-"))
    store = Store.create(work / "s.zarr")
    ps = create_particle_set(store, "p", {"x": np.zeros(a.n)}, chunk=8192)
    ps.create_array("features", (a.dim,))
    ps.array("features")[:] = x
    print(f"{a.n} x {a.dim} float32 blobs, k = {a.k}", flush=True)
    with local_cluster(a.workers, dashboard=False) as cluster, Client(cluster) as client:
        t0 = time.perf_counter()
        r = kmeans(store, "p", KMeansParams(k=a.k), client=client, progress=False)
        t_ours = time.perf_counter() - t0
    labels = ParticleSet(store, "p").rows(slice(0, a.n), ["cluster"])["cluster"]
    ari = adjusted_rand_score(y, labels)
    print(f"tomoflow ({a.workers} workers, from the store): {t_ours:.1f} s, {len(set(labels))} clusters, "
          f"{r['iterations']} iterations, ARI {ari:.4f}, inertia {r['inertia']:.5g}", flush=True)
    t0 = time.perf_counter()
    km = KMeans(a.k, random_state=0).fit(x)
    t_sk = time.perf_counter() - t0
    print(f"scikit-learn KMeans (in memory): {t_sk:.1f} s, {len(set(km.labels_))} clusters, {km.n_iter_} "
          f"iterations, ARI {adjusted_rand_score(y, km.labels_):.4f}, inertia {km.inertia_:.5g}", flush=True)
    print(f"ratio tomoflow / scikit-learn wall time: {t_ours / t_sk:.2f}", flush=True)
    if a.dask_ml:
        import dask.array as da
        from dask_ml.cluster import KMeans as DKMeans

        with local_cluster(a.workers, dashboard=False) as cluster, Client(cluster):
            t0 = time.perf_counter()
            dk = DKMeans(n_clusters=a.k, random_state=0).fit(da.from_array(x, chunks=(100_000, a.dim)))
            t_d = time.perf_counter() - t0
            lab = np.asarray(dk.labels_)
        print(f"dask-ml KMeans: {t_d:.1f} s, {len(set(lab))} clusters, {dk.n_iter_} iterations, ARI "
              f"{adjusted_rand_score(y, lab):.4f}", flush=True)


if __name__ == "__main__":
    main()
