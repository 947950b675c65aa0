"""FAML figures (issue 25, part 2): FAML (average-ml) against today's reference-free averaging (average, one class)
on the same simulated ribosomes, the same number of iterations, at SNR 0.1 and 0.05: resolution to the true map
(FSC 0.5 after aligning the map onto it: tomoflow fsc's structural discrepancy) and time, both in this process
(no cluster). Then the E-step's cost per particle: FAML's short list against a full ML over the whole coarse grid.

    python benchmarks/bench_faml.py [--particles N] [--iterations I] [--box B]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tomoflow.kernels import faml
from tomoflow.kernels.align import Reference
from tomoflow.kernels.fsc import structural_discrepancy
from tomoflow.kernels.rotations import uniform_rotations
from tomoflow.kernels.wedge import hermitian_wedge
from tomoflow.ops.average import classify
from tomoflow.ops.faml import average_ml
from tomoflow.ops.simulate import simulate_dataset
from tomoflow.params import AverageParams, DatasetSpec, FamlParams
from tomoflow.simulate.templates import structure_template
from tomoflow.store import ParticleSet, Store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--particles", type=int, default=60)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--box", type=int, default=24)
    a = ap.parse_args()
    vs = 16.0 * 24 / a.box
    true = structure_template("6zu5", vs, a.box, resolution=2 * vs)
    print(f"6ZU5, {a.particles} particles, box {a.box}, {vs:g} Å/voxel (Nyquist {2 * vs / 10:.1f} nm), +-60 degrees, "
          f"{a.iterations} iterations, in one process")
    print("| SNR | method | resolution to the true map (nm) | time (s) |")
    print("|---|---|---|---|")
    for snr in (0.1, 0.05):
        with tempfile.TemporaryDirectory() as d:
            store = Store.create(Path(d) / "s.zarr")
            simulate_dataset(store, "d", DatasetSpec(classes=("6zu5",), per_class=a.particles, snrs=(snr,),
                                                     box=a.box, voxel_size=vs, resolution=2 * vs,
                                                     include_empty=False, seed=1), chunk=20)
            for label, run in (("average (reference-free)", lambda: classify(
                                    store, "d", "avg", AverageParams(classes=1, iterations=a.iterations),
                                    progress=False)),
                               ("FAML (average-ml)", lambda: average_ml(
                                    store, "d", "ml", FamlParams(iterations=a.iterations), progress=False))):
                t = time.perf_counter()
                r = run()
                dt = time.perf_counter() - t
                res = structural_discrepancy(true, store.read_map(r["maps"])[0][0], vs)["discrepancy_nm"]
                print(f"| {snr} | {label} | {res:.2f} | {dt:.0f} |", flush=True)
            if snr == 0.1:  # E-step cost per particle on the FAML run's final model
                ps = ParticleSet(store, "d")
                vols = ps.read_volumes(slice(0, 4))
                w = [hermitian_wedge(a.box, -60.0, 60.0, 0.0)] * len(vols)
                maps, _, info = store.read_map("ml")
                p = FamlParams()
                model = (maps, None, np.asarray(info["sigma2"]), np.asarray(info["priors"]),
                         [Reference(m, None, p.alignment()) for m in maps])
                grid = uniform_rotations(p.coarse_step)
                t = time.perf_counter()
                faml.em_chunk(vols, w, model, p.alignment(), p.candidates)
                t_faml = (time.perf_counter() - t) / len(vols)
                t = time.perf_counter()
                faml.em_chunk(vols, w, model, p.alignment(), p.candidates, rotations=grid)
                t_full = (time.perf_counter() - t) / len(vols)
                print(f"\nE-step per particle: FAML ({p.candidates} candidates, local search to {p.fine_step:g} "
                      f"degrees) {t_faml:.2f} s; full ML over the {len(grid)} rotations of the {p.coarse_step:g}-degree"
                      f" grid (each at its best shift, full size) {t_full:.2f} s ({t_full / t_faml:.1f}x); a full ML "
                      f"grid as fine as FAML's {p.fine_step:g}-degree search would hold ~{len(grid) * (p.coarse_step / p.fine_step) ** 3:.0f}"
                      f" rotations (~{t_full * (p.coarse_step / p.fine_step) ** 3 / t_faml:.0f}x FAML, extrapolated)\n")


if __name__ == "__main__":
    main()
