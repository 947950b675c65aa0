"""DSRF3D and RIF-SVM against the number of training particles per class, on the same test particles (issue 23).

Usage: python benchmarks/bench_data_size.py [--per-class 2500] [--test-per-class 500] [--train 500 2000 1000]
       [--snr 0.05] [--tilt 60] [--epochs 20] [--optimizer sgd|adam] [--learning-rate LR] [--precision auto]
       [--jobs N] [--budget S] [--out FILE.json]

Simulates one cell of the paper-scale Table 2 grid (the seven structures of ``tomoflow.experiments.accuracy_grid``
plus the empty class, 40^3 at 9.2 Å, SNR and tilt as given) with ``--per-class`` particles a class, holds out
``--test-per-class`` of each class as the test particles of every row, and trains on the first ``k`` of the others
for each ``k`` of ``--train`` (nested sets; 10% of each held out for the choice of epoch, as ``tomoflow train``
does): DSRF3D with the paper's SGD recipe (or ``--optimizer adam --learning-rate 0.001``), and RIF-SVM (its
features once, its SVM trained on the same ``k`` a class).
The paper's split of 1,000 a class is ``k`` = 500. Arrays only: no store, no Dask; the simulation and the
rotation-invariant features run on ``--jobs`` processes, the SVMs in a process of their own beside the CNN's
training (on the GPU where the Keras backend has one). With ``--budget`` seconds a training whose estimated time
would overrun is skipped (and said so). Prints a table; ``--out`` writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tomoflow.experiments.accuracy_grid import SCALES, SET_CHUNK
from tomoflow.kernels.rif import rif_batch, svm_train_test
from tomoflow.ml.training import TEST, TRAIN, UNASSIGNED, VALIDATION, validation_part
from tomoflow.params import DatasetSpec, RifParams, TrainParams
from tomoflow.simulate.subtomograms import particle_table, reference_variances, simulate_rows

PAPER = SCALES["paper"]


def _spec(args) -> DatasetSpec:
    return DatasetSpec(classes=PAPER["structures"], per_class=args.per_class, snrs=(args.snr,),
                       tilt_ranges=(args.tilt,), box=PAPER["box"], voxel_size=PAPER["voxel_size"], seed=args.seed)


def _simulate_chunk(job):
    """Rows ``start:stop`` of ``spec``'s particles (``rows``: their part of the table) into the .npy at ``path``,
    from row ``offset`` on (noise seeded by the row's index in ``spec``, as the store's simulation does)."""
    spec, rows, start, stop, refvar, path, offset = job
    vols = np.lib.format.open_memmap(path, mode="r+")
    vols[offset + start:offset + stop] = simulate_rows(spec, rows, range(start, stop), refvar)
    vols.flush()


def simulation_jobs(spec, table: dict, refvar: dict, path: str, offset: int = 0, chunk: int = 64) -> list:
    """:func:`_simulate_chunk`'s jobs for every particle of ``spec`` (each carries its own rows of the table)."""
    return [(spec, {k: np.asarray(v)[s:s + chunk] for k, v in table.items()}, s, min(s + chunk, spec.n), refvar,
             path, offset) for s in range(0, spec.n, chunk)]


def _rif_chunk(job):
    path, start, stop = job
    vols = np.load(path, mmap_mode="r")
    return start, rif_batch(np.asarray(vols[start:stop]), RifParams())


def _splits(labels: np.ndarray, n_test: int, sizes: list[int], seed: int) -> tuple[np.ndarray, dict]:
    """The test members (the same for every size) and, per size k, a split array: the first k of each class's
    other members in a seeded order, 10% of them VALIDATION, the rest TRAIN, the test members TEST."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDA7A]))
    test = np.zeros(len(labels), bool)
    order = {}
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test[members[:n_test]] = True
        order[c] = members[n_test:]
    out = {}
    for k in sizes:
        chosen = np.sort(np.concatenate([m[:k] for m in order.values()]))
        train, val = validation_part(chosen, labels, 0.1, seed)
        split = np.full(len(labels), UNASSIGNED, np.int8)
        split[train], split[val], split[test] = TRAIN, VALIDATION, TEST
        out[k] = split
    return test, out


def _rif_svm(path: str, n: int, labels: np.ndarray, splits: dict, jobs: int, result: str) -> None:
    """RIF features of every particle, then one SVM per training size; the figures to ``result`` (JSON)."""
    from joblib import parallel_config

    t0 = time.perf_counter()
    chunk = 256
    feats = [None] * -(-n // chunk)
    with mp.get_context("fork").Pool(jobs) as pool:
        for start, x in pool.imap_unordered(_rif_chunk, [(path, s, min(s + chunk, n)) for s in range(0, n, chunk)]):
            feats[start // chunk] = x
    x = np.concatenate(feats)
    out = {"rif_seconds": time.perf_counter() - t0, "features": int(x.shape[1]), "sizes": {}}
    n_classes = int(labels.max()) + 1
    for k, split in splits.items():
        t0 = time.perf_counter()
        with parallel_config(n_jobs=jobs):  # GridSearchCV's n_jobs=None follows this
            _, res = svm_train_test(x, labels, np.isin(split, (TRAIN, VALIDATION)), split == TEST, n_classes, 0)
        res["seconds"] = time.perf_counter() - t0
        out["sizes"][str(k)] = res
        Path(result).write_text(json.dumps(out))
        print(f"RIF-SVM k={k}: {res['accuracy']:.3f} in {res['seconds']:.0f} s", flush=True)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", type=int, default=2500)
    ap.add_argument("--test-per-class", type=int, default=500)
    ap.add_argument("--train", type=int, nargs="+", default=[500, 2000, 1000])
    ap.add_argument("--snr", type=float, default=0.05)
    ap.add_argument("--tilt", type=float, default=60.0)
    ap.add_argument("--epochs", type=int, default=PAPER["epochs"])
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    ap.add_argument("--learning-rate", type=float, default=PAPER["learning_rate"])
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=float("inf"), help="seconds for the whole run")
    ap.add_argument("--tmp", default=tempfile.gettempdir())
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.test_per_class + max(args.train) > args.per_class:
        ap.error(f"--test-per-class + the largest --train must be <= --per-class ({args.per_class})")
    t_start = time.perf_counter()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    spec = _spec(args)
    table = particle_table(spec)
    labels = np.asarray(table["true_class"], np.int64)
    refvar = reference_variances(spec)
    path = str(Path(args.tmp) / f"bench_data_size_{os.getpid()}.npy")
    shape = (spec.n, spec.box, spec.box, spec.box)
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape).flush()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(args.jobs) as pool:
        pool.map(_simulate_chunk, simulation_jobs(spec, table, refvar, path))
    sim_seconds = time.perf_counter() - t0
    print(f"simulated {spec.n} subtomograms ({len(spec.class_names)} classes, SNR {args.snr}, +-{args.tilt:g}) "
          f"in {sim_seconds:.0f} s on {args.jobs} processes", flush=True)
    test, splits = _splits(labels, args.test_per_class, args.train, args.seed)
    # the SVMs run beside the CNN: forked before Keras (and a GPU runtime) is loaded
    rif_json = str(Path(args.out).with_suffix(".rif.json")) if args.out else path + ".rif.json"
    rif = mp.get_context("fork").Process(target=_rif_svm, args=(path, spec.n, labels, splits,
                                                                  max(1, args.jobs - 2), rif_json))
    rif.start()

    import keras

    from tomoflow.ml.precision import accelerator, resolve_precision
    from tomoflow.ml.training import ArraySource, train_model

    vols = np.load(path, mmap_mode="r")
    # the grid's chunks: the shuffle buffer mixes as many chunks as `tomoflow train` does on a grid cell
    source = ArraySource(vols, SET_CHUNK)
    precision = resolve_precision(args.precision)
    result = {"device": _device(), "backend": keras.backend.backend(), "precision": precision,
              "optimizer": args.optimizer, "learning_rate": args.learning_rate,
              "gpu": accelerator(), "spec": json.loads(spec.to_json()), "simulate_seconds": sim_seconds,
              "n_test": int(test.sum()), "dsrf3d": {}, "skipped": []}
    per_sample = None
    for k in args.train:
        split = splits[k]
        n_train = int((split == TRAIN).sum())
        left = args.budget - (time.perf_counter() - t_start)
        if per_sample is not None and per_sample * n_train * args.epochs > 0.9 * left:
            result["skipped"].append(k)
            print(f"DSRF3D k={k}: skipped (about {per_sample * n_train * args.epochs:.0f} s needed, {left:.0f} left)")
            continue
        params = TrainParams(model="dsrf3d", epochs=args.epochs, batch_size=PAPER["batch_size"],
                             learning_rate=args.learning_rate, optimizer=args.optimizer, precision=precision,
                             seed=args.seed)
        t0 = time.perf_counter()
        meta = train_model(source, labels, list(spec.class_names), split,
                           Path(args.tmp) / f"bench_data_size_{os.getpid()}_{k}.keras", params, progress=True)
        seconds = time.perf_counter() - t0
        per_sample = seconds / (n_train * args.epochs)
        result["dsrf3d"][str(k)] = {"n_train": n_train, "n_validation": meta["n_validation"], "seconds": seconds,
                                    "best_epoch": meta["best_epoch"], "test": meta["test"],
                                    "recoveries": meta.get("recoveries", []),
                                    "dead_epochs": meta.get("dead_epochs", []),
                                    "train_accuracy": meta["history"].get("accuracy", [])[-1:]}
        print(f"DSRF3D k={k}: {meta['test']['accuracy']:.3f} ({meta['test'].get('accuracy_turns', 0):.3f} with "
              f"turns) in {seconds:.0f} s", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(result))
    rif.join(max(1.0, args.budget - (time.perf_counter() - t_start)) if np.isfinite(args.budget) else None)
    if rif.is_alive():  # out of budget: what it finished is in its JSON
        rif.terminate()
        result["skipped"].append("rif-svm (budget)")
    result["rif_svm"] = json.loads(Path(rif_json).read_text()) if Path(rif_json).is_file() else None
    result["seconds"] = time.perf_counter() - t_start
    for f in Path(args.tmp).glob(f"bench_data_size_{os.getpid()}*"):
        f.unlink(missing_ok=True)
    _print_table(result, args)
    if args.out:
        Path(args.out).write_text(json.dumps(result))
    return result


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"CPU ({os.cpu_count()} cores)"


def _print_table(result: dict, args) -> None:
    print(f"\n{result['device']}, Keras on {result['backend']}, {result['precision']}; SNR {args.snr}, "
          f"+-{args.tilt:g}; {result['n_test']} test particles; {result['seconds']:.0f} s in all")
    print(f"{'train / class':>14} {'DSRF3D':>8} {'(turns)':>8} {'RIF-SVM':>8}")
    rif = (result.get("rif_svm") or {}).get("sizes", {})
    for k in args.train:
        d = result["dsrf3d"].get(str(k), {}).get("test", {})
        r = rif.get(str(k), {})
        cells = [f"{d['accuracy']:.3f}" if d else "-", f"{d['accuracy_turns']:.3f}" if "accuracy_turns" in d else "-",
                 f"{r['accuracy']:.3f}" if r else "-"]
        print(f"{k:>14} " + " ".join(f"{c:>8}" for c in cells))


if __name__ == "__main__":
    main(sys.argv[1:])
