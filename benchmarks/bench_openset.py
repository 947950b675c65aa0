"""Scratch measurement script (issue 24 parts 3-4), run 2026-12-02 on 2 shared CPU cores. It reads .npy volumes
that /tmp/w24/sim.py wrote with simulate_dataset (box 16, 24 A voxels, 6zu5 4v8r 5cvz 6wg6 + empty); it is not yet
self-contained: see benchmarks/RESULTS.md, "Issue 24 parts 3-4"."""
import sys, numpy as np
from tomoflow.ml.training import ArraySource, stratified_split, validation_part, VALIDATION
from tomoflow.ml.openset import train_openset, between_within_ratio, feature_layer
from tomoflow.ml.features import cached_feature_model, compute_features
from tomoflow.kernels.kmeans import lloyd
from tomoflow.params import OpenSetParams
ds, ep = sys.argv[1], int(sys.argv[2])
x, y = np.load(f"/tmp/w24/{ds}.npy"), np.load(f"/tmp/w24/{ds}_y.npy").astype(int)
# classes 0..3 structures, 4 empty; known: 0, 1, 4; unseen: 2, 3
known = [2, 3, 4]; remap = np.full(5, -1); remap[known] = np.arange(3)
lab = remap[y]
split = stratified_split(y, 0.5, 0); split[lab < 0] = 3
tr = np.flatnonzero((split == 1) & (lab >= 0)); _, val = validation_part(tr, lab, 0.1, 0); split[val] = VALIDATION
held = np.flatnonzero(lab < 0)
from sklearn.cluster import KMeans
for loss in sys.argv[3:]:
    p = OpenSetParams(loss=loss, epochs=ep, precision="float32", center_weight=0.0)
    m = train_openset(ArraySource(x, 64), lab, ["a", "b", "e"], split, f"/tmp/w24/os_{loss}.keras", p, progress=False)
    model, _ = cached_feature_model(f"/tmp/w24/os_{loss}.keras", feature_layer(p))
    f, _ = compute_features(model, x[held])
    r = between_within_ratio(f, y[held])
    pur = []
    for s in range(5):
        km = KMeans(2, n_init=10, random_state=s).fit(f).labels_
        pur.append(sum(np.bincount(y[held][km == c]).max() for c in range(2)) / len(held))
    print(loss, "test acc", round(m["test"]["accuracy"], 3), "best ep", m["best_epoch"], "ratio", round(r, 3), "purity", np.round(pur, 3), flush=True)
