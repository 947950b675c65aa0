"""Scratch measurement script (issue 24 parts 3-4), run 2026-12-02 on 2 shared CPU cores. It reads .npy volumes
that /tmp/w24/sim.py wrote with simulate_dataset (box 16, 24 A voxels, 6zu5 4v8r 5cvz 6wg6 + empty); it is not yet
self-contained: see benchmarks/RESULTS.md, "Issue 24 parts 3-4"."""
import sys, time, numpy as np
from tomoflow.ml.training import ArraySource, stratified_split, validation_part, train_model, load_trained, VALIDATION
from tomoflow.ml.domain import adapt, predict
from tomoflow.params import DomainParams
tg = sys.argv[1]; ep = int(sys.argv[2]); aep = int(sys.argv[3]); dw = float(sys.argv[4]); lr2 = float(sys.argv[5])
xs, ys = np.load("/tmp/w24/src.npy"), np.load("/tmp/w24/src_y.npy").astype(int)
split = stratified_split(ys, 0.8, 0)
tr = np.flatnonzero(split == 1); _, val = validation_part(tr, ys, 0.1, 0); split[val] = VALIDATION
p = DomainParams(epochs=ep, adapt_epochs=aep, domain_weight=dw, adapt_learning_rate=lr2, precision="float32")
src = ArraySource(xs, 64)
t = time.time()
m1 = train_model(src, ys, ["a","b","c","d","e"], split, "/tmp/w24/m_src.keras", p.source_training(), progress=False, resume=True)
print("stage1", time.time()-t, m1["test"]["accuracy"], flush=True)
model, _ = load_trained("/tmp/w24/m_src.keras")
xt, yt = np.load(f"/tmp/w24/{tg}.npy"), np.load(f"/tmp/w24/{tg}_y.npy").astype(int)
print("target acc no adapt", (predict(model, xt) == yt).mean(), flush=True)
t = time.time()
m2 = adapt("/tmp/w24/m_src.keras", src, ys, split, ArraySource(xt, 64), f"/tmp/w24/m_{tg}.keras", p, progress=False)
am, _ = load_trained(f"/tmp/w24/m_{tg}.keras")
print("stage2", time.time()-t, "target acc adapted", (predict(am, xt) == yt).mean(), "src acc", (predict(am, np.load("/tmp/w24/src_test.npy")) == np.load("/tmp/w24/src_test_y.npy")).mean(), flush=True)
print({k: [round(v,3) for v in vals] for k, vals in m2["adaptation_history"].items()})
