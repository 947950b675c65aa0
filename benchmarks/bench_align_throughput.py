"""Alignment + averaging throughput per member and pass, two code versions interleaved (issue 22).

    python benchmarks/bench_align_throughput.py --before /tmp/before22 [--n 32] [--reps 3] [--boxes 32,40]

One process per measurement, no Dask: each runs ``classify_chunk`` (alignment of every member to its half-set's
reference + accumulation, i.e. one averaging pass) on the same in-memory particles after a warm-up pass, with
the given code on PYTHONPATH (``--before``: a checkout of the old code, e.g. ``git worktree add /tmp/before22
a2ee560^``; the other: this checkout). Runs alternate (before, after, before, after, ...) so that load from other
jobs on the machine hits both (``--ref-observed wedge70``: the reference observed only within +-70 degrees, so
the observed mask is rotated with it too). The data: ``--n`` particles of 6ZU5 at 12 Å/voxel, SNR 0.1, +-60 degrees,
simulated once per box size; both half references are the CTF-filtered true map, so the
accuracy of each version is measured against the answer key on the same particles. Prints medians per version
and the ratio; every FFT single-threaded (scipy workers=1 in the kernels, OMP/MKL threads 1 here).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]


def make_data(box: int, n: int, path: Path) -> None:
    from tomoflow.ops.simulate import simulate_dataset
    from tomoflow.params import DatasetSpec
    from tomoflow.simulate.templates import structure_template
    from tomoflow.store import ParticleSet, Store

    store = Store.create(path.with_suffix(".zarr"))
    simulate_dataset(store, "d", DatasetSpec(classes=("6zu5",), per_class=n, snrs=(0.1,), box=box, voxel_size=12.0,
                                             resolution=24.0, include_empty=False, seed=5), chunk=64)
    ps = ParticleSet(store, "d")
    cols = ["cluster", "rot", "tilt", "psi", "tilt_min", "tilt_max", "tilt_axis", "true_rot", "true_tilt",
            "true_psi", "true_shift_x", "true_shift_y", "true_shift_z"]
    rows = ps.rows(slice(0, ps.n), cols)
    np.savez(path, vols=ps.read_volumes(slice(0, ps.n)), ref=structure_template("6zu5", 12.0, box, resolution=24.0),
             **{f"row_{k}": np.asarray(v) for k, v in rows.items()})


def measure(path: str, observed: str) -> dict:
    """Run in a child: one warm-up pass, then one timed pass; accuracy against the answer key."""
    from tomoflow.kernels.align import Reference
    from tomoflow.kernels.averaging import classify_chunk
    from tomoflow.kernels.geometry import relion_matrix
    from tomoflow.kernels.rotations import rotation_angle
    from tomoflow.params import AlignParams

    d = np.load(path)
    vols = d["vols"]
    rows = {k[4:]: d[k] for k in d.files if k.startswith("row_")}
    ref_map = d["ref"]
    t0 = time.perf_counter()
    from tomoflow.kernels.wedge import particle_wedge

    # the reference's observed region: everywhere (an average over many orientations), or a +-70 degree wedge
    obs = np.ones(ref_map.shape) if observed == "everywhere" else particle_wedge(ref_map.shape[0], -70, 70)
    ref = Reference(ref_map, obs > 0.5, AlignParams())
    prep = time.perf_counter() - t0
    refs = [[[ref], [ref]]]
    classify_chunk(vols[:2], {k: v[:2] for k, v in rows.items()}, [-1], 1, refs, seed=0, start=0)  # warm-up
    t0 = time.perf_counter()
    _, _, _, pose, _ = classify_chunk(vols, rows, [-1], 1, refs, seed=0, start=0)
    dt = time.perf_counter() - t0
    ang = [rotation_angle(relion_matrix(*pose[i, :3]),
                          relion_matrix(rows["true_rot"][i], rows["true_tilt"][i], rows["true_psi"][i]))
           for i in range(len(vols))]
    true_t = np.stack([rows["true_shift_x"], rows["true_shift_y"], rows["true_shift_z"]], 1) / 12.0
    sh = np.linalg.norm(pose[:, 3:] - true_t, axis=1)
    import tomoflow

    return {"code": str(Path(tomoflow.__file__).parents[1]), "ms_per_member": 1000 * dt / len(vols), "prep_s": prep, "within10": float(np.mean(np.array(ang) < 10)),
            "median_angle": float(np.median(ang)), "median_shift": float(np.median(sh))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="checkout of the code to compare against")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--boxes", default="32,40")
    ap.add_argument("--ref-observed", choices=("everywhere", "wedge70"), default="everywhere",
                    help="the reference's observed Fourier region (wedge70: +-70 degrees, so masks are rotated too)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tomoflow-tp-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    versions = {"before": str(Path(a.before).resolve()), "after": str(HERE)}
    for box in (int(b) for b in a.boxes.split(",")):
        data = work / f"d{box}.npz"
        make_data(box, a.n, data)
        res: dict = {v: [] for v in versions}
        for rep in range(a.reps):
            for v, root in versions.items():  # interleaved: before, after, before, after, ...
                out = subprocess.run([sys.executable, __file__, "--child", str(data), a.ref_observed], env={**env, "PYTHONPATH": root},
                                     capture_output=True, text=True, check=True, cwd=root)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                assert r["code"] == root, (r["code"], root)  # the version asked for, not an installed copy
                res[v].append(r)
                print(f"{box}^3 {v} run {rep + 1}: {r['ms_per_member']:.1f} ms per member and pass", flush=True)
        med = {v: float(np.median([r["ms_per_member"] for r in rs])) for v, rs in res.items()}
        for v, rs in res.items():
            r = rs[0]
            print(f"{box}^3 {v}: median {med[v]:.1f} ms per member and pass over {a.reps} runs of {a.n} members "
                  f"(reference prepared in {np.median([x['prep_s'] for x in rs]):.2f} s); {100 * r['within10']:.0f}% "
                  f"within 10 degrees, median angle error {r['median_angle']:.2f} degrees, median shift error "
                  f"{r['median_shift']:.3f} voxel", flush=True)
        print(f"{box}^3: speed-up before/after {med['before'] / med['after']:.2f}x", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    else:
        main()
