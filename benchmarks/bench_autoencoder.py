"""Issue 24 parts 1-2: autoencoder filtering and the semi-supervised autoencoding classifier, small scale on CPU.

A. Filtering (seed 002, 3.4.2). Three structures simulated in 32^3 boxes; the true particles are the central 16^3
   crops, the junk is 16^3 corner crops of other particles of the same structures (an edge of a particle and
   background), the empty boxes are central crops of the noise-only class. The autoencoder (pose-normalised input)
   is trained on all, its codes clustered (k-means), the clusters filtered by each ``--score`` of
   ``autoencoder filter`` (automatic choices): ``contrast`` (the automatic split of the decoded centres' contrast,
   the filter before 2026-12-02), ``centred`` (centring offset <= 0.3 of the box edge, own or the cluster's
   median), ``both`` (the default: centred particles of clusters passing the contrast split), and ``both`` with
   ``per_particle`` (own offset only). Reported for each: share of empty and of junk removed, share of true
   particles kept; and the purity (5 groups: 3 structures, empty, junk) of k-means on the codes vs k-means on the
   pose-normalised volumes (the seed 000 baseline), same k. The top-level shares are the default's (``both``).
B. Semi-supervised (3.4.3). Three structures + empty in 16^3 boxes; half of each class is the test split; 5% and 20%
   of each class's train half labelled. Test accuracy of: the semi-supervised model (encoder: the registered
   ``--model``, DSRF3D by default; decoder on all the train half), the same network with reconstruction weight 0
   (labelled part alone, same steps), and the same registered model trained on the labelled part alone by
   ``train_model`` at the same epochs, at 4x and at the same optimisation steps as the semi-supervised networks
   (Adam 1e-3, half-turn augmentation, no validation: too few labels). ``--semi-per-class`` grows the simulated set
   (and so the unlabelled pool) independently of part A; ``--variants`` picks the semi-supervised networks,
   ``--baselines`` the ``train_model`` runs. See benchmarks/notes_semisupervised.md.

    .venv/bin/python benchmarks/bench_autoencoder.py [--snr 0.5] [--epochs 15] [--model dsrf3d] [--seed 0]
                                                     [--skip filter | --skip semi] [--semi-per-class N]
                                                     [--variants ...] [--baselines ...]
                                                     [--out benchmarks/autoencoder.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def purity(clusters, truth) -> float:
    return float(sum(np.bincount(truth[clusters == c]).max() for c in np.unique(clusters)) / len(truth))


def filtering(tmp: Path, snr: float, per_class: int, epochs: int, k: int, seed: int) -> dict:
    from tomoflow.ops.autoencoder import encode_autoencoder, filter_autoencoder, train_autoencoder
    from tomoflow.ops.cluster import kmeans
    from tomoflow.ops.pose_norm import compute_pose_normalized
    from tomoflow.ops.simulate import simulate_dataset
    from tomoflow.params import AutoencoderFilterParams, AutoencoderParams, DatasetSpec, KMeansParams
    from tomoflow.store import ParticleSet, Store, create_particle_set

    store = Store.create(tmp / "a.zarr")
    spec = DatasetSpec(classes=("6zu5", "3o21", "4v8r"), per_class=2 * per_class, snrs=(snr,), box=32,
                       voxel_size=18.4, resolution=18.4, max_shift=2.0, seed=seed)
    simulate_dataset(store, "raw", spec, chunk=128)
    raw = ParticleSet(store, "raw")
    vols, cls = raw.volumes[:], raw.table_frame().true_class.values.astype(int)
    empty = raw.class_names.index("empty")
    rng = np.random.default_rng(seed)
    boxes, group = [], []
    for c in range(3):
        idx = rng.permutation(np.flatnonzero(cls == c))
        boxes += [v[8:24, 8:24, 8:24] for v in vols[idx[:per_class]]]
        group += [c] * per_class
        for v in vols[idx[per_class:per_class + per_class // 3]]:  # junk: a corner crop
            z, y, x = rng.integers(0, 2, 3) * 16
            boxes.append(v[z:z + 16, y:y + 16, x:x + 16])
            group.append(4)
    boxes += [v[8:24, 8:24, 8:24] for v in vols[np.flatnonzero(cls == empty)[:per_class]]]
    group += [3] * per_class
    group = np.asarray(group)
    n = len(group)
    ps = create_particle_set(store, "mix", {"true_class": np.where(group == 4, -1, group), "group": group}, box_size=16,
                             chunk=64, voxel_size=18.4, class_names=["6zu5", "3o21", "4v8r", "empty"])
    ps.write_volumes(0, np.stack(boxes).astype(np.float32))
    t0 = time.time()
    meta = train_autoencoder(store, "mix", tmp / "ae.keras", AutoencoderParams(epochs=epochs, batch_size=16),
                             progress=False)
    encode_autoencoder(store, "mix", tmp / "ae.keras", progress=False)
    t_ae = time.time() - t0
    kmeans(store, "mix", KMeansParams(k=k, seed=seed), features="ae_latent", progress=False)
    ae_clusters = ParticleSet(store, "mix").table_frame().cluster.values
    variants = {"contrast": AutoencoderFilterParams(score="contrast"),  # the filter before 2026-12-02
                "centred": AutoencoderFilterParams(score="centred"), "both": AutoencoderFilterParams(),
                "both_per_particle": AutoencoderFilterParams(per_particle=True)}

    def share_kept(kept_group, g):  # share of the mix's boxes of groups g that a filter kept
        return float(np.isin(kept_group, g).sum() / np.isin(group, g).sum())

    filters = {}
    for name, fp in variants.items():
        r = filter_autoencoder(store, "mix", tmp / "ae.keras", f"kept_{name}", fp, progress=False)
        kept_group = ParticleSet(store, f"kept_{name}").table_frame().group.values
        filters[name] = {"true_kept": share_kept(kept_group, [0, 1, 2]),
                         "empty_removed": 1 - share_kept(kept_group, [3]),
                         "junk_removed": 1 - share_kept(kept_group, [4]), "clusters_kept": len(r["kept_clusters"]),
                         "kept": r["kept"]}
    labels = ParticleSet(store, "mix").table_frame().cluster.values
    clusters = [{"size": int(sz), "groups": np.bincount(group[labels == c], minlength=5).tolist(),
                 "contrast": round(sc, 3), "offset": None if o is None else round(o, 3)}
                for c, (sz, sc, o) in enumerate(zip(r["sizes"], r["scores"], r["offsets"]))]
    compute_pose_normalized(store, "mix", out_box=16, progress=False)
    kmeans(store, "mix", KMeansParams(k=k, seed=seed), features="pose_norm", progress=False)
    pn_clusters = ParticleSet(store, "mix").table_frame().cluster.values

    return {"n": int(n), "true": int((group < 3).sum()), "empty": int((group == 3).sum()),
            "junk": int((group == 4).sum()), "k": k, "epochs": epochs, "snr": snr, "seed": seed,
            "loss_first": meta["history"]["loss"][0], "loss_last": meta["history"]["loss"][-1],
            **filters["both"], "filters": filters, "clusters": clusters,
            "purity_autoencoder": purity(ae_clusters, group),
            "purity_pose_norm": purity(pn_clusters, group), "train_encode_s": round(t_ae, 1)}


# part B's networks: name -> SemiSupervisedParams fields (the rest as the run's)
SEMI_VARIANTS = {
    "semisupervised": {"reconstruction_weight": 1.0},
    "same_net_labelled_only": {"reconstruction_weight": 0.0},
}
# train_model on the labelled part alone: at the same epochs, at 4x, and at the same optimisation steps as the
# semi-supervised networks (their steps: epochs x ceil(n_train / 16), each with 8 labelled draws; train_model's
# batch is 8 labelled draws, so equal steps is also equal labelled draws)
BASELINES = ("equal_epochs", "4x", "equal_steps")


def semisupervised(tmp: Path, snr: float, per_class: int, epochs: int, fractions, seed: int,
                   model: str = "dsrf3d", variants=tuple(SEMI_VARIANTS), baselines=BASELINES) -> list[dict]:
    from tomoflow.ml.training import TEST, TRAIN, UNASSIGNED, train_model
    from tomoflow.ops.semisupervised import train_semisupervised
    from tomoflow.ops.simulate import simulate_dataset
    from tomoflow.params import DatasetSpec, SemiSupervisedParams, TrainParams
    from tomoflow.store import ParticleSet, Store

    store = Store.create(tmp / "s.zarr")
    spec = DatasetSpec(classes=("6zu5", "3o21", "4v8r"), per_class=per_class, snrs=(snr,), box=16, voxel_size=18.4,
                       resolution=18.4, seed=seed + 1)
    simulate_dataset(store, "d", spec, chunk=128)
    rows = []
    for frac in fractions:
        res = {"labelled_fraction": frac, "model": model, "epochs": epochs}
        for name in variants:
            t0 = time.time()
            m = train_semisupervised(store, "d", tmp / f"{name}{frac}.keras",
                                     SemiSupervisedParams(labelled_fraction=frac, model=model, epochs=epochs,
                                                          batch_size=16, seed=seed, **SEMI_VARIANTS[name]),
                                     progress=False)
            res[name] = m["test"]["accuracy"]
            res[f"{name}_turns"] = m["test"].get("accuracy_turns")
            res[f"{name}_s"] = round(time.time() - t0, 1)
            res["n_labelled"], res["n_train"], res["n_test"] = m["n_labelled"], m["n_train"], m["n_test"]
            print(name, res[name], res[f"{name}_s"], flush=True)
        res["semi_steps"] = epochs * -(-res["n_train"] // 16)
        ps = ParticleSet(store, "d")
        t = ps.table_frame()
        split = np.where(t.labelled.values == 1, TRAIN, np.where(t.split.values == TEST, TEST, UNASSIGNED))
        # the registered model trained on the labelled part alone by train_model (same split, same seed)
        per_epoch = -(-int((split == TRAIN).sum()) // 8)
        ep_of = {"equal_epochs": epochs, "4x": 4 * epochs, "equal_steps": -(-res["semi_steps"] // per_epoch)}
        tag_of = {"equal_epochs": "", "4x": "_4x", "equal_steps": "_equal_steps"}
        for b in baselines:
            tag, ep = tag_of[b], ep_of[b]
            t0 = time.time()
            m = train_model(ps, t.true_class.values.astype(int), ps.class_names, split.astype(np.int8),
                            tmp / f"clf{frac}{tag}.keras",
                            TrainParams(model=model, epochs=ep, batch_size=8, optimizer="adam",
                                        learning_rate=1e-3, validation_fraction=0, seed=seed), progress=False)
            res[f"{model}_labelled_only{tag}"] = m["test"]["accuracy"]
            res[f"{model}_labelled_only{tag}_turns"] = m["test"].get("accuracy_turns")
            res[f"{model}_labelled_only{tag}_s"] = round(time.time() - t0, 1)
            res[f"{model}_labelled_only{tag}_steps"] = ep * per_epoch
        rows.append(res)
        print(json.dumps(res), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--snr", type=float, default=0.5)
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", choices=("filter", "semi"), default=None)
    ap.add_argument("--model", default="dsrf3d", help="the semi-supervised encoder (a registered classifier)")
    ap.add_argument("--semi-per-class", type=int, default=None,
                    help="B: particles simulated per class (default 2 x --per-class); half are the train split")
    ap.add_argument("--variants", nargs="+", choices=tuple(SEMI_VARIANTS), default=list(SEMI_VARIANTS))
    ap.add_argument("--baselines", nargs="*", choices=BASELINES, default=list(BASELINES))
    ap.add_argument("--out", default="benchmarks/autoencoder.json")
    a = ap.parse_args()
    out = {"args": vars(a)}
    with tempfile.TemporaryDirectory() as d:
        if a.skip != "filter":
            out["filtering"] = filtering(Path(d), a.snr, a.per_class, a.epochs, a.k, a.seed)
            print(json.dumps(out["filtering"]), flush=True)
        if a.skip != "semi":
            out["semisupervised"] = semisupervised(Path(d), a.snr, a.semi_per_class or 2 * a.per_class, a.epochs,
                                                   a.fractions, a.seed, a.model, a.variants, a.baselines)
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
