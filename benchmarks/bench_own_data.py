"""Issue 20's measurement: a simulated dataset treated as a user's own (no labels reach any stage).

    python benchmarks/bench_own_data.py [--out DIR] [--workers 2 | --scheduler tcp://HOST:PORT]
                                        [--known 6zu5 4v8r] [--left-out 5cvz 6wg6] [--count 3]

Crowded tomograms are simulated with the known and the left-out structures, written out as MRC files (what a
user has), and only those files go into ``pipelines/own_tomograms.yaml``'s stages: import, wedge estimate, DoG
picking, extraction, background, a training set simulated from the *known* structures only, training, features,
k-means, averages, naming. Afterwards, and only for scoring, the picks are matched to the simulation's truth:

* known structures named correctly: clusters whose majority class is a known structure and whose average the
  report names as that structure;
* left-out structures found: clusters whose majority class is a left-out structure, named "unknown", whose average
  is within 7 nm (structural discrepancy) of the left-out structure's true map.

Prints each stage's wall time and the figures above.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scheduler")
    ap.add_argument("--known", nargs="+", default=["6zu5", "4v8r"])
    ap.add_argument("--left-out", nargs="+", default=["5cvz", "6wg6"])
    ap.add_argument("--count", type=int, default=3, help="tomograms")
    ap.add_argument("--particles", type=int, default=200, help="per tomogram")
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--per-class", type=int, default=200, help="simulated training subtomograms per structure")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--shape", type=int, nargs=3, default=[384, 384, 160], metavar=("X", "Y", "Z"))
    a = ap.parse_args()

    from tomoflow.io.mrc import write_mrc
    from tomoflow.kernels.evaluate import matched_truth
    from tomoflow.kernels.fsc import structural_discrepancy
    from tomoflow.ops.simulate import simulate_tomogram
    from tomoflow.params import CrowdedSpec
    from tomoflow.pipeline import parse_pipeline, run_pipeline
    from tomoflow.simulate.templates import structure_template
    from tomoflow.store import ParticleSet, Store

    out = Path(a.out or tempfile.mkdtemp(prefix="tomoflow-own-"))
    out.mkdir(parents=True, exist_ok=True)
    truth_store = Store.open(out / "truth.zarr", create=True)
    (out / "tomograms").mkdir(exist_ok=True)
    classes = tuple(a.known) + tuple(a.left_out)
    t0 = time.perf_counter()
    for i in range(a.count):
        spec = CrowdedSpec(classes=classes, shape=tuple(a.shape[::-1]), n_particles=a.particles, snr=0.5,
                           tilt_range=60.0, seed=100 + i)
        simulate_tomogram(truth_store, f"tomo{i}", spec, progress=False)
        vol = truth_store.group("tomograms", f"tomo{i}")["0"][...]
        write_mrc(out / "tomograms" / f"tomo{i}.mrc", vol, spec.voxel_size)
    print(f"simulated {a.count} tomograms with {classes} in {time.perf_counter() - t0:.0f} s (the user's data)")

    doc = {"name": "own", "store": "own.zarr", "stages": [
        {"import_tomograms": {"files": ["tomograms/*.mrc"]}}, "estimate_wedge",
        {"pick": {"polarity": "auto", "sigma": 70, "threshold": 2.5, "min_distance": 100, "level": 1}},
        {"extract": {"box": 32, "flip_bright": True}}, {"cut_background": {"per_tomogram": 100, "box": 32}},
        {"simulate_training": {"structures": list(a.known), "per_class": a.per_class}},
        {"train": {"set": "training", "epochs": a.epochs, "batch_size": 32, "optimizer": "adam",
                   "learning_rate": 0.001}},
        {"features": {"set": "particles"}}, {"cluster": {"set": "particles", "k": a.k}},
        {"average": {"set": "particles", "classes": 1, "iterations": 5, "min_members": 10}},
        {"match_structures": {"structures": list(a.known)}},
        {"report": {"set": "particles", "training": "training"}},
        {"export_clusters": {"set": "particles", "out": "results"}}]}
    rec = run_pipeline(parse_pipeline(doc, "own.yaml"), out=out, scheduler=a.scheduler,
                       local=None if a.scheduler else a.workers, performance_report=False)
    for s in rec["stages"]:
        print(f"stage {s['type']}: {s['seconds']:.1f} s")

    # scoring only: the truth is read here, after every stage has run
    store = Store.open(out / "own.zarr")
    ps = ParticleSet(store, "particles")
    picks = ps.table_frame(["tomogram", "x", "y", "z", "cluster"])
    truth = []
    for i in range(a.count):
        t = ParticleSet(truth_store, f"tomo{i}_truth").table_frame(["tomogram", "x", "y", "z", "true_class"])
        truth.append(t)
    import pandas as pd

    truth = pd.concat(truth, ignore_index=True)
    idx, ok = matched_truth(picks, truth, 80.0)
    cls = np.full(len(picks), -1)
    cls[ok] = truth.true_class.to_numpy()[idx[ok]]
    maps, vs, info = store.read_map("average")
    matches = {m["cluster"]: m for m in info.get("matches", [])}
    named, found, rows = 0, 0, []
    for i, r in enumerate(info["results"]):
        c = r["cluster"]
        members = cls[picks.cluster.to_numpy() == c]
        real = members[members >= 0]
        major = classes[int(np.bincount(real).argmax())] if len(real) else "background"
        m = matches.get(c, {})
        d_true = None
        if major in classes:
            d_true = structural_discrepancy(structure_template(major, vs, maps.shape[-1], resolution=2 * vs), maps[i],
                                            vs)["discrepancy_nm"]
        ok_known = major in a.known and m.get("match") == major
        ok_new = major in a.left_out and m.get("match") == "unknown" and d_true is not None and d_true < 7.0
        named += ok_known
        found += ok_new
        rows.append({"cluster": c, "members": r["members"], "majority": major,
                     "purity": float(np.mean(members == classes.index(major))) if major in classes else None,
                     "named": m.get("match"), "discrepancy_to_majority_nm": d_true})
    print(json.dumps(rows, indent=1))
    known_named = len({r["majority"] for r in rows if r["majority"] in a.known and r["named"] == r["majority"]})
    new_found = len({r["majority"] for r in rows if r["majority"] in a.left_out and r["named"] == "unknown"
                     and (r["discrepancy_to_majority_nm"] or 99) < 7.0})
    print(f"known structures named correctly: {known_named}/{len(a.known)} ({named} clusters); left-out structures "
          f"found as 'unknown' clusters under 7 nm: {new_found}/{len(a.left_out)} ({found} clusters)")


if __name__ == "__main__":
    main()
