"""Saliency detection figures (issue 25, part 1): template-free saliency picking against DoG on crowded simulated
tomograms (SNR 0.1, +-60 degrees), F1 and recall per class, time and peak memory of each picker run as a
command in one process; denoising: SNR gain against the noise-free tomogram of the same seed.

    python benchmarks/bench_saliency.py [--workdir DIR] [--shape Z Y X] [--particles N]

Large set: 6ZU5, 4V8R, 5CVZ; small set: 6WG6, 3O21, 2NWL, 4AT1 with 6ZU5. A hit is a pick within 80 Å of a
true particle (one-to-one). Template matching is left to benchmarks/bench_picking.py (551 rotations per template
do not fit a short run on 2 shared cores). SNR of a tomogram x against the clean one c: r^2 / (1 - r^2),
r = corr(x, c), at pyramid level 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LARGE = ("6zu5", "4v8r", "5cvz")
SMALL = ("6wg6", "3o21", "2nwl", "4at1")
PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); sys.exit(r.returncode)")


def timed_cli(*args) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of ``tomoflow <args> --workers 0`` in a child process."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "tomoflow", *map(str, args),
                        "--workers", "0"], capture_output=True, text=True, check=True)
    return time.perf_counter() - t, float(r.stdout.strip().splitlines()[-1])


def snr(clean: np.ndarray, x: np.ndarray) -> float:
    r = np.corrcoef(clean.ravel(), x.ravel())[0, 1]
    return float(r * r / (1 - r * r))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/tomoflow-saliency-bench")
    ap.add_argument("--shape", type=int, nargs=3, default=(256, 256, 100), metavar=("X", "Y", "Z"))
    ap.add_argument("--particles", type=int, default=100)
    a = ap.parse_args()
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    from dataclasses import replace

    from tomoflow.kernels import filters
    from tomoflow.kernels.evaluate import evaluate_picks
    from tomoflow.ops.simulate import simulate_tomogram
    from tomoflow.params import CrowdedSpec
    from tomoflow.store import ParticleSet, Store, open_level

    print(f"machine: {os.cpu_count()} cores (shared); shape {a.shape[0]} x {a.shape[1]} x {a.shape[2]}, "
          f"{a.particles} particles, SNR 0.1, +-60 degrees", flush=True)
    store = Store.create(work / "s.zarr")
    shape = tuple(a.shape[::-1])
    for label, classes in (("large", LARGE), ("small", SMALL + LARGE[:1])):
        spec = CrowdedSpec(classes=classes, shape=shape, n_particles=a.particles, snr=0.1, seed=11)
        simulate_tomogram(store, label, spec, progress=False)
        simulate_tomogram(store, f"{label}_clean", replace(spec, snr=float("inf")), progress=False)
    store = str(store.path)
    for label in ("large", "small"):
        truth = ParticleSet(Store.open(store), f"{label}_truth")
        for method in ("dog", "saliency"):
            dt, peak = timed_cli("pick", method, store, label, "--out", f"{label}_{method}")
            res = evaluate_picks(ParticleSet(Store.open(store), f"{label}_{method}").table_frame(),
                                 truth.table_frame(), 80.0, truth.class_names)
            per = ", ".join(f"{k} {v['recall']:.2f}" for k, v in res["per_class"].items())
            print(f"{method} on '{label}': {res['n_pred']} picks / {res['n_truth']} true: precision "
                  f"{res['precision']:.3f}, recall {res['recall']:.3f}, F1 {res['f1']:.3f}; recall per class: {per}; "
                  f"{dt:.1f} s, peak RSS {peak:.0f} MB", flush=True)
        dt, peak = timed_cli("denoise", store, label, "--out", f"{label}_den", "--level", "1")
        s = Store.open(store)
        clean = np.asarray(open_level(s, f"{label}_clean", 1)[:])
        raw = np.asarray(open_level(s, label, 1)[:])
        den = np.asarray(open_level(s, f"{label}_den", 0)[:])
        g = filters.gaussian(raw, 2.0)
        print(f"denoise '{label}' (level 1): SNR raw {snr(clean, raw):.4f}, saliency-weighted {snr(clean, den):.4f} "
              f"(x{snr(clean, den) / snr(clean, raw):.2f}), Gaussian sigma 2 {snr(clean, g):.4f} "
              f"(x{snr(clean, g) / snr(clean, raw):.2f}); {dt:.1f} s, peak RSS {peak:.0f} MB", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
