"""Picking figures: F1 of DoG and template matching on crowded simulated tomograms (SNR 0.1, +-60
degrees), per-class recall of small complexes, and memory / throughput on a 1024 x 1024 x 256 tomogram.

    python benchmarks/bench_picking.py [--workers 2] [--workdir DIR] [--skip-large | --only-large]

Large set: 6ZU5, 4V8R, 5CVZ (>= 0.5 MDa). Small set: 6WG6 (265 kDa), 3O21 (161), 2NWL (115), 4AT1 (95).
Template matching runs one template per large class (CTF-filtered, 24^3 at 2x binning, 30-degree
step: 551 rotations) and merges the picks by non-maximum suppression at the same distance as within
one template (0.7 x the template radius), each pick keeping the class of its best template.
A hit is a pick within 80 Å of a true particle (one-to-one).
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


def report(name, res):
    per = ", ".join(f"{k} {v['recall']:.2f}" for k, v in res["per_class"].items())
    print(f"{name}: {res['n_pred']} picks / {res['n_truth']} true: precision {res['precision']:.3f}, recall "
          f"{res['recall']:.3f}, F1 {res['f1']:.3f}; recall per class: {per}", flush=True)


def simulated_figures(work: Path, workers: int) -> None:
    import pandas as pd
    from distributed import Client

    from tomoflow.engine import local_cluster
    from tomoflow.kernels.evaluate import evaluate_picks, match
    from tomoflow.kernels.peaks import non_maximum_suppression
    from tomoflow.ops.pick import pick_dog
    from tomoflow.params import DogParams
    from tomoflow.ops.simulate import simulate_tomogram
    from tomoflow.params import CrowdedSpec
    from tomoflow.store import ParticleSet, Store
    from tomoflow.ops.pick import pick_template
    from tomoflow.params import MatchParams
    from tomoflow.simulate.templates import structure_template

    store = Store.create(work / "p.zarr")
    with local_cluster(workers, dashboard=False) as cluster, Client(cluster) as client:
        for label, classes, n in (("large", LARGE, 250), ("small", SMALL + LARGE[:1], 300)):
            t = time.perf_counter()
            simulate_tomogram(store, label, CrowdedSpec(classes=classes, shape=(200, 512, 512), n_particles=n,
                                                        snr=0.1, seed=11), client=client, progress=False)
            print(f"simulated '{label}' (512 x 512 x 200, {n} particles of {', '.join(classes)}): "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
        for label in ("large", "small"):
            truth = ParticleSet(store, f"{label}_truth")
            t = time.perf_counter()
            pick_dog(store, label, f"{label}_dog", DogParams(), client=client, progress=False)
            res = evaluate_picks(ParticleSet(store, f"{label}_dog").table_frame(), truth.table_frame(), 80.0,
                                 truth.class_names)
            report(f"DoG on '{label}' ({time.perf_counter() - t:.1f} s, {workers} workers)", res)
        truth = ParticleSet(store, "large_truth").table_frame()
        frames, t = [], time.perf_counter()
        for c, name in enumerate(LARGE):
            tmpl = structure_template(name, 18.4, 24, detector_voxel=9.2)
            pick_template(store, "large", f"tm_{name}", tmpl, MatchParams(), client=client, progress=False,
                          workdir=work)
            f = ParticleSet(store, f"tm_{name}").table_frame()
            f["template"] = c
            frames.append(f)
        dt = time.perf_counter() - t
    allp = pd.concat(frames, ignore_index=True)
    keep = non_maximum_suppression(allp[["x", "y", "z"]].to_numpy(), allp.score.to_numpy(), 0.7 * 12 * 18.4)
    merged = allp.iloc[keep].reset_index(drop=True)
    report(f"template matching on 'large' (3 templates x 551 rotations, {dt:.0f} s, {workers} workers)",
           evaluate_picks(merged, truth, 80.0, list(LARGE)))
    pi, ti = match(merged[["x", "y", "z"]].to_numpy(), truth[["x", "y", "z"]].to_numpy(), 80.0)
    right = (merged.template.to_numpy()[pi] == truth.true_class.to_numpy()[ti]).mean()
    print(f"template matching: the best template's class is the true class for {right:.2f} of the hits")


def large_tomogram_figures(work: Path) -> None:
    from tomoflow.io.mrc import MrcBlockWriter

    shape = (256, 1024, 1024)
    rng = np.random.default_rng(0)
    src = work / "big.mrc"
    with MrcBlockWriter(src, shape, np.float32, 9.2) as w:
        for z0 in range(0, shape[0], 16):
            w.write(slice(z0, z0 + 16), slice(None), slice(None), rng.standard_normal((16,) + shape[1:], np.float32))
    subprocess.run([sys.executable, "-m", "tomoflow", "import-tomogram", str(work / "big.zarr"), str(src)],
                   check=True, stdout=subprocess.DEVNULL)
    nvox = int(np.prod(shape))
    for level in (1, 0):
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "tomoflow", "pick", "dog",
                            str(work / "big.zarr"), "big", "--out", f"dog{level}", "--level", str(level),
                            "--workers", "0"], capture_output=True, text=True, check=True)
        dt = time.perf_counter() - t
        peak = float(r.stdout.strip().splitlines()[-1])
        vox = nvox / 8**level
        print(f"DoG picking of 1024 x 1024 x 256 at level {level} ({vox / 1e6:.0f} M voxels), one process: "
              f"{dt:.1f} s = {vox / dt / 1e6:.2f} M voxels/s per core, peak RSS {peak:.0f} MB", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/tomoflow-pick-bench")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--skip-large", action="store_true", help="skip the 1024 x 1024 x 256 memory run")
    g.add_argument("--only-large", action="store_true", help="only the 1024 x 1024 x 256 memory run")
    a = ap.parse_args()
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"machine: {os.cpu_count()} cores", flush=True)
    if not a.only_large:
        simulated_figures(work, a.workers)
    if not a.skip_large:
        large_tomogram_figures(work)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
