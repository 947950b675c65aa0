"""DSRF3D and RIF-SVM with more training particles per class than a simulated set's paper split (issue 23).

Usage: python benchmarks/bench_more_data.py STORE SET EXTRA [--epochs 20] [--optimizer sgd|adam] [--learning-rate LR]
    [--jobs N] [--skip-cnn] [--out FILE.json]

SET is a set ``tomoflow simulate`` made (its simulation spec is in its info). The test particles are the set's own
(the stratified 50/50 split by seed 0 that ``tomoflow train`` uses, so trainings of the set score on the same
particles); the training particles are the set's train half plus ``EXTRA`` particles a class simulated afresh
with the set's spec and seed + 1000 (the same classes, SNR, tilt range, box and microscope; other rotations, shifts
and noise). DSRF3D is trained with the paper's recipe (``tomoflow train``'s defaults: SGD lr 0.01, batch 64, 20
epochs, 10% of the training particles held out to pick the epoch, the precision rule; ``--optimizer adam
--learning-rate 0.001`` for Adam) on the enlarged training
set; RIF-SVM is trained on both the set's own train half and the enlarged one, beside the CNN in a process of its
own. Arrays only: the store is read, never written.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_data_size import _rif_svm, _simulate_chunk, simulation_jobs  # noqa: E402

from tomoflow.ml.training import (TEST, TRAIN, UNASSIGNED, VALIDATION, stratified_split,  # noqa: E402
                                  validation_part)
from tomoflow.params import DatasetSpec, TrainParams  # noqa: E402
from tomoflow.simulate.subtomograms import particle_table  # noqa: E402
from tomoflow.store import ParticleSet, Store  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    ap.add_argument("set")
    ap.add_argument("extra", type=int)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    ap.add_argument("--learning-rate", type=float, default=TrainParams.learning_rate)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--skip-cnn", action="store_true", help="RIF-SVM only")
    ap.add_argument("--tmp", default=tempfile.gettempdir())
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    ps = ParticleSet(Store.open(args.store), args.set)
    sim = ps.info.get("simulation")
    if not sim:
        ap.error(f"{args.set}: not a simulated set (no simulation spec in its info)")
    spec0 = DatasetSpec.from_json(sim["spec"])
    refvar = {float(k): float(v) for k, v in sim["reference_variance"].items()}
    spec = replace(spec0, per_class=args.extra, seed=spec0.seed + 1000)
    n0, n = ps.n, ps.n + spec.n
    cls0 = ps.rows(slice(0, n0), ["true_class"])["true_class"].astype(np.int64)
    table = particle_table(spec)
    labels = np.concatenate([cls0, np.asarray(table["true_class"], np.int64)])
    path = str(Path(args.tmp) / f"bench_more_data_{os.getpid()}.npy")
    box = spec.box
    vols = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, box, box, box))
    for i in range(ps.n_chunks):
        sl = ps.chunk_slice(i)
        vols[sl] = ps.read_volumes(sl)
    vols.flush()
    del vols
    # the extra particles go after the set's (simulate_rows seeds each by its index in the extra table)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(args.jobs) as pool:
        pool.map(_simulate_chunk, simulation_jobs(spec, table, refvar, path, offset=n0))
    sim_seconds = time.perf_counter() - t0
    print(f"{n0} subtomograms of {args.set} + {spec.n} simulated ({args.extra} a class, seed {spec.seed}) in "
          f"{sim_seconds:.0f} s", flush=True)

    split0 = stratified_split(cls0, 0.5, 0)
    base = np.full(n, UNASSIGNED, np.int8)
    base[:n0] = split0
    tr, val = validation_part(np.flatnonzero(base == TRAIN), labels, 0.1, 0)
    base[val] = VALIDATION
    more = np.full(n, UNASSIGNED, np.int8)
    more[:n0][split0 == TEST] = TEST
    chosen = np.concatenate([np.flatnonzero(split0 == TRAIN), np.arange(n0, n)])
    tr, val = validation_part(np.sort(chosen), labels, 0.1, 0)
    more[tr], more[val] = TRAIN, VALIDATION
    k0 = int(np.isin(base, (TRAIN, VALIDATION)).sum()) // len(spec.class_names)
    k1 = int(np.isin(more, (TRAIN, VALIDATION)).sum()) // len(spec.class_names)
    splits = {k0: base, k1: more}
    rif_json = str(Path(args.out).with_suffix(".rif.json")) if args.out else path + ".rif.json"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    rif = mp.get_context("fork").Process(target=_rif_svm, args=(path, n, labels, splits, max(1, args.jobs - 2),
                                                                  rif_json))
    rif.start()
    result = {"set": args.set, "extra_per_class": args.extra, "optimizer": args.optimizer,
              "learning_rate": args.learning_rate, "extra_seed": spec.seed, "simulate_seconds": sim_seconds,
              "train_per_class": [k0, k1], "n_test": int((more == TEST).sum())}
    if not args.skip_cnn:
        from tomoflow.ml.training import ArraySource, train_model

        params = TrainParams(epochs=args.epochs, optimizer=args.optimizer, learning_rate=args.learning_rate)
        t0 = time.perf_counter()
        # read in the set's chunks, as tomoflow train reads it: the shuffle buffer mixes as many chunks as there
        meta = train_model(ArraySource(np.load(path, mmap_mode="r"), ps.chunk), labels, list(ps.class_names), more,
                           Path(args.tmp) / f"bench_more_data_{os.getpid()}.keras", params)
        result["dsrf3d"] = {"seconds": time.perf_counter() - t0, "precision": meta["precision"],
                            "n_train": meta["n_train"], "n_validation": meta["n_validation"],
                            "best_epoch": meta["best_epoch"], "test": meta["test"], "history": meta["history"],
                            "recoveries": meta.get("recoveries", []), "dead_epochs": meta.get("dead_epochs", [])}
        print(f"DSRF3D, {k1} a class: {meta['test']['accuracy']:.3f} "
              f"({meta['test'].get('accuracy_turns', float('nan')):.3f} with turns)", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(result))
    rif.join()
    result["rif_svm"] = json.loads(Path(rif_json).read_text()) if Path(rif_json).is_file() else None
    result["seconds"] = time.perf_counter() - t_start
    for f in Path(args.tmp).glob(f"bench_more_data_{os.getpid()}*"):
        f.unlink(missing_ok=True)
    names = list(ps.class_names)
    for k, res in (result["rif_svm"] or {}).get("sizes", {}).items():
        print(f"RIF-SVM, {k} a class: {res['accuracy']:.3f}")
    if "dsrf3d" in result:
        print("DSRF3D confusion (rows true, columns predicted):")
        for c, row in zip(names, result["dsrf3d"]["test"]["confusion"]):
            print(f"  {c:>8} " + " ".join(f"{v:4d}" for v in row))
    if args.out:
        Path(args.out).write_text(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
