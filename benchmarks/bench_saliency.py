"""Saliency detection figures (issue 25, part 1): template-free saliency picking against DoG and template matching
on the same crowded simulated tomograms (SNR 0.1, +-60 degrees), F1 and recall per class, time and peak memory of
each picker run as a command in one process; denoising: SNR gain against the noise-free tomogram of the same seed.

    python benchmarks/bench_saliency.py [--workdir DIR] [--shape X Y Z] [--particles N] [--angular-step DEG]
                                        [--no-template]

Large set: 6ZU5, 4V8R, 5CVZ; small set: 6WG6, 3O21, 2NWL, 4AT1 with 6ZU5. A hit is a pick within 80 Å of a
true particle (one-to-one). Template matching as in benchmarks/bench_picking.py: one
`tomoflow pick template --template NAME` per structure of the tomogram (defaults: 24^3 CTF-filtered template at
level 1, 5 std), picks merged by non-maximum suppression at 0.7 x the template radius, each pick keeping the class
of its best template; its time and peak RSS are the sum and the maximum over the per-template commands. DoG and
saliency pickers carry no class, so their per-class figure is recall; template matching also gets F1 per class
(a pick counts for the class of its template). SNR of a tomogram x against the clean one c: r^2 / (1 - r^2),
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


def template_picks(store: str, label: str, classes, step: float):
    """Template matching on ``label`` with one ``tomoflow pick template`` per class, picks merged by NMS at 0.7 x
    the template radius (as benchmarks/bench_picking.py). Returns (merged picks with a ``template`` column = class
    index, summed seconds, largest peak RSS in MB)."""
    import pandas as pd

    from tomoflow.kernels.peaks import non_maximum_suppression
    from tomoflow.store import ParticleSet, Store, tomogram_info

    frames, total, peak = [], 0.0, 0.0
    for c, name in enumerate(classes):
        dt, pk = timed_cli("pick", "template", store, label, "--out", f"{label}_tm_{name}", "--template", name,
                           "--angular-step", step)
        total, peak = total + dt, max(peak, pk)
        f = ParticleSet(Store.open(store), f"{label}_tm_{name}").table_frame()
        f["template"] = c
        frames.append(f)
        print(f"  template {name} on '{label}': {len(f)} picks, {dt:.1f} s, peak RSS {pk:.0f} MB", flush=True)
    allp = pd.concat(frames, ignore_index=True)
    vs = tomogram_info(Store.open(store), label).voxel_size * 2  # level 1
    keep = non_maximum_suppression(allp[["x", "y", "z"]].to_numpy(), allp.score.to_numpy(), 0.7 * 12 * vs)
    return allp.iloc[keep].reset_index(drop=True), total, peak


def snr(clean: np.ndarray, x: np.ndarray) -> float:
    r = np.corrcoef(clean.ravel(), x.ravel())[0, 1]
    return float(r * r / (1 - r * r))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/tomoflow-saliency-bench")
    ap.add_argument("--shape", type=int, nargs=3, default=(256, 256, 100), metavar=("X", "Y", "Z"))
    ap.add_argument("--particles", type=int, default=100)
    ap.add_argument("--angular-step", type=float, default=30.0, help="template matching (30: 551 rotations)")
    ap.add_argument("--no-template", action="store_true", help="skip template matching")
    a = ap.parse_args()
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    from dataclasses import replace

    from tomoflow.kernels import filters
    from tomoflow.kernels.evaluate import evaluate_picks, matched_truth
    from tomoflow.ops.simulate import simulate_tomogram
    from tomoflow.params import CrowdedSpec
    from tomoflow.store import ParticleSet, Store, open_level

    print(f"machine: {os.cpu_count()} cores (shared); shape {a.shape[0]} x {a.shape[1]} x {a.shape[2]}, "
          f"{a.particles} particles, SNR 0.1, +-60 degrees; template matching: "
          f"{'skipped' if a.no_template else f'angular step {a.angular_step:g}'}", flush=True)
    store = Store.create(work / "s.zarr")
    shape = tuple(a.shape[::-1])
    for label, classes in (("large", LARGE), ("small", SMALL + LARGE[:1])):
        spec = CrowdedSpec(classes=classes, shape=shape, n_particles=a.particles, snr=0.1, seed=11)
        simulate_tomogram(store, label, spec, progress=False)
        simulate_tomogram(store, f"{label}_clean", replace(spec, snr=float("inf")), progress=False)
    store = str(store.path)
    for label in ("large", "small"):
        truth = ParticleSet(Store.open(store), f"{label}_truth")
        tframe = truth.table_frame()
        for method in ("dog", "saliency") + (() if a.no_template else ("template",)):
            if method == "template":
                picks, dt, peak = template_picks(store, label, truth.class_names, a.angular_step)
            else:
                dt, peak = timed_cli("pick", method, store, label, "--out", f"{label}_{method}")
                picks = ParticleSet(Store.open(store), f"{label}_{method}").table_frame()
            res = evaluate_picks(picks, tframe, 80.0, truth.class_names)
            per = ", ".join(f"{k} {v['recall']:.2f}" for k, v in res["per_class"].items())
            print(f"{method} on '{label}': {res['n_pred']} picks / {res['n_truth']} true: precision "
                  f"{res['precision']:.3f}, recall {res['recall']:.3f}, F1 {res['f1']:.3f}; recall per class: {per}; "
                  f"{dt:.1f} s, peak RSS {peak:.0f} MB", flush=True)
            if method == "template":
                idx, hit = matched_truth(picks, tframe, 80.0)
                true_c = tframe.true_class.to_numpy()
                right = picks.template.to_numpy()[hit] == true_c[idx[hit]]
                f1c = []
                for c, name in enumerate(truth.class_names):
                    tp = int((hit & (picks.template.to_numpy() == c)
                              & (true_c[np.maximum(idx, 0)] == c)).sum())
                    npred, ntrue = int((picks.template == c).sum()), int((true_c == c).sum())
                    f1c.append(f"{name} {2 * tp / (npred + ntrue) if npred + ntrue else 0.0:.2f}")
                print(f"template on '{label}': F1 per class (pick labelled by its best template): {', '.join(f1c)}; "
                      f"best template's class is the true class for {right.mean() if len(right) else 0:.2f} of the "
                      f"hits", flush=True)
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
