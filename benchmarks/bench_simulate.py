"""Simulation throughput: subtomograms per second per core at 40^3, and scaling with workers.

    python benchmarks/bench_simulate.py [--per-class 40] [--box 40] [--workers 1 2]

The dataset is seed 000's setting: 4 embedded structures + empty, SNR 0.1, tilt +-60 degrees in
2-degree steps (61 images), CTF + MTF, direct Fourier inversion into a 40^3 box. Each run writes a
fresh store; the kernel figure is the in-process time per subtomogram once the per-structure
transforms are cached (what every worker reaches after its first particles).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--box", type=int, default=40)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--method", default="fourier")
    a = ap.parse_args()
    from distributed import Client

    from tomoflow.engine import local_cluster
    from tomoflow.simulate import subtomograms as S
    from tomoflow.store import Store

    spec = S.DatasetSpec(classes=("6zu5", "4v8r", "5cvz", "6wg6"), per_class=a.per_class, snrs=(0.1,),
                         tilt_ranges=(60.0,), box=a.box, method=a.method)
    print(f"machine: {os.cpu_count()} cores; dataset: {spec.n} subtomograms of {a.box}^3, 61 tilts, {a.method}")
    table = S.particle_table(spec)
    refvar = S.reference_variances(spec)
    rows = range(0, 50)
    sub = {k: v[rows.start:rows.stop] for k, v in table.items()}
    S.simulate_rows(spec, sub, range(0, 5), refvar)  # warm the caches
    t = time.perf_counter()
    S.simulate_rows(spec, sub, rows, refvar)
    per = (time.perf_counter() - t) / len(rows)
    print(f"kernel, one core: {per * 1e3:.0f} ms per subtomogram = {1 / per:.1f} subtomograms/s/core")
    base = None
    for n in a.workers:
        tmp = tempfile.mkdtemp()
        store = Store.create(os.path.join(tmp, "s.zarr"))
        with local_cluster(n, dashboard=False) as cluster, Client(cluster) as client:
            t = time.perf_counter()
            S.simulate_dataset(store, "d", spec, chunk=16, client=client, progress=False)
            wall = time.perf_counter() - t
        rate = spec.n / wall
        base = base or rate / n
        print(f"{n} worker(s): {spec.n} subtomograms in {wall:.1f} s = {rate:.1f}/s, {rate / n:.1f}/s per worker, "
              f"scaling efficiency {rate / (n * base):.2f} (includes table, reference and store writes)")
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
