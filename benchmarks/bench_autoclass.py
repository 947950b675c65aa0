"""Automatic classification figures (issue 25, part 3): mixtures of 2-5 simulated structures (true poses: the
alignment's errors are left out), classify-auto as a command in this process: classes found against the truth,
purity, and the structural discrepancy (FSC 0.5, nm) of each class average to the true map of its majority.

    python benchmarks/bench_autoclass.py [--per-class N] [--snrs S ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tomoflow.kernels.fsc import structural_discrepancy
from tomoflow.ops.autoclass import classify_auto
from tomoflow.ops.simulate import simulate_dataset
from tomoflow.params import AutoClassParams, DatasetSpec
from tomoflow.simulate.templates import structure_template
from tomoflow.store import ParticleSet, Store

STRUCTURES = ("6zu5", "4v8r", "5cvz", "6wg6", "3o21")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--snrs", type=float, nargs="+", default=[0.5, 0.1])
    a = ap.parse_args()
    box, vs = 24, 16.0
    print(f"{a.per_class} particles per structure, box {box}, {vs:g} Å/voxel (Nyquist {2 * vs / 10:.1f} nm), "
          "+-60 degrees, true poses")
    print("| SNR | structures | classes found | purity | discrepancy per class average (nm) | time (s) |")
    print("|---|---|---|---|---|---|")
    for snr in a.snrs:
        for k in range(2, 6):
            classes = STRUCTURES[:k]
            with tempfile.TemporaryDirectory() as d:
                store = Store.create(Path(d) / "s.zarr")
                simulate_dataset(store, "d", DatasetSpec(classes=classes, per_class=a.per_class, snrs=(snr,), box=box,
                                                         voxel_size=vs, resolution=2 * vs, include_empty=False,
                                                         seed=1), chunk=32)
                ps = ParticleSet(store, "d")
                t = ps.rows(slice(0, ps.n), ["true_class", "true_rot", "true_tilt", "true_psi", "true_shift_x",
                                             "true_shift_y", "true_shift_z"])
                pose = np.stack([t["true_rot"], t["true_tilt"], t["true_psi"],
                                 *(t[f"true_shift_{x}"] / vs for x in "xyz")], 1)
                ps.create_array("truth_pose", (6,), "float32", attrs={"average": "truth"})
                ps.array("truth_pose")[:] = pose.astype(np.float32)
                store.write_map("truth", np.zeros((1, box, box, box), np.float32), vs,
                                attrs={"set": "d", "classes": 1, "clusters": [-1]})
                t0 = time.perf_counter()
                r = classify_auto(store, "d", "truth", "auto", AutoClassParams(), progress=False)
                dt = time.perf_counter() - t0
                labels = np.asarray(ps.array("auto_class")[:])
                truth = np.asarray(t["true_class"])
                purity = sum(np.bincount(truth[labels == c]).max() for c in range(r["classes"])) / len(labels)
                maps = store.read_map("auto")[0]
                disc = []
                for c in range(r["classes"]):
                    major = classes[np.bincount(truth[labels == c]).argmax()]
                    true = structure_template(major, vs, box, resolution=2 * vs)
                    disc.append(f"{major} {structural_discrepancy(true, maps[c], vs, align=False)['discrepancy_nm']:.1f}")
                print(f"| {snr} | {k} | {r['classes']} | {purity:.2f} | {', '.join(disc)} | {dt:.1f} |", flush=True)


if __name__ == "__main__":
    main()
