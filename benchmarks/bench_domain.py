"""Domain adaptation, target accuracy with and without each term (issue 24 part 4; benchmarks/notes_domain.md).

Usage: python benchmarks/bench_domain.py [--targets tgt_wbp_df2,tgt_wbp] [--seeds 0,1,2] [--configs ...]
       [--epochs 20] [--adapt-epochs 10] [--lr 1e-5] [--work DIR]

Per seed: stage 1 (DSRF3D on `src` of benchmarks/_sim24.py, 80% train of which 10% validation, float32), then
per target and config one stage 2 from that same stage-1 model. Configs (domain_weight, information_weight):
control (0, 0), adv (1, 0), im (0, 1), both (1, 1), old_control (0, 0
with Keras' categorical_crossentropy as the class loss: the pre-2026-12-02 bug, its gradient reaches the target rows),
and with the discriminator conditioned on the class probabilities (conditioning cdan / cdan_e, Long et al. 2018):
cdan (1, 0), cdan_e (1, 0), cdan_im (1, 1), cdan_e_im (1, 1); adv_dw10, cdan_dw10, cdan_e_dw10 (10, 0) and
both_dw10, cdan_im_dw10 (10, 1); the others use
conditioning none (adv_recheck = adv, rerun after the conditioning code was added).
Each result is one JSON line (target accuracy; accuracy on `src_test`, another simulation of the source domain)
printed and appended to DIR/results.jsonl; a (seed, target, config) already there is not rerun."""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _sim24 import load  # noqa: E402

from tomoflow.ml import domain as D  # noqa: E402
from tomoflow.ml.training import (VALIDATION, ArraySource, load_trained, stratified_split, train_model,  # noqa: E402
                                  validation_part)
from tomoflow.params import DomainParams  # noqa: E402

CONFIGS = {"control": dict(domain_weight=0.0), "adv": dict(domain_weight=1.0),
           "im": dict(domain_weight=0.0, information_weight=1.0),
           "both": dict(domain_weight=1.0, information_weight=1.0),
           "old_control": dict(domain_weight=0.0),
           "cdan": dict(domain_weight=1.0, conditioning="cdan"),
           "cdan_e": dict(domain_weight=1.0, conditioning="cdan_e"),
           "cdan_im": dict(domain_weight=1.0, information_weight=1.0, conditioning="cdan"),
           "cdan_e_im": dict(domain_weight=1.0, information_weight=1.0, conditioning="cdan_e"),
           # a 10x stronger extractor side (the same discriminator), marginal and conditional
           "adv_dw10": dict(domain_weight=10.0), "cdan_dw10": dict(domain_weight=10.0, conditioning="cdan"),
           "cdan_e_dw10": dict(domain_weight=10.0, conditioning="cdan_e"),
           "cdan_im_dw10": dict(domain_weight=10.0, information_weight=1.0, conditioning="cdan"),
           "both_dw10": dict(domain_weight=10.0, information_weight=1.0),
           "adv_recheck": dict(domain_weight=1.0)}  # = adv, run again with this code: the marginal path unchanged
# every config names domain_weight, information_weight and conditioning, so DomainParams' defaults do not move them
for _c in CONFIGS.values():
    _c.setdefault("information_weight", 0.0)
    _c.setdefault("conditioning", "none")

ap = argparse.ArgumentParser()
ap.add_argument("--targets", default="tgt_wbp_df2")
ap.add_argument("--seeds", default="0")
ap.add_argument("--configs", default="control,adv,im,both")
ap.add_argument("--epochs", type=int, default=20)
ap.add_argument("--adapt-epochs", type=int, default=10)
ap.add_argument("--lr", type=float, default=1e-5)
ap.add_argument("--work", default="benchmark-runs/issue24")
ap.add_argument("--suffix", default="", help="appended to each config's name in the results and model files (runs "
                                              "of another stage-2 schedule, e.g. '@lr1e-4x20')")
a = ap.parse_args()
work = a.work
res_path = os.path.join(work, "results.jsonl")
done = set()
if os.path.exists(res_path):
    for line in open(res_path):
        r = json.loads(line)
        done.add((r["seed"], r["target"], r["config"]))


def record(r):
    print(json.dumps(r), flush=True)
    with open(res_path, "a") as f:
        f.write(json.dumps(r) + "\n")


xs, ys = load(work, "src")
xst, yst = load(work, "src_test")
split = stratified_split(ys, 0.8, 0)
tr = np.flatnonzero(split == 1)
_, val = validation_part(tr, ys, 0.1, 0)
split[val] = VALIDATION
src = ArraySource(xs, 64)
for seed in map(int, a.seeds.split(",")):
    base = dict(epochs=a.epochs, adapt_epochs=a.adapt_epochs, adapt_learning_rate=a.lr, precision="float32",
                seed=seed)
    m_src = f"{work}/m_src_s{seed}.keras"
    t = time.time()
    m1 = train_model(src, ys, ["a", "b", "c", "d", "e"], split, m_src, DomainParams(**base).source_training(),
                     progress=False, resume=True)
    model, _ = load_trained(m_src)
    src_acc0 = float((D.predict(model, xst) == yst).mean())
    for tg in a.targets.split(","):
        xt, yt = load(work, tg)
        if (seed, tg, "source_only") not in done:
            acc = float((D.predict(model, xt) == yt).mean())
            record(dict(seed=seed, target=tg, config="source_only", target_acc=acc,
                        src_test_acc=src_acc0, stage1_test_acc=m1["test"]["accuracy"],
                        best_epoch=m1["best_epoch"], seconds=round(time.time() - t, 1)))
        for cfg0 in a.configs.split(","):
            cfg = cfg0 + a.suffix
            if (seed, tg, cfg) in done:
                continue
            p = DomainParams(**base, **CONFIGS[cfg0])
            real = D.joint_losses
            if cfg0 == "old_control":  # the bug, reproduced: Keras' fused cross-entropy as the class loss
                D.joint_losses = lambda params: ({**real(params)[0], "probabilities": "categorical_crossentropy"},
                                                 real(params)[1])
            t = time.time()
            try:
                m2 = D.adapt(m_src, src, ys, split, ArraySource(xt, 64), f"{work}/m_{tg}_{cfg}_s{seed}.keras", p,
                             progress=False)
            finally:
                D.joint_losses = real
            am, _ = load_trained(f"{work}/m_{tg}_{cfg}_s{seed}.keras")
            h = m2["adaptation_history"]
            record(dict(seed=seed, target=tg, config=cfg, target_acc=float((D.predict(am, xt) == yt).mean()),
                        src_test_acc=float((D.predict(am, xst) == yst).mean()),
                        class_loss=[round(v, 3) for v in h["probabilities_loss"]],
                        domain_acc=[round(v, 3) for v in h["domain_accuracy"]], seconds=round(time.time() - t, 1)))
