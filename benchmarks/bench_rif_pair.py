"""RIF-SVM restricted to a few classes of a particle set, on the split a CNN trained with (issue 23).

Usage: python benchmarks/bench_rif_pair.py STORE SET CLASS [CLASS ...]

Prints the test accuracy and confusion of the rotation-invariant features (lmax 10, |F| shells) + RBF SVM trained
on the ``train`` and ``validation`` particles of the named classes and tested on their ``test`` particles: the
figure to set beside ``tomoflow train --exclude <the others>`` on the same particles. Reads the store only.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tomoflow.kernels.rif import rif_batch, svm_train_test
from tomoflow.ml.training import TEST, TRAIN, VALIDATION
from tomoflow.params import RifParams
from tomoflow.store import ParticleSet, Store


def main(store: str, set_name: str, classes: list[str]) -> None:
    ps = ParticleSet(Store.open(store), set_name)
    t = ps.rows(slice(0, ps.n), ["split", "true_class"])
    names = list(ps.class_names)
    unknown = [c for c in classes if c not in names]
    if unknown:
        sys.exit(f"bench_rif_pair: error: {set_name}: no class {', '.join(unknown)} (classes: {', '.join(names)})")
    codes = [names.index(c) for c in classes]
    idx = np.flatnonzero(np.isin(t["true_class"], codes))
    t0 = time.perf_counter()
    x = rif_batch(ps.read_rows(idx), RifParams())
    seconds = time.perf_counter() - t0
    y = np.array([codes.index(c) for c in t["true_class"][idx]])
    split = t["split"][idx]
    train, test = np.isin(split, (TRAIN, VALIDATION)), split == TEST
    _, res = svm_train_test(x, y, train, test, len(codes), 0)
    print(f"{set_name}: {', '.join(classes)}: {int(train.sum())} train, {int(test.sum())} test; "
          f"features {x.shape[1]} per particle in {seconds:.1f} s")
    print(f"RIF-SVM test accuracy {res['accuracy']:.3f}; best {res['best_params']}")
    print("confusion (rows true, columns predicted):")
    for c, row in zip(classes, res["confusion"]):
        print(f"  {c:>8} " + " ".join(f"{v:5d}" for v in row))


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__.split("\n\n")[1])
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
