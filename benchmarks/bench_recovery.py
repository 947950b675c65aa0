"""Alignment speed and accuracy, the recovery bar, and the seed-000 Figure 5 comparison (issue 6).

    python benchmarks/bench_recovery.py [--workers 2] [--parts alignment,recovery,figure5,translation,throughput]

1. Alignment of 32^3 subtomograms (80S ribosome 6ZU5 at 12 Å/voxel, +-60 degrees) to the CTF-filtered true
   map at SNR 0.5 and 0.1: seconds per pair (one core; the reference prepared once, its preparation reported
   apart) and the share of particles within 10 degrees of the true rotation.
2. Recovery bar: 300 particles of 6ZU5 at SNR 0.1, +-60 degrees, reference-free averaging (1 class,
   `--iterations` iterations, default 6) on `workers` worker processes, starting from no reference and no poses
   (iteration 0 averages the particles as they are); structural discrepancy (FSC 0.5, after alignment) of each
   iteration's average to the CTF-filtered true map, and the half-set FSC resolution. With ``--from-true-poses``
   the same run starts from the simulation's true poses instead (the answer key, copied into the pose columns):
   what averaging reaches when the poses are known, for comparison only. The reference-free run also prints the
   same particles averaged at their answer-key rotations and shifts without any alignment (benchmark code only).
4. Translation (issue 22): 40 particles of 6ZU5 (32^3, 12 Å, +-60) noise-free and at SNR 0.5 and 0.1 aligned to
   the CTF-filtered true map: translation error (voxels, length of the error vector) median and 90th percentile,
   share within 10 degrees, seconds per pair on one core.
5. Throughput (issue 22): one averaging pass (alignment + accumulation of every member to the iteration-0
   reference) over ``--throughput-n`` particles at 32^3 and 40^3 on ``workers`` workers: wall seconds per member.
3. Figure 5: cluster sizes of k-means (k = 20) on deep features (DSRF3D, 20 epochs on the train half) and on
   pose-normalised volumes of the same 5-class set (4 complexes + empty, 100 each, SNR 0.1 or --fig5-snr); PNG
   and numbers.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def dataset(store, name, classes, n, snr, box=32, vs=12.0, seed=1, include_empty=False, client=None):
    from tomoflow.ops.simulate import simulate_dataset
    from tomoflow.params import DatasetSpec

    spec = DatasetSpec(classes=classes, per_class=n, snrs=(snr,), box=box, voxel_size=vs, resolution=2 * vs,
                       include_empty=include_empty, seed=seed)
    simulate_dataset(store, name, spec, chunk=32, client=client)


def alignment(work: Path) -> None:
    from tomoflow.kernels.align import Reference, align
    from tomoflow.kernels.rotations import rotation_angle
    from tomoflow.kernels.wedge import particle_wedge
    from tomoflow.params import AlignParams
    from tomoflow.kernels.geometry import relion_matrix
    from tomoflow.store import ParticleSet, Store
    from tomoflow.simulate.templates import structure_template

    data = {}
    for snr in (0.5, 0.1):
        store = Store.create(work / f"align{snr}.zarr")
        dataset(store, "d", ("6zu5",), 50, snr)
        ps = ParticleSet(store, "d")
        data[snr] = (ps.rows(slice(0, ps.n), ["true_rot", "true_tilt", "true_psi", "tilt_min", "tilt_max"]),
                     ps.read_volumes(slice(0, ps.n)))
    for candidates in (2, 1):  # coarse candidates refined locally (2: the default)
        t0 = time.perf_counter()
        ref = Reference(structure_template("6zu5", 12.0, 32, resolution=24.0), params=AlignParams(candidates=candidates))
        prep = time.perf_counter() - t0
        for snr, (t, vols) in data.items():
            errs = []
            t0 = time.perf_counter()
            for i in range(len(vols)):
                a, _, _ = align(vols[i], particle_wedge(32, t["tilt_min"][i], t["tilt_max"][i]), ref)
                errs.append(rotation_angle(a, relion_matrix(t["true_rot"][i], t["true_tilt"][i], t["true_psi"][i])))
            dt = (time.perf_counter() - t0) / len(vols)
            errs = np.array(errs)
            print(f"alignment 32^3, {candidates} candidate(s), SNR {snr}, +-60: {dt:.3f} s per pair (reference "
                  f"prepared once in {prep:.2f} s), {100 * np.mean(errs < 10):.0f}% within 10 degrees, median error "
                  f"{np.median(errs):.1f} degrees", flush=True)


def translation(work: Path, n: int = 40) -> None:
    from tomoflow.kernels.align import Reference, align
    from tomoflow.kernels.geometry import relion_matrix
    from tomoflow.kernels.rotations import rotation_angle
    from tomoflow.kernels.wedge import particle_wedge
    from tomoflow.simulate.templates import structure_template
    from tomoflow.store import ParticleSet, Store

    ref = Reference(structure_template("6zu5", 12.0, 32, resolution=24.0))
    for snr in (float("inf"), 0.5, 0.1):
        store = Store.create(work / f"shift{snr}.zarr")
        dataset(store, "d", ("6zu5",), n, snr, seed=7)
        ps = ParticleSet(store, "d")
        t = ps.rows(slice(0, ps.n), ["true_rot", "true_tilt", "true_psi", "tilt_min", "tilt_max", "true_shift_x",
                                     "true_shift_y", "true_shift_z"])
        vols = ps.read_volumes(slice(0, ps.n))
        errs, angs = [], []
        t0 = time.perf_counter()
        for i in range(ps.n):
            a, sh, _ = align(vols[i], particle_wedge(32, t["tilt_min"][i], t["tilt_max"][i]), ref)
            true = np.array([t["true_shift_x"][i], t["true_shift_y"][i], t["true_shift_z"][i]]) / 12.0
            errs.append(np.linalg.norm(np.asarray(sh) - true))
            angs.append(rotation_angle(a, relion_matrix(t["true_rot"][i], t["true_tilt"][i], t["true_psi"][i])))
        dt = (time.perf_counter() - t0) / ps.n
        print(f"translation, {n} x 6ZU5 32^3, SNR {snr:g}: error median {np.median(errs):.3f} voxel, 90th percentile "
              f"{np.percentile(errs, 90):.3f} voxel; {100 * np.mean(np.array(angs) < 10):.0f}% within 10 degrees "
              f"(median {np.median(angs):.1f}); {dt:.3f} s per pair", flush=True)


def throughput(work: Path, client, n: int = 96) -> None:
    from tomoflow.ops.average import classify
    from tomoflow.params import AverageParams
    from tomoflow.store import Store

    for box in (32, 40):
        store = Store.create(work / f"tp{box}.zarr")
        dataset(store, "d", ("6zu5",), n, 0.1, box=box, client=client)
        t0 = time.perf_counter()
        classify(store, "d", "it0", AverageParams(classes=1, iterations=0), client=client, progress=False)
        t1 = time.perf_counter()
        classify(store, "d", "it1", AverageParams(classes=1, iterations=1), client=client, progress=False)
        dt = (time.perf_counter() - t1) - (t1 - t0)  # the pass of iteration 1 alone (references prepared included)
        print(f"throughput {box}^3: one averaging pass over {n} members in {dt:.1f} s on {len(client.nthreads())} "
              f"workers: {1000 * dt / n:.1f} ms per member and pass", flush=True)


def recovery(work: Path, client, iterations: int = 6, from_true_poses: bool = False) -> None:
    from tomoflow.ops.average import classify
    from tomoflow.params import AverageParams
    from tomoflow.kernels.fsc import structural_discrepancy
    from tomoflow.store import Store
    from tomoflow.simulate.templates import structure_template

    from tomoflow.store import ParticleSet

    store = Store.create(work / f"recovery{'-true' if from_true_poses else ''}.zarr")
    dataset(store, "d", ("6zu5",), 300, 0.1, client=client)
    if from_true_poses:  # the comparison run: the answer key copied into the pose columns, read with from_poses
        ps = ParticleSet(store, "d")
        t = ps.rows(slice(0, ps.n), ["true_rot", "true_tilt", "true_psi"])
        ps.write_columns(0, {"rot": t["true_rot"], "tilt": t["true_tilt"], "psi": t["true_psi"]})
    t0 = time.perf_counter()
    r = classify(store, "d", "avg", AverageParams(classes=1, iterations=iterations, from_poses=from_true_poses),
                 client=client, progress=False)
    dt = time.perf_counter() - t0
    true = structure_template("6zu5", 12.0, 32, resolution=24.0)
    start = "the true poses" if from_true_poses else "no reference, no poses"
    for it in range(iterations + 1):
        d = structural_discrepancy(true, store.read_map(f"avg.it{it}")[0][0], 12.0)["discrepancy_nm"]
        print(f"recovery from {start}, 300 x 6ZU5, SNR 0.1, +-60, iteration {it}: structural discrepancy "
              f"{d:.2f} nm", flush=True)
    print(f"recovery from {start}: {dt:.0f} s for {iterations + 1} passes over 300 particles; half-set FSC 0.5 at "
          f"{r['results'][0]['half_set_resolution_A'] / 10:.2f} nm", flush=True)
    if not from_true_poses:  # the same particles averaged at their answer-key poses, no alignment: the bar
        d = structural_discrepancy(true, true_pose_average(store, "d", 12.0), 12.0)["discrepancy_nm"]
        print(f"the same 300 particles averaged at their true poses (rotation and shift from the answer key, no "
              f"alignment): structural discrepancy {d:.2f} nm", flush=True)


def true_pose_average(store, name: str, vs: float) -> np.ndarray:
    """Wedge-weighted average of a simulated set at its true poses (benchmark only: reads the answer key)."""
    from tomoflow.kernels.averaging import accumulate, average_from_sums
    from tomoflow.kernels.geometry import relion_matrix
    from tomoflow.kernels.wedge import particle_wedge
    from tomoflow.store import ParticleSet

    ps = ParticleSet(store, name)
    t = ps.rows(slice(0, ps.n), ["true_rot", "true_tilt", "true_psi", "true_shift_x", "true_shift_y",
                                 "true_shift_z", "tilt_min", "tilt_max", "tilt_axis"])
    vols = ps.read_volumes(slice(0, ps.n))
    n = vols.shape[1]
    sums = np.zeros((3, n, n, n // 2 + 1))
    for i in range(ps.n):
        a = relion_matrix(t["true_rot"][i], t["true_tilt"][i], t["true_psi"][i])
        shift = np.array([t["true_shift_x"][i], t["true_shift_y"][i], t["true_shift_z"][i]]) / vs
        accumulate(sums, vols[i], particle_wedge(n, t["tilt_min"][i], t["tilt_max"][i], t["tilt_axis"][i]), a, shift)
    return average_from_sums(sums)[0]


def figure5(work: Path, client, epochs: int = 20, snr: float = 0.1) -> None:
    from tomoflow.ops.cluster import kmeans
    from tomoflow.params import KMeansParams
    from tomoflow.ops.features import extract_features
    from tomoflow.ops.pose_norm import compute_pose_normalized
    from tomoflow.report.plots import cluster_size_plot, size_summary
    from tomoflow.store import Store
    from tomoflow.ops.training import train
    from tomoflow.params import TrainParams

    store = Store.create(work / "fig5.zarr")
    dataset(store, "d", ("6zu5", "4v8r", "5cvz", "6wg6"), 100, snr, include_empty=True, client=client)
    meta = train(store, "d", work / "m.keras", TrainParams(epochs=epochs, batch_size=32), progress=False)
    extract_features(store, "d", work / "m.keras", client=client, progress=False)
    compute_pose_normalized(store, "d", client=client, progress=False)
    sizes = {}
    for label, feats in (("deep features (DSRF3D)", "features"), ("pose normalisation", "pose_norm")):
        r = kmeans(store, "d", KMeansParams(k=20), features=feats, client=client, progress=False)
        sizes[label] = r["sizes"]
        s = size_summary(r["sizes"])
        print(f"figure 5 (SNR {snr}), {label}: k = 20 sizes {sorted(r['sizes'], reverse=True)}; largest share "
              f"{s['largest_share']:.2f}, Gini {s['gini']:.2f}", flush=True)
    out = Path(__file__).with_name(f"figure5_cluster_sizes_snr{snr:g}.png")
    cluster_size_plot(sizes, out)
    print(f"figure 5: CNN test accuracy {meta['test']['accuracy']:.3f}; plot {out.name}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=20, help="DSRF3D epochs for figure 5 (default 20)")
    ap.add_argument("--fig5-snr", type=float, default=0.1, help="SNR of the figure-5 dataset (default 0.1)")
    ap.add_argument("--iterations", type=int, default=6, help="recovery: averaging iterations (default 6)")
    ap.add_argument("--from-true-poses", action="store_true",
                    help="recovery: also run from the true poses, for comparison (not reference-free)")
    ap.add_argument("--throughput-n", type=int, default=96, help="throughput: particles per box size (default 96)")
    ap.add_argument("--parts", default="alignment,recovery,figure5",
                    help="comma-separated subset of alignment, recovery, figure5, translation, throughput")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    unknown = parts - {"alignment", "recovery", "figure5", "translation", "throughput"}
    if unknown:
        ap.error(f"unknown parts: {sorted(unknown)}")
    from distributed import Client

    from tomoflow.engine import local_cluster

    work = Path(tempfile.mkdtemp(prefix="tomoflow-rec-"))
    if "alignment" in parts:
        alignment(work)
    if "translation" in parts:
        translation(work)
    if parts & {"recovery", "figure5", "throughput"}:
        with local_cluster(a.workers, dashboard=False) as cluster, Client(cluster) as client:
            if "throughput" in parts:
                throughput(work, client, a.throughput_n)
            if "recovery" in parts:
                recovery(work, client, a.iterations)
                if a.from_true_poses:
                    recovery(work, client, a.iterations, from_true_poses=True)
            if "figure5" in parts:
                figure5(work, client, a.epochs, a.fig5_snr)


if __name__ == "__main__":
    main()
