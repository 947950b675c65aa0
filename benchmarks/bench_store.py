"""Store figures: MRC import/export peak memory and throughput, and `tomoflow info` latency.

    python benchmarks/bench_store.py [--gib 2] [--particles 100000] [--workdir /tmp/tomoflow-bench]

Prints one line per figure. The tomogram is random float32 noise (1024 x 1024 x (256 * gib)
voxels); the particle set has a full table, a (N, 32, 32, 32) volume array with every chunk
written, a features array, and a finished stage record, as after a feature-extraction run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); sys.exit(r.returncode)")


def peak_and_time(*argv):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "tomoflow", *map(str, argv)],
                       capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1]), time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=int, default=2)
    ap.add_argument("--particles", type=int, default=100_000)
    ap.add_argument("--workdir", default="/tmp/tomoflow-bench")
    a = ap.parse_args()
    from tomoflow.io.mrc import MrcBlockWriter
    from tomoflow.store import Store, create_particle_set

    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    shape = (256 * a.gib, 1024, 1024)
    src = work / "tomo.mrc"
    rng = np.random.default_rng(0)
    with MrcBlockWriter(src, shape, np.float32, 9.2) as w:
        for z0 in range(0, shape[0], 16):
            w.write(slice(z0, z0 + 16), slice(None), slice(None), rng.standard_normal((16,) + shape[1:], np.float32))
    size_mb = src.stat().st_size / 1e6
    store = work / "project.zarr"
    peak, secs = peak_and_time("import-tomogram", store, src)
    print(f"import-tomogram {size_mb:.0f} MB MRC: peak RSS {peak:.0f} MB, {secs:.1f} s, {size_mb / secs:.0f} MB/s "
          f"(with 2x and 4x levels)")
    peak, secs = peak_and_time("export-mrc", store, "--tomogram", "tomo", "-o", work / "back.mrc")
    print(f"export-mrc {size_mb:.0f} MB: peak RSS {peak:.0f} MB, {secs:.1f} s, {size_mb / secs:.0f} MB/s")
    (work / "back.mrc").unlink()

    n, d = a.particles, 32
    s = Store.open(store)
    t = time.perf_counter()
    ps = create_particle_set(s, "picked", {"tomogram": ["tomo"] * n, "x": rng.uniform(0, 9400, n),
                                           "y": rng.uniform(0, 9400, n), "z": rng.uniform(0, 4700, n),
                                           "rot": rng.uniform(-180, 180, n)}, box_size=d, voxel_size=9.2)
    print(f"create particle set of {n} (table + volume array): {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    ones = np.ones((ps.chunk, d, d, d), np.float32)
    for i in range(ps.n_chunks):
        sl = ps.chunk_slice(i)
        ps.write_volumes(sl.start, ones[: sl.stop - sl.start])
    feats = ps.create_array("features", (22,))
    feats[:] = rng.normal(size=(n, 22)).astype(np.float32)
    rec = s.stage("features.picked", ps.n_chunks)
    for i in range(ps.n_chunks):
        rec.mark_done(i)
    print(f"wrote {ps.n_chunks} volume chunks, features and stage record: {time.perf_counter() - t:.1f} s")
    times = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tomoflow", "info", str(store)], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    print(f"tomoflow info ({size_mb:.0f} MB tomogram, {n} particles, {ps.n_chunks} chunks): "
          f"median {statistics.median(times):.2f} s, max {max(times):.2f} s over 5 cold runs")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
