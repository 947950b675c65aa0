"""DSRF3D on a few classes of a particle set, its input low-passed by a Gaussian first (issue 23).

Usage: python benchmarks/bench_pair_filter.py STORE SET SIGMA CLASS [CLASS ...] [--epochs 20]

Reads the named classes' subtomograms into memory, filters each with the Gaussian of ``SIGMA`` voxels
(tomoflow.kernels.filters.gaussian; 0: none), and trains DSRF3D with the paper's recipe (SGD, lr 0.01, batch 64,
20 epochs, the precision rule) on the split ``tomoflow train --exclude <the others>`` uses (the same particles: the
set's stratified split by seed 0, 10% of the training part held out for the choice of epoch). Prints the test
accuracy and confusion: the figure to set beside the unfiltered training and beside
``benchmarks/bench_rif_pair.py`` on the same particles. Reads the store only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tomoflow.kernels.filters import gaussian
from tomoflow.ml.training import TRAIN, VALIDATION, ArraySource, stratified_split, train_model, validation_part
from tomoflow.params import TrainParams
from tomoflow.store import ParticleSet, Store


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    ap.add_argument("set")
    ap.add_argument("sigma", type=float)
    ap.add_argument("classes", nargs="+")
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args(argv)
    ps = ParticleSet(Store.open(args.store), args.set)
    names = list(ps.class_names)
    unknown = [c for c in args.classes if c not in names]
    if unknown:
        ap.error(f"{args.set}: no class {', '.join(unknown)} (classes: {', '.join(names)})")
    cls = ps.rows(slice(0, ps.n), ["true_class"])["true_class"].astype(int)
    split_all = stratified_split(cls, 0.5, 0)  # as tomoflow train does, over every class of the set
    codes = [names.index(c) for c in args.classes]
    idx = np.flatnonzero(np.isin(cls, codes))
    labels = np.array([codes.index(c) for c in cls[idx]])
    split = split_all[idx].copy()
    train_idx = np.flatnonzero(split == TRAIN)
    _, val = validation_part(train_idx, labels, 0.1, 0)
    split[val] = VALIDATION
    t0 = time.perf_counter()
    vols = ps.read_rows(idx)
    if args.sigma > 0:
        vols = np.stack([gaussian(v, args.sigma) for v in vols])
    print(f"{len(idx)} subtomograms read{' and filtered' if args.sigma > 0 else ''} in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    params = TrainParams(model="dsrf3d", epochs=args.epochs)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # in the set's chunk size, as tomoflow train reads it: the shuffle buffer then mixes as many chunks
        meta = train_model(ArraySource(vols, ps.chunk), labels, list(args.classes), split, Path(tmp) / "pair.keras",
                           params)
    test = meta["test"]
    print(f"{args.set}: {', '.join(args.classes)}; Gaussian sigma {args.sigma:g} voxels; {meta['precision']}; "
          f"{meta['n_train']} train, {meta['n_validation']} validation, {meta['n_test']} test; "
          f"{time.perf_counter() - t0:.0f} s; best epoch {meta['best_epoch']}")
    print(f"DSRF3D test accuracy {test['accuracy']:.3f} ({test.get('accuracy_turns', float('nan')):.3f} with turns); "
          f"last training accuracy {meta['history']['accuracy'][-1]:.3f}")
    print("confusion (rows true, columns predicted):")
    for c, row in zip(args.classes, test["confusion"]):
        print(f"  {c:>8} " + " ".join(f"{v:5d}" for v in row))
    return meta


if __name__ == "__main__":
    main()
