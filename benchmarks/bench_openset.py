"""Open-set features vs softmax features on unseen classes (issue 24 part 3; benchmarks/RESULTS.md, "Issue 24 parts
3-4"). Usage: python benchmarks/bench_openset.py DATASET EPOCHS LOSS [LOSS ...] [--work DIR]
(DATASET: os1 or os01 of benchmarks/_sim24.py; LOSS: cosface, softmax). Known classes 5CVZ, 6WG6, empty; unseen
6ZU5, 4V8R: between/within scatter ratio and k-means purity of the unseen classes' features."""
import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(__file__))
from _sim24 import load
from tomoflow.ml.training import ArraySource, stratified_split, validation_part, VALIDATION
from tomoflow.ml.openset import train_openset, between_within_ratio, feature_layer
from tomoflow.ml.features import cached_feature_model, compute_features
from tomoflow.params import OpenSetParams
args = sys.argv[1:]
work = args.pop(args.index("--work") + 1) if "--work" in args else "benchmark-runs/issue24"
args = [a for a in args if a != "--work"]
ds, ep, losses = args[0], int(args[1]), args[2:]
x, y = load(work, ds)
# classes 0..3 structures, 4 empty; known: 0, 1, 4; unseen: 2, 3
known = [2, 3, 4]; remap = np.full(5, -1); remap[known] = np.arange(3)
lab = remap[y]
split = stratified_split(y, 0.5, 0); split[lab < 0] = 3
tr = np.flatnonzero((split == 1) & (lab >= 0)); _, val = validation_part(tr, lab, 0.1, 0); split[val] = VALIDATION
held = np.flatnonzero(lab < 0)
from sklearn.cluster import KMeans
for loss in losses:
    p = OpenSetParams(loss=loss, epochs=ep, precision="float32", center_weight=0.0)
    m = train_openset(ArraySource(x, 64), lab, ["a", "b", "e"], split, f"{work}/os_{loss}.keras", p, progress=False)
    model, _ = cached_feature_model(f"{work}/os_{loss}.keras", feature_layer(p))
    f, _ = compute_features(model, x[held])
    r = between_within_ratio(f, y[held])
    pur = []
    for s in range(5):
        km = KMeans(2, n_init=10, random_state=s).fit(f).labels_
        pur.append(sum(np.bincount(y[held][km == c]).max() for c in range(2)) / len(held))
    print(loss, "test acc", round(m["test"]["accuracy"], 3), "best ep", m["best_epoch"], "ratio", round(r, 3), "purity", np.round(pur, 3), flush=True)
