"""Adversarial domain adaptation, target accuracy with and without it (issue 24 part 4; benchmarks/RESULTS.md, "Issue
24 parts 3-4"). Usage: python benchmarks/bench_domain.py TARGET EPOCHS ADAPT_EPOCHS DOMAIN_WEIGHT ADAPT_LR [INFORMATION_WEIGHT] [--work DIR]
(TARGET: tgt_wbp_df2, tgt_df2 or tgt_wbp of benchmarks/_sim24.py; the source is `src`, its test set `src_test`)."""
import os, sys, time, numpy as np
sys.path.insert(0, os.path.dirname(__file__))
from _sim24 import load
from tomoflow.ml.training import ArraySource, stratified_split, validation_part, train_model, load_trained, VALIDATION
from tomoflow.ml.domain import adapt, predict
from tomoflow.params import DomainParams
args = sys.argv[1:]
work = args.pop(args.index("--work") + 1) if "--work" in args else "benchmark-runs/issue24"
args = [a for a in args if a != "--work"]
tg = args[0]; ep = int(args[1]); aep = int(args[2]); dw = float(args[3]); lr2 = float(args[4]); iw = float(args[5]) if len(args) > 5 else 0.0
xs, ys = load(work, "src")
split = stratified_split(ys, 0.8, 0)
tr = np.flatnonzero(split == 1); _, val = validation_part(tr, ys, 0.1, 0); split[val] = VALIDATION
p = DomainParams(epochs=ep, adapt_epochs=aep, domain_weight=dw, adapt_learning_rate=lr2, information_weight=iw, precision="float32")
src = ArraySource(xs, 64)
t = time.time()
m1 = train_model(src, ys, ["a","b","c","d","e"], split, f"{work}/m_src.keras", p.source_training(), progress=False, resume=True)
print("stage1", time.time()-t, m1["test"]["accuracy"], flush=True)
model, _ = load_trained(f"{work}/m_src.keras")
xt, yt = load(work, tg)
print("target acc no adapt", (predict(model, xt) == yt).mean(), flush=True)
t = time.time()
m2 = adapt(f"{work}/m_src.keras", src, ys, split, ArraySource(xt, 64), f"{work}/m_{tg}.keras", p, progress=False)
am, _ = load_trained(f"{work}/m_{tg}.keras")
print("stage2", time.time()-t, "target acc adapted", (predict(am, xt) == yt).mean(), "src acc", (predict(am, load(work, "src_test")[0]) == load(work, "src_test")[1]).mean(), flush=True)
print({k: [round(v,3) for v in vals] for k, vals in m2["adaptation_history"].items()})
